"""BitBake side of the lock: pin SRC_URI at parse time, record resolved tags, strict mode, and the
provenance CONTAINER_POLICY requires (judged on what the lock recorded, before any download).

Called from classes-global/container-lock.bbclass, which the layer INHERITs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import bb
import bb.cache
import bb.fetch2
import bb.parse

from ..files import atomic_write
from ..oci import record
from ..oci.reference import InvalidReference, parse_url
from . import lockfile
from .policy import PolicyError, load_cached
from .provenance import Rule, judge_lock_entry

_cache: dict[tuple[str, int, int], lockfile.Lock] = {}


def _lock(path: Path) -> lockfile.Lock:
    """The lock at `path`, cached per process while the file is unchanged."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return lockfile.Lock()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _cache:
        _cache[key] = lockfile.load(path)
    return _cache[key]


def lockfile_path(d: Any) -> Path | None:
    """CONTAINER_LOCKFILE as an absolute path, or None when unset."""
    value = (d.getVar("CONTAINER_LOCKFILE") or "").strip()
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else Path(d.getVar("TOPDIR") or ".") / path


def apply(d: Any) -> None:
    """Pin unpinned docker:// URLs from the lock; warn where recipe and lock disagree; strict check."""
    tokens = (d.getVar("SRC_URI") or "").split()
    if not any(t.startswith("docker://") for t in tokens):
        return
    path = lockfile_path(d)
    lock = lockfile.Lock()
    if path is not None:
        bb.parse.mark_dependency(d, str(path))  # editing or deleting the lock reparses
        try:
            lock = _lock(path)
        except lockfile.LockfileError as err:
            bb.fatal(f"{d.getVar('FILE')}: CONTAINER_LOCKFILE: {err}")
    changed, violations, provenance = False, [], []
    require_verified = (d.getVar("CONTAINER_REQUIRE_VERIFIED") or "0") == "1"
    for i, url in enumerate(tokens):
        if not url.startswith("docker://"):
            continue
        try:
            ref = parse_url(url)
        except InvalidReference:
            continue  # the fetcher reports it, naming the URL
        entry = lock.get(ref.tagged)
        if entry and ref.digest and entry.digest != ref.digest:
            bb.warn(
                f"{d.getVar('FILE')}: {ref.tagged}: the recipe pins {ref.digest}, the lockfile "
                f"{path} has {entry.digest}; building the recipe's digest "
                "(`container-lock check` lists these)"
            )
        elif entry and not ref.digest:
            tokens[i] = f"{url};digest={entry.digest}"
            ref = parse_url(tokens[i])
            changed = True
        if not (ref.digest and ref.tag_given):
            violations.append(url)
        elif require_verified and not (entry and entry.digest == ref.digest and entry.verified):
            violations.append(f"{url} (no signature verified at lock time)")
        problem = _provenance_problem(d, ref, entry)
        if problem:
            provenance.append(f"{url} ({problem})")
    if changed:
        d.setVar("SRC_URI", " ".join(tokens))
    _note_violations(d, (violations if _enforced(d) else []) + provenance)


def _provenance_rule(d: Any, name: str) -> Rule | None:
    """The [[provenance]] rule of CONTAINER_POLICY for the image `name` (a policy file is a parse
    dependency); PolicyError if the policy cannot be read."""
    spec = (d.getVar("CONTAINER_POLICY") or "").strip()
    if not spec:
        return None
    if Path(spec).is_file():
        bb.parse.mark_dependency(d, str(Path(spec).resolve()))
    return load_cached(spec).provenance_for(name)


def _provenance_problem(d: Any, ref: Any, entry: lockfile.LockEntry | None) -> str | None:
    """Why the image's provenance, as the lock recorded it, does not satisfy CONTAINER_POLICY."""
    try:
        rule = _provenance_rule(d, ref.name)
    except PolicyError as err:
        return f"CONTAINER_POLICY: {err}"
    if rule is None or not rule.required:
        return None
    if not ref.digest:
        return "provenance: not pinned, so no attestation can name it"
    found = judge_lock_entry(rule, entry, ref.digest)
    return f"provenance: {found[0]}: {found[1]}" if found else None


def _enforced(d: Any) -> bool:
    """Strict mode, or CONTAINER_REQUIRE_VERIFIED: unpinned (or unverified) URLs stop the build."""
    return (d.getVar("BB_STRICT_CHECKSUM") or "") == "1" or (
        d.getVar("CONTAINER_REQUIRE_VERIFIED") or ""
    ) == "1"


def _violations_dir(d: Any) -> Path:
    return Path(d.getVar("TMPDIR")) / "container-lock" / "strict"


