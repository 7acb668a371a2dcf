"""The local index of OSV records (sqlite) and the snapshot it holds.

`build` reads OSV exports (an ecosystem's `all.zip`, a directory of `*.json`, a `.json` file),
writes a new index next to the target and renames it over the target, so a reader sees the
old index or the new one. The same sources give the same index, byte for byte: rows are
written in sorted order, nothing of the machine or the time of the import is stored. A record
that cannot be used is reported (file, id, reason) and skipped.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import os
import sqlite3
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import ecosystems, matching, osv
from . import versions as versions_module

INDEX_VERSION = 2  # 2: each entry's answer per place in its package's order (`places`, `listed`)
_TABLES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sources (name TEXT NOT NULL, sha256 TEXT NOT NULL, records INTEGER NOT NULL, newest TEXT);
CREATE TABLE records (id TEXT PRIMARY KEY, modified TEXT NOT NULL, withdrawn TEXT, doc TEXT NOT NULL);
CREATE TABLE affected (
    ecosystem TEXT NOT NULL, name TEXT NOT NULL, record TEXT NOT NULL, position INTEGER NOT NULL,
    entry TEXT NOT NULL, placed INTEGER NOT NULL,
    PRIMARY KEY (ecosystem, name, record, position)
) WITHOUT ROWID;
CREATE TABLE places (
    ecosystem TEXT NOT NULL, name TEXT NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL,
    record TEXT NOT NULL, position INTEGER NOT NULL, fixed TEXT,
    PRIMARY KEY (ecosystem, name, first, record, position)
) WITHOUT ROWID;
CREATE TABLE listed (
    ecosystem TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL, record TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (ecosystem, name, version, record, position)
) WITHOUT ROWID;
CREATE TABLE orders (ecosystem TEXT NOT NULL, name TEXT NOT NULL, versions TEXT NOT NULL);
"""
# `affected`: every entry beside its package; `placed` 1: its ranges are answered by `places`
# (the affected places of a version among the package's versions, see `Order.position`) and its
# `versions` list by `listed`, so an audit reads only the entries that match; 0: `match` compares.


class DbError(ValueError):
    """A source or an index that cannot be used; the text names the file. Nothing was written."""


class IndexWriteError(OSError):
    """The index could not be written at the path given (`filename`, not the temporary file beside it)."""


_SQLITE_MAGIC = b"SQLite format 3\x00"


def check_target(target: Path) -> None:
    """DbError unless `target` is absent or an index this tool wrote: an import replaces it, so a
    lockfile, an SBOM or another program's database given as --db is refused and left untouched."""
    if not target.exists():
        return
    try:
        with target.open("rb") as file:
            head = file.read(len(_SQLITE_MAGIC))
        found = None
        if head == _SQLITE_MAGIC:
            with contextlib.closing(sqlite3.connect(f"file:{target}?mode=ro", uri=True)) as db:
                found = db.execute("SELECT value FROM meta WHERE key = 'index_version'").fetchone()
    except (OSError, sqlite3.Error):
        found = None
    if found is None:
        raise DbError(
            f"{target}: exists and is not a vulnerability index that `container-lock vulndb import` wrote; "
            "an import would replace it, so it is left untouched: give another --db path (or delete the "
            "file yourself)"
        )


@dataclass(frozen=True)
class Source:
    """One imported export: its file name, sha256, records read from it and their newest `modified`."""

    name: str
    sha256: str
    records: int
    newest: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "newest_modified": self.newest,
            "records": self.records,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class Snapshot:
    """What an index holds: its id (sha256 of the sources), the sources, counts, the newest `modified`."""

    id: str
    sources: tuple[Source, ...]
    records: int
    withdrawn: int
    skipped: int
    newest: str | None

    def age_days(self, now: datetime | None = None) -> float | None:
        """Days from the newest record's `modified` to `now` (None for an empty snapshot)."""
        if self.newest is None:
            return None
        newest = datetime.fromisoformat(self.newest.replace("Z", "+00:00"))
        return ((now or datetime.now(UTC)) - newest).total_seconds() / 86400

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "newest_modified": self.newest,
            "records": self.records,
            "skipped": self.skipped,
            "sources": [s.to_json() for s in self.sources],
            "withdrawn": self.withdrawn,
        }


