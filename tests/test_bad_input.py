"""Bad input, property-based: every case is a clear error of the documented kind, never a crash."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from containerlock.fetch import mirror
from containerlock.lock import lockfile
from containerlock.lock.lockfile import LockfileError
from containerlock.lock.policy import (
    RULES,
    SEVERITIES,
    SEVERITY_ALIASES,
    VULNERABILITY_LEVELS,
    PolicyError,
    parse,
)
from containerlock.oci.platform import Platform, PlatformError
from containerlock.oci.reference import InvalidReference, parse_url
from containerlock.oci.store import BlobStore

URL_ALPHABET = st.sampled_from([*list("abcAZ09.-_:/;=@[]%$ {}\\\n\t"), "..", "sha256:", "tag=", "digest="])
# Every reference error tells the user what to write instead (or why the URL cannot be used).
FIX_HINTS = ("write ", "expected", "known:", "not valid", "not supported", "names no image", "segment")
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.lists(URL_ALPHABET, max_size=40).map("".join))
def test_any_url_is_either_a_safe_reference_or_a_clear_error(tail: str) -> None:
    try:
        ref = parse_url("docker://" + tail)
    except InvalidReference as err:
        message = str(err)  # says what is wrong and what to write instead
        assert "Traceback" not in message
        assert any(hint in message for hint in FIX_HINTS), message
        return
    assert "/" not in ref.fs_name and ":" not in ref.fs_name and ".." not in ref.fs_name.split("+")
    again = parse_url(ref.url())
    assert (again.name, again.tag, again.digest) == (ref.name, ref.tag, ref.digest)


@FAST
@given(st.text(max_size=30))
def test_any_platform_string(text: str) -> None:
    try:
        platform = Platform.parse(text)
    except PlatformError as err:
        assert "os/architecture" in str(err)
        return
    assert "/" not in platform.fs_name


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=10)
    | st.sampled_from(["sha256:" + "a" * 64, 1]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=3)
    ),
    max_leaves=12,
)


# --- Valid documents, built with the modules' own models, and mutations of them -----------------
# Character soup almost never parses (of 3 000 seeded texts: 0 lockfiles, 0 policies), so the
# "what parses" checks below would never run. Each strategy draws a valid document and then
# either keeps it, re-encodes it, or mutates it (a field, a slice of the text, or soup).

DIGEST = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map("sha256:".__add__)
WORD = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
REPO = st.from_regex(r"[a-z0-9]{1,6}(?:[._-][a-z0-9]{1,4}){0,2}", fullmatch=True)
LOCK_KEY = st.builds(
    lambda host, path, tag: lockfile.normalise_key(f"{host}/{'/'.join(path)}:{tag}"),
    st.sampled_from(["reg.example", "reg.example:5000", "localhost:5000", "ghcr.io", "docker.io"]),
    st.lists(REPO, min_size=1, max_size=3),
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
)
RECORDS = st.lists(st.dictionaries(WORD, WORD, max_size=3), max_size=2).map(tuple)
LOCK_ENTRY = st.builds(
    lockfile.LockEntry,
    digest=DIGEST,
    platforms=st.dictionaries(st.sampled_from(["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]), DIGEST),
    verified=RECORDS,
    provenance=RECORDS,
)
LOCK = st.builds(lockfile.Lock, st.dictionaries(LOCK_KEY, LOCK_ENTRY, max_size=4))
SOUP = st.text(max_size=200)


def _mutate_text(draw: st.DrawFn, text: str, alphabet: str) -> str:
    """The text with a slice removed, or a few characters of `alphabet` inserted."""
    start = draw(st.integers(0, len(text)))
    end = draw(st.integers(start, min(len(text), start + 8)))
    return text[:start] + draw(st.text(alphabet=alphabet, max_size=3)) + text[end:]


@st.composite
def lockfile_docs(draw: st.DrawFn) -> tuple[object, lockfile.Lock | None]:
    """(JSON document, the lock it must parse to — None when a field was broken or it is soup)."""
    how = draw(st.sampled_from(["valid", "valid", "broken", "soup"]))
    if how == "soup":
        return draw(JSON | st.fixed_dictionaries({"version": st.just(1), "images": JSON})), None
    lock = draw(LOCK)
    doc = json.loads(lock.dumps())
    if how == "valid":
        return doc, lock
    # Break one field: the version, the images, or a part of one entry.
    entries = list(doc["images"].values())
    where = draw(st.sampled_from(["version", "images"] + (["entry"] if entries else [])))
    if where == "entry":
        entry = draw(st.sampled_from(entries))
        entry[draw(st.sampled_from(["digest", "platforms", "verified", "provenance"]))] = draw(JSON)
    else:
        doc[where] = draw(JSON)
    return doc, None


@st.composite
def lockfile_texts(draw: st.DrawFn) -> tuple[str, lockfile.Lock | None]:
    """(text, the lock it must parse to — None when it was mutated or is soup)."""
    how = draw(st.sampled_from(["canonical", "re-encoded", "mutated", "soup"]))
    if how == "soup":
        return draw(SOUP), None
    lock = draw(LOCK)
    if how == "canonical":
        return lock.dumps().decode(), lock
    doc = json.loads(lock.dumps())
    text = json.dumps(doc, indent=draw(st.sampled_from([None, 0, 4])), ensure_ascii=draw(st.booleans()))
    if how == "re-encoded":
        return text, lock
    return _mutate_text(draw, text, '{}[]":,\\ 0a/'), None


RULE = st.sampled_from(RULES)
SEVERITY = st.sampled_from([*SEVERITIES, "deny", "warn"])
NAME = WORD.filter(bool)  # who signed: never empty (an empty issuer or identity is refused)
REGEX = st.sampled_from([".*", "https://.*", r".*@example\.com", "[a-z]+"]) | NAME.map(re.escape)


def _toml(value: object) -> str:
    """A TOML value: strings as JSON basic strings (valid TOML for the text WORD draws)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _table(header: str, values: dict[str, object]) -> str:
    return header + "\n" + "".join(f"{json.dumps(k)} = {_toml(v)}\n" for k, v in values.items())


