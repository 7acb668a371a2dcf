"""`container-lock update`: re-resolve tags and write the lockfile (atomically, deterministically)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from containerlock.lock import lockfile
from containerlock.lock.lockfile import Lock, LockEntry
from containerlock.oci.reference import ImageReference, InvalidReference

from .registry import resolve_all
from .scan import Found


class UsageError(ValueError):
    """The command line asks for something that cannot be done (exit status 2)."""


@dataclass(frozen=True)
class Change:
    """One reference: what the lock has, and what the registry says now."""

    key: str
    old: LockEntry | None
    new: LockEntry | None
    error: str | None = None

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        if self.old is None:
            return "added"
        if self.new is not None and self.new.digest != self.old.digest:
            return "updated"
        if self.new is not None and dict(self.new.platforms) != dict(self.old.platforms):
            return "platforms"
        return "unchanged"


@dataclass
class UpdatePlan:
    """What `update` found and would do."""

    changes: list[Change] = field(default_factory=list)
    unresolved: list[Found] = field(default_factory=list)

    @property
    def errors(self) -> list[Change]:
        return [c for c in self.changes if c.error]

    @property
    def resolved(self) -> list[Change]:
        return [c for c in self.changes if c.new is not None]

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.status in ("added", "updated", "platforms")]


def image_key(text: str) -> str:
    """The lock key of an --image: `host/path[:tag]`, `docker://host/path[:tag]` (as `inventory` takes
    it) or a recipe's `docker://host/path;tag=TAG`."""
    if text.startswith("docker://") and ";" not in text:
        text = text.removeprefix("docker://")
    return lockfile.normalise_key(text)


def _targets(found: Sequence[Found], lock: Lock, images: Iterable[str]) -> dict[str, ImageReference]:
    wanted = set()
    for text in images:
        try:
            wanted.add(image_key(text))
        except InvalidReference as error:
            raise UsageError(f"--image {text!r}: {error}") from None
    targets: dict[str, ImageReference] = {}
    if found:
        for f in found:
            if f.ref is not None and f.ref.digest is None:
                targets.setdefault(f.ref.tagged, f.ref)
    else:
        targets = {key: lockfile.key_reference(key) for key in lock.entries}
    if wanted:
        unknown = sorted(wanted - set(targets) - set(lock.entries))
        if unknown:
            raise UsageError(
                f"--image {', '.join(unknown)}: not used by the scanned recipes nor in the lockfile"
            )
        for key in wanted - set(targets):
            targets[key] = lockfile.key_reference(key)
        targets = {k: v for k, v in targets.items() if k in wanted}
    return dict(sorted(targets.items()))


def plan(
    found: Sequence[Found],
    lock: Lock,
    images: Iterable[str] = (),
    jobs: int = 8,
    timeout: float = 60.0,
    progress: Callable[[int, int], None] | None = None,
) -> UpdatePlan:
    """Resolve every reference that needs the lock (or the named `images`) against its registry."""
    targets = _targets(found, lock, images)
    resolutions = resolve_all(targets.values(), jobs=jobs, timeout=timeout, progress=progress)
    changes = [Change(r.ref.tagged, lock.get(r.ref.tagged), r.entry, r.error) for r in resolutions]
    return UpdatePlan(changes, [f for f in found if f.ref is None])


def write(plan: UpdatePlan, path: Path) -> bool:
    """Apply the successful changes (failed ones keep their old entry); returns whether it wrote.

    Nothing resolved: nothing is written (no empty lockfile is created, an existing one is untouched).
    """
    if not plan.resolved:
        return False

    def change(lock: Lock) -> None:
        for c in plan.changes:
            if c.new is None:
                continue
            current = lock.get(c.key)
            if current is not None and current.digest == c.new.digest:  # still verified: keep the proofs
                lock.entries[c.key] = replace(c.new, verified=current.verified, provenance=current.provenance)
            else:
                lock.entries[c.key] = c.new

    return lockfile.update(path, change)