@dataclass(frozen=True)
class Problem:
    """A record that was skipped: the file (and member) it came from, its id if known, the reason."""

    where: str
    record_id: str | None
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.record_id or 'record without id'}: {self.reason}; skipped"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _documents(path: Path) -> tuple[str, Iterator[tuple[str, bytes]]]:
    """(sha256, (member name, bytes) of every JSON document) of a zip, a directory or a JSON file."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.json") if p.is_file())
        if not files:
            raise DbError(f"{path}: no *.json files in the directory")
        digest = hashlib.sha256()
        for file in files:
            digest.update(f"{file.relative_to(path).as_posix()}\0{_sha256(file)}\n".encode())
        return digest.hexdigest(), ((f.relative_to(path).as_posix(), f.read_bytes()) for f in files)
    if not path.is_file():
        raise DbError(f"{path}: no such file or directory")
    if path.suffix == ".json":
        return _sha256(path), iter([(path.name, path.read_bytes())])
    if not zipfile.is_zipfile(path):
        raise DbError(f"{path}: not a zip file (an OSV export is an ecosystem's all.zip or *.json files)")
    return _sha256(path), _zip_members(path)


def _zip_members(path: Path) -> Iterator[tuple[str, bytes]]:
    try:
        with zipfile.ZipFile(path) as archive:
            for name in sorted(archive.namelist()):
                if name.endswith(".json"):
                    yield name, archive.read(name)
    except (zipfile.BadZipFile, OSError, EOFError, zipfile.LargeZipFile) as err:
        raise DbError(f"{path}: a corrupt zip file ({err})") from None


@dataclass
class _Read:
    record: osv.Record
    doc: str


def _read(path: Path, problems: list[Problem]) -> tuple[Source, list[_Read]]:
    sha, documents = _documents(path)
    found: list[_Read] = []
    for member, data in documents:
        where = f"{path.name}: {member}" if member != path.name else path.name
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            problems.append(Problem(where, None, f"not JSON ({err})"))
            continue
        for doc in raw if isinstance(raw, list) else [raw]:
            try:
                record = osv.parse(doc)
            except osv.RecordError as err:
                record_id = (
                    doc.get("id") if isinstance(doc, dict) and isinstance(doc.get("id"), str) else None
                )
                reason = str(err).removeprefix(f"{record_id}: ") if record_id else str(err)
                problems.append(Problem(where, record_id, reason))
                continue
            found.append(_Read(record, json.dumps(doc, sort_keys=True, separators=(",", ":"))))
    newest = max((r.record.modified for r in found), default=None)
    return Source(path.name, sha, len(found), newest), found


def build(
    sources: Iterable[Path], target: Path, progress: Callable[[int, int], None] | None = None
) -> tuple[Snapshot, list[Problem]]:
    """Index the records of `sources` into `target` (replaced atomically): the snapshot, the skipped records.

    A record id found twice keeps its newest `modified` (then the greater text, so the
    order of the sources does not matter).
    """
    check_target(target)
    paths = list(sources)
    problems: list[Problem] = []
    records: dict[str, _Read] = {}
    read_sources = []
    for n, path in enumerate(paths, 1):
        source, found = _read(path, problems)
        read_sources.append(source)
        for item in found:
            old = records.get(item.record.id)
            if old is None or (item.record.modified, item.doc) > (old.record.modified, old.doc):
                records[item.record.id] = item
        if progress is not None:
            progress(n, len(paths))
    if not records:  # an empty index would audit every image as clean: refuse it
        reasons = "; ".join(str(p) for p in problems[:3]) + ("; …" if len(problems) > 3 else "")
        raise DbError(
            f"{', '.join(str(p) for p in paths)}: no usable OSV record"
            + (f" ({len(problems)} skipped: {reasons})" if problems else "")
            + "; nothing written. Give osv.dev exports (an ecosystem's all.zip) or directories of OSV *.json"
        )
    read_sources.sort(key=lambda s: (s.name, s.sha256))
    snapshot_id = hashlib.sha256(
        f"container-lock-vulndb {INDEX_VERSION}\n".encode()
        + "".join(f"{s.sha256}\n" for s in sorted(read_sources, key=lambda s: s.sha256)).encode()
    ).hexdigest()
    withdrawn = sum(1 for r in records.values() if r.record.withdrawn)
    snapshot = Snapshot(
        id=f"sha256:{snapshot_id}",
        sources=tuple(read_sources),
        records=len(records),
        withdrawn=withdrawn,
        skipped=len(problems),
        newest=max((r.record.modified for r in records.values()), default=None),
    )
    try:
        _write(target, snapshot, records)
    except OSError as err:
        raise IndexWriteError(err.errno, err.strerror or str(err), str(target)) from None
    return snapshot, problems


def _write(target: Path, snapshot: Snapshot, records: dict[str, _Read]) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        temporary.unlink()
        with contextlib.closing(sqlite3.connect(temporary)) as db:
            db.execute("PRAGMA journal_mode=OFF")
            db.executescript(_TABLES)
            meta = {
                "index_version": str(INDEX_VERSION),
                "snapshot": json.dumps(snapshot.to_json(), sort_keys=True),
            }
            db.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
            db.executemany(
                "INSERT INTO sources VALUES (?, ?, ?, ?)",
                [(s.name, s.sha256, s.records, s.newest) for s in snapshot.sources],
            )
            orders = _orders(records)
            ranks = {(key, name): {v: r for v, r in json.loads(text)} for key, name, text in orders}
            rows = []
            affected = []
            placed = []
            listed = []
            for record_id in sorted(records):
                item = records[record_id]
                rows.append((record_id, item.record.modified, item.record.withdrawn, item.doc))
                if item.record.withdrawn:
                    continue
                for position, entry in enumerate(item.record.affected):
                    key = ecosystems.record_key(entry.ecosystem)
                    if key is None:
                        continue
                    name = ecosystems.record_name(entry.ecosystem, entry.name)
                    found = matching.places(entry, ranks.get((key, name)))
                    row = (key, name, record_id, position)
                    affected.append((*row, _entry_json(entry), int(found is not None)))
                    if found is not None:
                        placed += [
                            (key, name, first, last, record_id, position, fix) for first, last, fix in found
                        ]
                        listed += [
                            (key, name, version, record_id, position)
                            for version in sorted(set(entry.versions))
                        ]
            db.executemany("INSERT INTO records VALUES (?, ?, ?, ?)", rows)
            for table, columns, found in (
                ("affected", 6, affected),
                ("places", 7, placed),
                ("listed", 5, listed),
            ):
                found.sort(key=lambda row: row[:5])
                db.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * columns)})", found)
            db.executemany("INSERT INTO orders VALUES (?, ?, ?)", orders)
            db.execute("CREATE INDEX orders_key ON orders (ecosystem, name)")
            db.commit()
            db.execute("VACUUM")
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _orders(records: dict[str, _Read]) -> list[tuple[str, str, str]]:
    """Per package of an ecosystem: the versions its ECOSYSTEM ranges name, sorted once by the
    ecosystem's order, with their ranks (equal versions share one): an audit places the installed
    version among them with a binary search instead of comparing it with every event."""
    versions: dict[tuple[str, str], set[str]] = {}
    for record in records.values():
        if record.record.withdrawn:
            continue
        for entry in record.record.affected:
            key = ecosystems.record_key(entry.ecosystem)
            if key is None:
                continue
            found = versions.setdefault((key, ecosystems.record_name(entry.ecosystem, entry.name)), set())
            for item in entry.ranges:
                if item.type == "ECOSYSTEM":
                    found.update(
                        v for name, v in item.events if (name, v) not in (("introduced", "0"), ("limit", "*"))
                    )
    rows = []
    for (key, name), found in sorted(versions.items()):
        ranked = ranked_versions(ecosystems.KIND_OF_ECOSYSTEM[key.split(":", 1)[0]], found)
        rows.append((key, name, json.dumps(ranked, separators=(",", ":"))))
    return rows


def ranked_versions(kind: str, found: Iterable[str]) -> list[list[Any]]:
    """[version, rank] in `kind`'s order (the library's); equal versions share a rank, unreadable
    versions are left out."""
    readable = []
    for version in sorted(set(found)):
        try:
            readable.append((versions_module.key(kind, version), version))
        except versions_module.VersionError:
            continue  # ranges naming it are compared one by one (and noted)
    readable.sort(key=lambda item: item[0])
    ranked: list[list[Any]] = []
    rank = 0
    for n, (ordered, version) in enumerate(readable):
        if n and readable[n - 1][0] < ordered:
            rank += 1
        ranked.append([version, rank])
    return ranked


class Order:
    """A package's versions in its ecosystem's order (from the index), and where a version goes among them."""

    def __init__(self, kind: str, ranked: list[list[Any]]) -> None:
        self.kind = kind
        self.ranks: dict[str, int] = {version: rank for version, rank in ranked}
        self._versions = [version for version, _ in ranked]
        self._ranks = [rank for _, rank in ranked]

    def position(self, installed: str) -> int:
        """Twice the rank of the version equal to `installed`, or odd: between two ranks (-1: below all).
        A binary search: only the versions it visits are read by the ecosystem's library."""
        v = versions_module.key(self.kind, installed)
        at = bisect.bisect_right(self._versions, v, key=lambda text: versions_module.key(self.kind, text))
        if at and not versions_module.key(self.kind, self._versions[at - 1]) < v:
            return 2 * self._ranks[at - 1]
        return 2 * self._ranks[at - 1] + 1 if at else -1