@st.composite
def signer_tables(draw: st.DrawFn) -> dict[str, object]:
    table: dict[str, object] = {}
    if draw(st.booleans()):
        table["images"] = draw(st.lists(st.sampled_from(["*", "reg.example/*", "ghcr.io/org/*"]), max_size=2))
    if draw(st.booleans()):
        table["key"] = draw(st.sampled_from(["cosign.pub", "keys/release.pub"]))
        return table
    for name in ("issuer", "identity"):
        if draw(st.booleans()):
            table[name] = draw(NAME)
        else:
            table[f"{name}_regex"] = draw(REGEX)
    return table


PROVENANCE_TABLE = st.fixed_dictionaries(
    {},
    optional={
        "images": st.lists(st.sampled_from(["*", "reg.example/*"]), max_size=2),
        "required": st.booleans(),
        "builder_id": WORD | st.lists(WORD, max_size=2),
        "source_uri": WORD | st.lists(WORD, max_size=2),
        "build_type": WORD | st.lists(WORD, max_size=2),
    },
)
POLICY_MODEL = st.fixed_dictionaries(
    {
        "rules": st.dictionaries(RULE, SEVERITY),
        "signers": st.lists(signer_tables(), max_size=3),
        "provenance": st.lists(PROVENANCE_TABLE, max_size=2),
    },
    optional={
        "name": WORD,
        "images": st.fixed_dictionaries(
            {},
            optional={
                "forbidden_tags": st.lists(WORD, max_size=3),
                "allowed_registries": st.lists(WORD, max_size=2),
            },
        ),
        "vulnerabilities": st.fixed_dictionaries(
            {},
            optional={
                "fail_on": st.sampled_from(VULNERABILITY_LEVELS),
                "ignore_unfixed": st.booleans(),
                "fail_on_unknown": st.booleans(),
            },
        ),
    },
)
# One broken field: (table, key, value) — each is an error parse() must name.
BREAKAGES = st.sampled_from(
    [
        ("", "version", 2),
        ("", "signers", "me"),
        ("rules", "no-such-rule", "error"),
        ("rules", "unpinned", "fatal"),
        ("images", "allowed", ["x"]),
        ("images", "forbidden_tags", "latest"),
        ("signers", "issuer_regex", "("),
        ("signers", "key", "k.pub"),
        ("signers", "colour", "red"),
        ("signers", "identity", ""),
        ("signers", "key", 5),
        ("provenance", "required", "yes"),
        ("vulnerabilities", "fail_on", "severe"),
    ]
)
# The characters of the old generator, whose texts are all errors.
POLICY_SOUP = 'version=1[rules]unpinned"error"\nsigners[[]]images*key=issuer'


def policy_text(model: dict, top: dict | None = None) -> str:
    """The TOML for a POLICY_MODEL draw (`top`: the top-level keys, `version = 1` if not given)."""
    top = top or {"version": 1, **({"name": model["name"]} if "name" in model else {})}
    parts = [_table("", top), _table("[rules]", model["rules"])]
    for name in ("images", "vulnerabilities"):
        if name in model:
            parts.append(_table(f"[{name}]", model[name]))
    for name in ("signers", "provenance"):
        parts += [_table(f"[[{name}]]", table) for table in model.get(name, [])]
    return "\n".join(parts)


