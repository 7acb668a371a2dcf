"""The audit's shortcuts give the answers of the plain rules: python-debian's order as a tuple key,
each entry's answer per place worked out when the index is written, all packages looked up
together. Each is checked against the slow path it replaces."""

from __future__ import annotations

import itertools
import random
import sqlite3

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.harness.osv import ecosystem_range, record, write_zip
from vulns import db as vulndb
from vulns import findings, osv, versions
from vulns.ecosystems import lookup
from vulns.matching import Match, match, places

# Wider than Debian Policy's versions: letters first, runs of ~ + . - :, leading zeros.
_weird = st.builds(
    lambda epoch, upstream, revision: f"{epoch}{upstream}{revision}",
    st.sampled_from(["", "", "0:", "1:", "01:", "12:"]),
    st.text(alphabet="0123456789~.+-:aAzZ", min_size=1, max_size=9),
    st.one_of(st.just(""), st.text(alphabet="0123456789~.+aZ", min_size=1, max_size=5).map("-{}".format)),
)


def _native(text: str):
    from debian.debian_support import NativeVersion

    return NativeVersion(text)


@settings(max_examples=2000, deadline=None)
@given(_weird, _weird)
def test_debian_key_orders_as_python_debian_compares(a: str, b: str) -> None:
    """The tuple key made once per version orders as python-debian's comparison of the two texts."""
    assert versions._native_debian()
    try:
        expected = _native(a)._compare(_native(b))
    except ValueError:
        assume(False)
    expected = (expected > 0) - (expected < 0)
    assert versions.compare("deb", a, b) == expected, (a, b)


def test_debian_key_reads_past_the_shorter_version_as_python_debian_does() -> None:
    """Runs of zeros, ~ after the end, letters against digits (the padding the tuple key folds in)."""
    cases = [
        "1",
        "1.0",
        "1.00",
        "1~",
        "1.0~",
        "1.0~~",
        "1a",
        "1.a",
        "1+",
        "1-0",
        "1-0~",
        "0:1",
        "1:0",
        "a",
        "a0~",
    ]
    cases += [
        "1.0.0~rc1",
        "1.0.0",
        "1.0.0+b1",
        "1.0.0-0",
        "1.0.0-0.1",
        "1.0.0-~",
        "2~a~",
        "2~a",
        "001",
        "1.01",
    ]
    for a in cases:
        for b in cases:
            expected = _native(a)._compare(_native(b))
            assert versions.compare("deb", a, b) == (expected > 0) - (expected < 0), (a, b)


_debian = st.sampled_from(
    ["0", "1.0-1", "1.0-1~old1", "1.0-1+deb12u1", "1.0-2", "1.2-1", "1:0.9-1", "2.0~rc1-1", "2.0-1", "1.0-01"]
)


@settings(max_examples=600, deadline=None)
@given(
    data=st.data(),
    ranges=st.lists(
        st.lists(
            st.tuples(st.sampled_from(["introduced", "fixed", "last_affected", "limit"]), _debian),
            min_size=1,
            max_size=4,
        ),
        min_size=0,
        max_size=3,
    ),
    zero=st.booleans(),
    star=st.booleans(),
    listed=st.lists(_debian, max_size=3),
)
def test_answers_by_place_equal_match(data, ranges, zero, star, listed) -> None:
    """An entry's intervals of affected places (with the versions list asked when none holds the
    place) give what `match` gives comparing the installed version with each event."""
    built = []
    for events in ranges:
        events = [("introduced", "0" if zero else events[0][1]), *events]
        if star:
            events.append(("limit", "*"))
        built.append(osv.Range("ECOSYSTEM", tuple(events)))
    affected = osv.Affected("Debian:12", "x", tuple(built), tuple(listed), ())
    names = {v for r in built for k, v in r.events if (k, v) not in (("introduced", "0"), ("limit", "*"))}
    order = vulndb.Order("deb", vulndb.ranked_versions("deb", names))
    found = places(affected, order.ranks)
    assert found is not None
    starts = [first for first, _, _ in found]
    assert starts == sorted(starts) and all(a[1] < b[0] for a, b in itertools.pairwise(found))
    installed = data.draw(st.one_of(_debian, st.sampled_from(sorted(names) or ["1.0-1"])))
    place = order.position(installed)
    hits = [Match(fix) for first, last, fix in found if first <= place <= last]
    answer = hits[0] if hits else (Match(None) if installed in affected.versions else None)
    assert answer == match(installed, "deb", affected)[0], (installed, found)