def _note_violations(d: Any, urls: list[str]) -> None:
    """Keep one file per recipe listing its unpinned URLs (removed once it has none).

    A recipe served from BitBake's cache keeps its file from the parse that
    cached it, which is still right: nothing it depends on has changed.
    """
    recipe = d.getVar("FILE")
    variant = d.getVar("BB_CURRENT_MC") or ""
    name = hashlib.sha256(f"{variant}:{recipe}".encode()).hexdigest()[:32] + ".json"
    path = _violations_dir(d) / name
    if urls:
        atomic_write(path, (json.dumps({"recipe": recipe, "urls": urls}, sort_keys=True) + "\n").encode())
    else:
        path.unlink(missing_ok=True)


def strict_violations(d: Any, recipes: set[str] | None = None) -> list[tuple[str, list[str]]]:
    """Every (recipe, unpinned URLs) noted while parsing, for recipes that still exist.

    With `recipes` (real file paths), only those recipes are judged.
    """
    found = []
    directory = _violations_dir(d)
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            note = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        recipe = note.get("recipe", "")
        if Path(recipe).exists() and (recipes is None or recipe in recipes):
            found.append((recipe, list(note["urls"])))
    return sorted(found)


def fetched_recipes(depgraph: dict[str, Any]) -> set[str]:
    """The recipe files whose do_fetch is part of this build (from BitBake's task graph)."""
    tasks = depgraph.get("tdepends", {})
    files = set()
    for pn, info in depgraph.get("pn", {}).items():
        if f"{pn}.do_fetch" in tasks:
            files.add(bb.cache.virtualfn2realfn(info["filename"])[0])
    return files


def check_strict(d: Any, depgraph: dict[str, Any]) -> None:
    """Once BitBake knows the build's tasks, before any runs: fail listing every unpinned URL.

    Only recipes whose do_fetch is in the build are judged, as BitBake's own
    BB_STRICT_CHECKSUM judges only what it fetches: an unpinned recipe that
    this build does not fetch (say meta-isar's prebuilt-podman-img) stops nothing.
    """
    found = strict_violations(d, fetched_recipes(depgraph))
    if not found:
        return
    lines = [f"  {recipe}: {url}" for recipe, urls in found for url in urls]
    path = lockfile_path(d)
    fix = (
        f"container-lock update <your layers> --lockfile {path} (and `container-lock verify --record`)"
        if path
        else "set CONTAINER_LOCKFILE and run `container-lock update <your layers> --lockfile <file>`"
    )
    bb.fatal(
        "BB_STRICT_CHECKSUM / CONTAINER_REQUIRE_VERIFIED / CONTAINER_POLICY provenance: these docker:// "
        "URLs of this build have no tag or no digest (in the recipe or the lockfile), no signature "
        "verified at lock time, or no provenance the policy accepts:\n"
        + "\n".join(lines)
        + f"\nPin them: {fix}, or add ;tag=…;digest=sha256:… in SRC_URI."
    )


def _pending_dir(d: Any) -> Path:
    return Path(d.getVar("TMPDIR")) / "container-lock" / "recorded"


def record_event(event: Any, d: Any) -> None:
    """MissingChecksumEvent → a pending lock entry, written into the lockfile when the build ends.

    Not at once: the lockfile is a parse dependency, so a change in the middle of a
    build would make the next task's re-parse see another SRC_URI than the runqueue
    signed ("the basehash value changed … not deterministic").
    """
    if lockfile_path(d) is None or not str(event.url).startswith("docker://"):
        return
    digest = event.checksums.get("sha256sum")
    if not digest:
        return
    key = parse_url(event.url).tagged
    platform = manifest = None
    ud = bb.fetch2.Fetch([event.url], d).ud[event.url]
    try:
        facts = record.read(Path(ud.localpath))
        if facts.digest == digest:
            platform, manifest = facts.platform, facts.manifest
    except (OSError, record.RecordError):
        pass  # the digest alone is recorded
    entry = {"key": key, "digest": digest, "platform": platform, "manifest": manifest}
    name = hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()[:32] + ".json"
    atomic_write(_pending_dir(d) / name, (json.dumps(entry, sort_keys=True) + "\n").encode())


def write_recorded(d: Any) -> None:
    """BuildCompleted (failed builds too): the digests this build resolved → the lockfile."""
    path = lockfile_path(d)
    pending = sorted(_pending_dir(d).glob("*.json")) if _pending_dir(d).is_dir() else []
    for note in pending:
        try:
            entry = json.loads(note.read_text())
        except (OSError, ValueError):
            continue
        if path is not None and lockfile.record(
            path, entry["key"], entry["digest"], entry.get("platform"), entry.get("manifest")
        ):
            bb.note(f"recorded {entry['key']} = {entry['digest']} in {path}")
        note.unlink(missing_ok=True)