@st.composite
def policy_texts(draw: st.DrawFn) -> tuple[str, dict | None]:
    """(text, the model it must parse to — None when it was broken, mutated or is soup)."""
    how = draw(st.sampled_from(["valid", "valid", "broken", "mutated", "soup"]))
    if how == "soup":
        return draw(st.text(alphabet=st.sampled_from(POLICY_SOUP), max_size=120)), None
    model = draw(POLICY_MODEL)
    if how == "mutated":
        return _mutate_text(draw, policy_text(model), '[]="\n=,.'), None
    if how == "valid":
        return policy_text(model), model
    table, key, value = draw(BREAKAGES)
    if table == "":
        model = {**model, "signers": []} if key == "signers" else model
        return policy_text(model, {"version": 1, key: value}), None
    if table in ("signers", "provenance"):
        base = {"issuer": "x", "identity": "y"} if table == "signers" else {}
        model = {**model, table: [*model.get(table, []), {**base, key: value}]}
    else:
        model = {**model, table: {**model.get(table, {}), key: value}}
    return policy_text(model), None


def check_lockfile_doc(doc: object, expected: lockfile.Lock | None) -> set[str]:
    """A JSON document is a lock that round-trips (the one it was built from), or a named error."""
    try:
        lock = lockfile.parse(json.dumps(doc), "lock.json")
    except LockfileError as err:
        assert str(err).startswith("lock.json")
        assert expected is None, f"a valid lockfile was refused: {err}"
        return {"error"}
    assert lockfile.parse(lock.dumps().decode(), "lock.json").dumps() == lock.dumps()
    if expected is not None:
        assert lock.dumps() == expected.dumps()
    return _lock_outcome(lock)


def check_lockfile_text(text: str, expected: lockfile.Lock | None) -> set[str]:
    """Lockfile text is a lock that round-trips (the one it was built from), or a named error."""
    try:
        lock = lockfile.parse(text, "lock.json")
    except LockfileError as err:
        assert str(err).startswith("lock.json")
        assert str(err).count("lock.json") == 1  # no repeated prefix
        assert expected is None, f"a valid lockfile was refused: {err}"
        return {"error"}
    assert lockfile.parse(lock.dumps().decode(), "lock.json") == lock  # what parses, round-trips
    if expected is not None:
        assert lock.dumps() == expected.dumps()
    return _lock_outcome(lock)


def _lock_outcome(lock: lockfile.Lock) -> set[str]:
    entries = lock.entries.values()
    found = {"parsed"}
    found |= {"entries"} if entries else set()
    found |= {"platforms"} if any(e.platforms for e in entries) else set()
    found |= {"records"} if any(e.verified or e.provenance for e in entries) else set()
    for name in sorted(found):
        event(f"lockfile: {name}")
    return found


def check_policy_text(text: str, expected: dict | None) -> set[str]:
    """Policy text is a usable policy (the one it was written from), or a named error."""
    try:
        policy = parse(text, "policy.toml")
    except PolicyError as err:
        assert str(err).startswith("policy.toml")
        assert expected is None, f"a valid policy was refused: {err}"
        event("policy: error")
        return {"error"}
    # What parses is a usable policy: known rules with known severities, signers that say who.
    assert set(policy.severities) <= set(RULES)
    assert set(policy.severities.values()) <= set(SEVERITIES)
    for signer in policy.signers:
        assert signer.key or (
            (signer.issuer or signer.issuer_regex) and (signer.identity or signer.identity_regex)
        )
    if expected is not None:
        assert policy.severities == {r: SEVERITY_ALIASES.get(s, s) for r, s in expected["rules"].items()}
        written = [{k: v for k, v in t.items() if k != "images"} for t in expected["signers"]]
        assert [{k: v for k, v in vars(s).items() if v and k != "images"} for s in policy.signers] == [
            {k: v for k, v in t.items() if v} for t in written
        ]
        assert len(policy.provenance) == len(expected.get("provenance", []))
    found = {"parsed"}
    found |= {"signers"} if policy.signers else set()
    found |= {"key signer"} if any(s.key for s in policy.signers) else set()
    found |= {"keyless signer"} if any(not s.key for s in policy.signers) else set()
    found |= {"provenance"} if policy.provenance else set()
    for name in sorted(found):
        event(f"policy: {name}")
    return found


@FAST
@given(lockfile_docs())
def test_any_lockfile_content_is_a_lock_or_a_named_error(case: tuple[object, lockfile.Lock | None]) -> None:
    check_lockfile_doc(*case)


