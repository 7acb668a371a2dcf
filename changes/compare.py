"""Compare two releases: images added, removed and re-pinned; per re-pinned image the packages
(ordered by each ecosystem's version rules), the layers and the bytes a device must fetch; the
findings fixed, introduced and still open."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .release import Finding, Image, Layer, PackageKey, Release

LEVELS = ("none", "low", "medium", "high", "critical")


@dataclass(frozen=True)
class PackageChange:
    """One package of a re-pinned image: added, removed, upgraded, downgraded or changed (a
    version the ecosystem's rules cannot order)."""

    change: str
    key: PackageKey
    old: str | None
    new: str | None


@dataclass
class Repin:
    """An image that both releases embed (same reference and platform) at another digest or tag."""

    old: Image
    new: Image
    packages: list[PackageChange] | None  # None: not known (lockfiles)
    reused_layers: int | None
    new_layers: int | None
    update_bytes: int | None  # compressed size of its layers the old release does not have

    def count(self, change: str) -> int:
        return sum(1 for p in self.packages or () if p.change == change)


@dataclass(frozen=True)
class FindingChange:
    """A finding on one side: the image (label of the side it is on) and the finding."""

    image: Image
    finding: Finding


@dataclass
class VulnerabilityDiff:
    fixed: list[FindingChange]
    introduced: list[FindingChange]
    still_open: list[FindingChange]
    source: str  # where the findings come from


@dataclass
class ReleaseDiff:
    old: Release
    new: Release
    added: list[Image] = field(default_factory=list)
    removed: list[Image] = field(default_factory=list)
    repinned: list[Repin] = field(default_factory=list)
    unchanged: int = 0
    update_bytes: int | None = None  # every layer of the new release the old one does not have
    new_layer_count: int | None = None
    vulnerabilities: VulnerabilityDiff | None = None
    vulnerabilities_missing: str | None = None  # why they were not compared


def _pairs(old: list[Image], new: list[Image]) -> tuple[list[tuple[Image, Image]], list[Image], list[Image]]:
    """Images paired by (reference, tag, platform), then by (reference, platform) when that names
    one image on each side (a tag moved); the rest are removed / added."""
    by_key = {image.key: image for image in old}
    pairs, left_new = [], []
    for image in new:
        match = by_key.pop(image.key, None)
        if match is None:
            left_new.append(image)
        else:
            pairs.append((match, image))
    groups: dict[tuple[str, str], tuple[list[Image], list[Image]]] = {}
    for image in by_key.values():
        groups.setdefault((image.reference, image.platform), ([], []))[0].append(image)
    for image in left_new:
        groups.setdefault((image.reference, image.platform), ([], []))[1].append(image)
    removed, added = [], []
    for was, now in groups.values():
        if len(was) == 1 and len(now) == 1:
            pairs.append((was[0], now[0]))
        else:
            removed += was
            added += now
    return pairs, removed, added


def _order(kind: str | None, a: str, b: str) -> str:
    """upgraded / downgraded / changed (no known order) for a version a → b."""
    if kind is None:
        return "changed"
    from vulns.versions import VersionError, compare

    try:
        result = compare(kind, a, b)
    except VersionError:
        return "changed"
    return "upgraded" if result < 0 else ("downgraded" if result > 0 else "changed")


def package_changes(
    old: dict[PackageKey, tuple[str, ...]], new: dict[PackageKey, tuple[str, ...]]
) -> list[PackageChange]:
    """What happened to each package between two images, sorted by ecosystem, name, arch."""
    found = []
    for key in sorted(old.keys() | new.keys()):
        was, now = old.get(key, ()), new.get(key, ())
        if was == now:
            continue
        if len(was) == 1 and len(now) == 1:
            found.append(PackageChange(_order(key.kind, was[0], now[0]), key, was[0], now[0]))
            continue
        found += [PackageChange("removed", key, v, None) for v in was if v not in now]
        found += [PackageChange("added", key, None, v) for v in now if v not in was]
    return found


def _fetch(layers: Iterable[Layer], have: set[str]) -> tuple[int, int, int | None]:
    """(reused, new, bytes of the new ones) for `layers` against the digests a device `have`s."""
    reused = new = 0
    size: int | None = 0
    counted: set[str] = set()
    for layer in layers:
        if layer.digest in have:
            reused += 1
            continue
        new += 1
        if layer.digest in counted:
            continue
        counted.add(layer.digest)
        size = None if size is None or layer.size is None else size + layer.size
    return reused, new, size


def _repin(old: Image, new: Image, have: set[str]) -> Repin:
    packages = None
    if old.packages is not None and new.packages is not None:
        packages = package_changes(old.packages, new.packages)
    if old.layers is None or new.layers is None:
        return Repin(old, new, packages, None, None, None)
    reused, fresh, size = _fetch(new.layers, have)
    return Repin(old, new, packages, reused, fresh, size)


def _same_flaw(a: Finding, b: Finding) -> bool:
    """One names the other: the same id, or one's id among the other's aliases (a CVE and the DSA
    or DEBIAN-CVE that `upstream` links to it). Two findings that only share a third id (two CVEs
    of one advisory) are different flaws."""
    return a.id == b.id or a.id in b.aliases or b.id in a.aliases


def _vulnerabilities(
    pairs: list[tuple[Image, Image]], removed: list[Image], added: list[Image], source: str
) -> VulnerabilityDiff:
    """Findings grouped by (image as the old release names it, package); within a group a finding
    of NEW is still open when an OLD one is the same flaw (`_same_flaw`), whichever id each shows."""
    old_side: dict[tuple[object, ...], dict[str, FindingChange]] = {}
    new_side: dict[tuple[object, ...], dict[str, FindingChange]] = {}

    def add(
        side: dict[tuple[object, ...], dict[str, FindingChange]], key: tuple[str, str, str], image: Image
    ) -> None:
        for finding in image.findings:
            side.setdefault((key, finding.package), {}).setdefault(finding.id, FindingChange(image, finding))

    for image in [old for old, _ in pairs] + removed:
        add(old_side, image.key, image)
    for old, new in pairs:
        add(new_side, old.key, new)
    for image in added:
        add(new_side, image.key, image)
    fixed: list[FindingChange] = []
    introduced: list[FindingChange] = []
    still_open: list[FindingChange] = []
    for group in old_side.keys() | new_side.keys():
        olds = list(old_side.get(group, {}).values())
        news = list(new_side.get(group, {}).values())
        for change in news:
            seen = any(_same_flaw(change.finding, o.finding) for o in olds)
            (still_open if seen else introduced).append(change)
        fixed += [o for o in olds if not any(_same_flaw(o.finding, n.finding) for n in news)]

    def ordered(items: Iterable[FindingChange]) -> list[FindingChange]:
        return sorted(items, key=lambda c: (c.image.key, c.finding.package, c.finding.id))

    return VulnerabilityDiff(
        fixed=ordered(fixed), introduced=ordered(introduced), still_open=ordered(still_open), source=source
    )


def compare(old: Release, new: Release, vulnerability_source: str | None = None) -> ReleaseDiff:
    """The diff of two releases (both read by `read.load`, findings attached or not)."""
    pairs, removed, added = _pairs(old.images, new.images)
    diff = ReleaseDiff(old, new)
    have = {layer.digest for image in old.images for layer in image.layers or ()}
    for was, now in sorted(pairs, key=lambda p: p[1].key):
        if was.key == now.key and was.digest == now.digest:
            diff.unchanged += 1
        else:
            diff.repinned.append(_repin(was, now, have))
    diff.removed = sorted(removed, key=lambda i: i.key)
    diff.added = sorted(added, key=lambda i: i.key)
    if old.has_contents and new.has_contents:
        changed = [
            layer for image in [r.new for r in diff.repinned] + diff.added for layer in image.layers or ()
        ]
        _, _, diff.update_bytes = _fetch(changed, have)
        diff.new_layer_count = len({layer.digest for layer in changed} - have)
    if old.audited and new.audited:
        diff.vulnerabilities = _vulnerabilities(
            pairs, removed, added, vulnerability_source or _source(old, new)
        )
    else:
        missing = [side for side, release in (("OLD", old), ("NEW", new)) if not release.audited]
        if "lockfile" in (old.kind, new.kind):
            diff.vulnerabilities_missing = "lockfiles list images only"
        elif "update" in (old.kind, new.kind):
            diff.vulnerabilities_missing = (
                "update --diff lists packages; `container-lock diff` of audited SBOMs (or with --db) "
                "compares their vulnerabilities"
            )
        else:
            diff.vulnerabilities_missing = (
                f"{' and '.join(missing)} {'carries' if len(missing) == 1 else 'carry'} no findings: "
                "give SBOMs written by `container-lock audit -o`, or --db PATH"
            )
    return diff


def _source(old: Release, new: Release) -> str:
    if old.snapshot and old.snapshot == new.snapshot:
        return f"the SBOMs' findings (snapshot {old.snapshot})"
    return (
        f"the SBOMs' findings (OLD snapshot {old.snapshot or 'not named'}, NEW snapshot "
        f"{new.snapshot or 'not named'}: a finding may come and go with the snapshot; --db compares both "
        "against one)"
    )


def failing(diff: ReleaseDiff, level: str) -> list[FindingChange]:
    """Introduced findings, not triaged away, at `level` or above; unknown severity fails too (it
    cannot be shown to be below)."""
    if diff.vulnerabilities is None:
        return []
    floor = LEVELS.index(level)
    return [
        c
        for c in diff.vulnerabilities.introduced
        if not c.finding.suppressed
        and (c.finding.severity not in LEVELS or LEVELS.index(c.finding.severity) >= floor)
    ]