def test_ranges_the_order_cannot_place_are_compared() -> None:
    """SEMVER ranges and versions the order left out: no answer by place (`match` compares them)."""
    semver = osv.Affected(
        "Debian:12", "x", (osv.Range("SEMVER", (("introduced", "0"), ("fixed", "1.0.0"))),), (), ()
    )
    assert places(semver, {"1.0.0": 0}) is None
    unranked = osv.Affected(
        "Debian:12", "x", (osv.Range("ECOSYSTEM", (("introduced", "0"), ("fixed", "*"))),), (), ()
    )
    assert places(unranked, {}) is None
    git = osv.Affected("Debian:12", "x", (osv.Range("GIT", (("introduced", "abc"),)),), (), ())
    assert places(git, {}) == []


def _random_records(rng: random.Random, n: int) -> list[dict]:
    """Records over a few packages with every kind of event, versions lists, SEMVER ranges,
    unreadable versions, aliases shared between records, withdrawn ones."""
    pool = ["1.0-1", "1.0-1~old1", "1.0-1+deb12u1", "1.0-2", "1.2-1", "1:0.9-1", "2.0~rc1-1", "2.0-1"]
    docs = []
    for i in range(n):
        name = f"src{rng.randrange(6)}"
        ranges = []
        for _ in range(rng.randint(0, 2)):
            kinds = rng.sample(["fixed", "last_affected", "limit"], rng.randint(1, 2))
            if "fixed" in kinds and "last_affected" in kinds:
                kinds.remove("last_affected")
            first = "0" if rng.random() < 0.6 else rng.choice(pool)
            pairs = [("introduced", first)] + [
                (k, rng.choice(pool + ["not a version!"] * (i % 7 == 0))) for k in kinds
            ]
            ranges.append(ecosystem_range(*pairs, kind="SEMVER" if rng.random() < 0.1 else "ECOSYSTEM"))
        listed = rng.sample(pool, rng.randint(0, 2)) if rng.random() < 0.3 or not ranges else []
        aliases = [f"CVE-2026-{rng.randrange(n):04d}"] if rng.random() < 0.3 else []
        docs.append(
            record(
                f"DEB-{i:04d}",
                "Debian:12",
                name,
                ranges,
                versions=listed,
                aliases=aliases,
                withdrawn="2026-06-01T00:00:00Z" if rng.random() < 0.05 else None,
            )
        )
    return docs


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batched_audit_equals_one_package_at_a_time(tmp_path, seed) -> None:
    """`findings._matched` (orders, places, versions lists for all packages at once) gives each
    package the entries `match` finds in `Index.listed` one package at a time, in the same order
    and with the same notes."""
    rng = random.Random(seed)
    docs = _random_records(rng, 300)
    db = tmp_path / "osv.db"
    vulndb.build([write_zip(tmp_path / "all.zip", docs, check=False)], db)
    index = vulndb.Index(db)
    pool = ["1.0-1", "1.0-1~old1", "1.0-1+deb12u1", "1.0-2", "1.1-1", "1:0.9-1", "2.0-1", "0.1-1", "3.0-1"]
    wheres = []
    for k in range(40):
        where = lookup("deb", f"bin{k}", rng.choice(pool), f"src{rng.randrange(7)}", "debian-12")
        assert where is not None
        wheres.append(where)
    wheres = list(dict.fromkeys(wheres))
    notes: list[str] = []
    batched = findings._matched(index, wheres, notes)
    expected_notes: list[str] = []
    for where, found in zip(wheres, batched, strict=True):
        one = []
        for _, record_id, affected in index.listed(where.ecosystem, where.names):
            hit, problems = match(where.version, where.kind, affected)
            expected_notes += [f"{record_id}: {p}" for p in problems]
            if hit is not None:
                one.append((record_id, hit.fixed, affected))
        assert found == one, where
    assert sorted(set(notes)) == sorted(set(expected_notes))
    index.close()


def test_an_index_of_another_version_is_refused(tmp_path) -> None:
    """An index written by an older container-lock is refused, naming the versions and the fix."""
    db = tmp_path / "osv.db"
    vulndb.build(
        [
            write_zip(
                tmp_path / "all.zip", [record("DEB-1", "Debian:12", "x", versions=["1.0-1"])], check=False
            )
        ],
        db,
    )
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE meta SET value = '1' WHERE key = 'index_version'")
    connection.close()
    with pytest.raises(vulndb.DbError, match=r"osv\.db: index version 1, .*reads version 2.*vulndb import"):
        vulndb.Index(db)


def test_audit_reads_records_without_their_entries(tmp_path) -> None:
    """`Index.records` leaves the affected entries and the details out; the rest is `record`'s."""
    doc = record("DEB-1", "Debian:12", "x", versions=["1.0-1"], aliases=["CVE-2026-1"], details="long")
    db = tmp_path / "osv.db"
    vulndb.build([write_zip(tmp_path / "all.zip", [doc], check=False)], db)
    index = vulndb.Index(db)
    full = index.record("DEB-1")
    brief = index.records(["DEB-1"])["DEB-1"]
    assert brief.affected == () and full.affected
    assert brief == osv.Record(**{**full.__dict__, "affected": ()})
    index.close()