@FAST
@given(lockfile_texts())
def test_any_lockfile_text(case: tuple[str, lockfile.Lock | None]) -> None:
    check_lockfile_text(*case)


@FAST
@given(policy_texts())
# Found by the generator: an empty issuer, identity or key read as "any signer" (fail open).
@example(('version = 1\n[[signers]]\nissuer_regex = ".*"\nidentity = ""\n', None))
@example(('version = 1\n[[signers]]\nissuer = ""\nidentity = "me"\n', None))
@example(('version = 1\n[[signers]]\nkey = ""\n', None))
def test_any_policy_text_is_a_policy_or_a_named_error(case: tuple[str, dict | None]) -> None:
    check_policy_text(*case)


SEEDED = 300  # examples per generator in the seeded run (the same count as FAST)


def seeded_outcomes(strategy: st.SearchStrategy, check) -> Counter[str]:
    """How many of SEEDED derandomized examples ended in each outcome of `check`."""
    counts: Counter[str] = Counter()

    @settings(FAST, max_examples=SEEDED, derandomize=True, database=None)
    @given(strategy)
    def run(case) -> None:
        counts["examples"] += 1
        counts.update(check(*case))

    run()
    print(f"{check.__name__}: {dict(sorted(counts.items()))}")  # pytest -s shows the figures
    return counts


# (generator, check, least share of the seeded examples in each outcome). The "what parses"
# branches above must run in a good share of examples, and the error branches too.
GENERATOR_SHARES = [
    (
        lockfile_docs(),
        check_lockfile_doc,
        {"parsed": 0.35, "error": 0.35, "entries": 0.3, "platforms": 0.25, "records": 0.25},
    ),
    (
        lockfile_texts(),
        check_lockfile_text,
        {"parsed": 0.4, "error": 0.3, "entries": 0.35, "platforms": 0.3, "records": 0.3},
    ),
    (
        policy_texts(),
        check_policy_text,
        {
            "parsed": 0.4,
            "error": 0.3,
            "signers": 0.3,
            "key signer": 0.2,
            "keyless signer": 0.15,
            "provenance": 0.2,
        },
    ),
]


@pytest.mark.parametrize(("strategy", "check", "shares"), GENERATOR_SHARES, ids=["doc", "text", "policy"])
def test_generators_reach_the_parses_branches(strategy, check, shares: dict[str, float]) -> None:
    counts = seeded_outcomes(strategy, check)
    assert counts["examples"] == SEEDED
    low = {name: counts[name] for name, share in shares.items() if counts[name] < share * SEEDED}
    assert not low, f"{check.__name__}: too few examples reach {low} of {SEEDED} ({dict(counts)})"


@FAST
@given(st.lists(st.tuples(st.text(min_size=1, max_size=40), st.binary(max_size=64)), max_size=4))
def test_mirror_tarballs_accept_only_verified_blobs(tmp_path_factory, members) -> None:
    work = tmp_path_factory.mktemp("mirror")
    tarball = work / "m.tar"
    with tarfile.open(tarball, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    store = BlobStore(work / "store")
    with pytest.raises(mirror.MirrorError):
        mirror.import_into(tarball, store)
    outside = [p for p in work.rglob("*") if p.is_file() and p != tarball and "store" not in p.parts]
    assert outside == []


@pytest.mark.parametrize(
    ("args", "files", "complaint"),
    [
        (["check", "missing-dir"], {}, "missing-dir: no such file or directory"),
        (
            ["update", "layer", "--lockfile", "lock.json", "--check"],
            {"lock.json": '{"version": 1, "images": {'},
            "lock.json:1:",
        ),
        (["check", "layer", "--policy", "p.toml"], {"p.toml": "version = 2\n"}, "'version = 1' is required"),
        (["sbom", "m.json"], {"m.json": "[]"}, "not a container-lock build manifest"),
        (["sbom"], {}, "give either build manifest files or --deploy-dir"),
        (["update", "layer", "-D", "NOVALUE"], {}, "-D NOVALUE: write NAME=VALUE"),
        (["verify", "layer", "--policy", "p.toml"], {"p.toml": '[[signers]]\nissuer="x"\n'}, "version"),
    ],
)
def test_cli_bad_input_is_exit_2_without_traceback(tmp_path: Path, args, files, complaint) -> None:
    (tmp_path / "layer").mkdir()
    (tmp_path / "layer" / "r.bb").write_text('SRC_URI = "docker://reg.example/a;tag=1"\n')
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "audit", *args], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert complaint in result.stderr and "Traceback" not in result.stderr