def _entry_json(entry: osv.Affected) -> str:
    """An affected entry as the index keeps it beside its package (compact JSON)."""
    ranges = [[r.type, [list(e) for e in r.events]] for r in entry.ranges]
    doc = [entry.ecosystem, entry.name, ranges, list(entry.versions), [list(s) for s in entry.severity]]
    return json.dumps(doc, separators=(",", ":"))


@lru_cache(maxsize=1 << 16)
def parse_entry(text: str) -> osv.Affected:
    """An affected entry from its index text (remembered: audits in one process share them)."""
    ecosystem, name, ranges, versions, severity = json.loads(text)
    return osv.Affected(
        ecosystem,
        name,
        tuple(osv.Range(kind, tuple(map(tuple, events))) for kind, events in ranges),
        tuple(versions),
        tuple(map(tuple, severity)),
    )


class Index:
    """An index opened for reading: its snapshot, and the records listed for a package."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise DbError(
                f"{path}: no such vulnerability index; make one with `container-lock vulndb import`"
            )
        try:
            self._db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            version = meta.get("index_version")
            if version != str(INDEX_VERSION):
                raise DbError(
                    f"{path}: index version {version or 'unknown'}, this container-lock reads version"
                    f" {INDEX_VERSION}; import the exports again (`container-lock vulndb import`)"
                )
            raw = json.loads(meta["snapshot"])
        except (sqlite3.Error, KeyError, ValueError) as err:
            if isinstance(err, DbError):
                raise
            raise DbError(f"{path}: not a container-lock vulnerability index ({err})") from None
        self.path = path
        self.snapshot = Snapshot(
            id=raw["id"],
            sources=tuple(
                Source(s["name"], s["sha256"], s["records"], s["newest_modified"]) for s in raw["sources"]
            ),
            records=raw["records"],
            withdrawn=raw["withdrawn"],
            skipped=raw["skipped"],
            newest=raw["newest_modified"],
        )
        self._records: dict[str, osv.Record] = {}
        self._briefs: dict[str, osv.Record] = {}  # without `affected` (`records`)

    def close(self) -> None:
        self._db.close()

    def order(self, ecosystem: str, name: str) -> Order | None:
        """The order of the versions the package's ranges name (None: the index has none)."""
        row = self._db.execute(
            "SELECT versions FROM orders WHERE ecosystem = ? AND name = ?", (ecosystem, name)
        ).fetchone()
        kind = ecosystems.KIND_OF_ECOSYSTEM.get(ecosystem.split(":", 1)[0])
        return Order(kind, json.loads(row[0])) if row and kind else None

    def listed(self, ecosystem: str, names: Iterable[str]) -> list[tuple[str, str, osv.Affected]]:
        """The (name, record id, affected entry) triples that name a package in an ecosystem key, by
        record id; the records themselves are read only for the entries that match (`record`)."""
        found = []
        for name in names:
            found += [
                (name, record_id, parse_entry(entry))
                for record_id, entry in self._db.execute(
                    "SELECT record, entry FROM affected WHERE ecosystem = ? AND name = ?"
                    " ORDER BY record, position",
                    (ecosystem, name),
                )
            ]
        return found

    def _fill(self, table: str, columns: str, rows: Iterable[tuple[Any, ...]]) -> None:
        """A temporary table of `rows` (the connection's own; the index is not written)."""
        self._db.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} ({columns})")
        self._db.execute(f"DELETE FROM temp.{table}")
        width = columns.count(",") + 1
        self._db.executemany(f"INSERT INTO temp.{table} VALUES ({', '.join('?' * width)})", rows)

    def orders(self, packages: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Order]:
        """`order` of many (ecosystem key, name) at once; packages without one are left out."""
        self._fill("wanted_orders", "ecosystem TEXT, name TEXT", sorted(set(packages)))
        found = {}
        for ecosystem, name, text in self._db.execute(
            "SELECT o.ecosystem, o.name, o.versions FROM temp.wanted_orders w"
            " JOIN orders o ON o.ecosystem = w.ecosystem AND o.name = w.name"
        ):
            kind = ecosystems.KIND_OF_ECOSYSTEM.get(ecosystem.split(":", 1)[0])
            if kind and (ecosystem, name) not in found:
                found[ecosystem, name] = Order(kind, json.loads(text))
        return found

    def placed(
        self, wanted: Iterable[tuple[int, str, str, int, str]]
    ) -> tuple[list[tuple[int, str, str, int, str | None, bool, str]], list[tuple[int, str, str, int, str]]]:
        """The entries that match packages placed in their order, and those to compare.

        `wanted`: (n, ecosystem key, name, place, version): `n` the caller's, `place` the
        version's `Order.position`. Returns (answered, to compare):
        answered: (n, name, record, position, fix, by the versions list, entry) of the entries whose
        ranges affect the place (`places`) or whose `versions` list names the version (`listed`);
        to compare: (n, name, record, position, entry) of the entries the index could not answer
        (`match` compares them). Unordered.
        """
        self._fill("wanted", "n INTEGER, ecosystem TEXT, name TEXT, place INTEGER, version TEXT", wanted)
        answered: list[tuple[int, str, str, int, str | None, bool, str]] = [
            (n, name, record_id, position, fix, False, entry)
            for n, name, record_id, position, fix, entry in self._db.execute(
                "SELECT w.n, w.name, p.record, p.position, p.fixed, a.entry FROM temp.wanted w"
                " JOIN places p ON p.ecosystem = w.ecosystem AND p.name = w.name"
                " AND p.first <= w.place AND p.last >= w.place"
                " JOIN affected a ON a.ecosystem = p.ecosystem AND a.name = p.name"
                " AND a.record = p.record AND a.position = p.position"
            )
        ]
        answered += [
            (n, name, record_id, position, None, True, entry)
            for n, name, record_id, position, entry in self._db.execute(
                "SELECT w.n, w.name, l.record, l.position, a.entry FROM temp.wanted w"
                " JOIN listed l ON l.ecosystem = w.ecosystem AND l.name = w.name AND l.version = w.version"
                " JOIN affected a ON a.ecosystem = l.ecosystem AND a.name = l.name"
                " AND a.record = l.record AND a.position = l.position"
            )
        ]
        compared = self._db.execute(
            "SELECT w.n, w.name, a.record, a.position, a.entry FROM temp.wanted w"
            " JOIN affected a ON a.ecosystem = w.ecosystem AND a.name = w.name AND a.placed = 0"
        ).fetchall()
        return answered, compared

    def records(self, ids: Iterable[str], present: bool = False) -> dict[str, osv.Record]:
        """Many records at once, without their `affected` entries (an audit has the entries of its
        packages from `placed`; sqlite leaves them and the details out before they are parsed).
        `present`: only those the index holds (an `upstream` may name records it does not)."""
        ids = list(ids)
        missing = sorted(set(ids) - self._briefs.keys())
        if missing:
            self._fill("wanted_records", "id TEXT", ((i,) for i in missing))
            for record_id, doc in self._db.execute(
                "SELECT r.id, json_remove(r.doc, '$.affected', '$.details') FROM temp.wanted_records w"
                " JOIN records r ON r.id = w.id"
            ):
                self._briefs[record_id] = osv.trusted(json.loads(doc))
        if present:
            return {i: self._briefs[i] for i in ids if i in self._briefs}
        return {i: self._briefs[i] for i in ids}

    def record(self, record_id: str) -> osv.Record:
        """A record by id (parsed once)."""
        record = self._records.get(record_id)
        if record is None:
            (doc,) = self._db.execute("SELECT doc FROM records WHERE id = ?", (record_id,)).fetchone()
            record = self._records[record_id] = osv.trusted(json.loads(doc))
        return record
