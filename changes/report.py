"""The diff as JSON (a stable, versioned schema: docs/diff.md) and as Markdown (release notes, a
pull request's description)."""

from __future__ import annotations

from typing import Any

from .compare import FindingChange, PackageChange, ReleaseDiff, Repin
from .release import Image, Release

SCHEMA = "container-lock/diff/1"
CHANGES = ("upgraded", "downgraded", "added", "removed", "changed")


def _side(release: Release) -> dict[str, Any]:
    return {
        "source": release.source,
        "kind": release.kind,
        "images": len(release.images),
        "vulnerability_snapshot": release.snapshot,
    }


def _image(image: Image) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "reference": image.reference,
        "tag": image.tag,
        "platform": image.platform,
        "digest": image.digest,
        "pinned_digest": image.pinned,
    }
    if image.layers is not None:
        doc["layers"] = len(image.layers)
        sizes = [layer.size for layer in image.layers]
        doc["size"] = None if None in sizes else sum(s or 0 for s in sizes)
    if image.packages is not None:
        doc["packages"] = sum(len(v) for v in image.packages.values())
    return doc


def _package(change: PackageChange) -> dict[str, Any]:
    return {
        "ecosystem": change.key.ecosystem,
        "name": change.key.name,
        "arch": change.key.arch or None,
        "old": change.old,
        "new": change.new,
    }


def _repin(repin: Repin) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "reference": repin.new.reference,
        "platform": repin.new.platform,
        "old": {"tag": repin.old.tag, "digest": repin.old.digest, "pinned_digest": repin.old.pinned},
        "new": {"tag": repin.new.tag, "digest": repin.new.digest, "pinned_digest": repin.new.pinned},
        "packages": None,
        "layers": None,
    }
    if repin.packages is not None:
        doc["packages"] = {c: [_package(p) for p in repin.packages if p.change == c] for c in CHANGES}
    if repin.new_layers is not None:
        doc["layers"] = {
            "reused": repin.reused_layers,
            "new": repin.new_layers,
            "update_bytes": repin.update_bytes,
        }
    return doc


def _finding(change: FindingChange) -> dict[str, Any]:
    finding, image = change.finding, change.image
    return {
        "id": finding.id,
        "severity": finding.severity,
        "image": {"reference": image.reference, "tag": image.tag, "platform": image.platform},
        "package": {
            "ecosystem": finding.package.ecosystem,
            "name": finding.package.name,
            "arch": finding.package.arch or None,
            "version": finding.version,
        },
        "fixed_version": finding.fixed,
        "analysis": finding.analysis,
    }


def as_json(diff: ReleaseDiff, failing: list[FindingChange] | None = None) -> dict[str, Any]:
    """The documented JSON form (keys sorted by the writer; lists in a fixed order)."""
    vulnerabilities = None
    if diff.vulnerabilities is not None:
        v = diff.vulnerabilities
        vulnerabilities = {
            "source": v.source,
            "fixed": [_finding(c) for c in v.fixed],
            "introduced": [_finding(c) for c in v.introduced],
            "still_open": [_finding(c) for c in v.still_open],
        }
    return {
        "schema": SCHEMA,
        "old": _side(diff.old),
        "new": _side(diff.new),
        "images": {
            "added": [_image(i) for i in diff.added],
            "removed": [_image(i) for i in diff.removed],
            "repinned": [_repin(r) for r in diff.repinned],
            "unchanged": diff.unchanged,
        },
        "update": None
        if diff.update_bytes is None and diff.new_layer_count is None
        else {"new_layers": diff.new_layer_count, "bytes": diff.update_bytes},
        "vulnerabilities": vulnerabilities,
        "vulnerabilities_not_compared": diff.vulnerabilities_missing,
        "failing": None if failing is None else [_finding(c) for c in failing],
    }


def size(value: int | None) -> str:
    """Bytes for people: 1.2 MB (decimal units), `unknown` for None."""
    if value is None:
        return "unknown"
    amount = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if amount < 1000 or unit == "GB":
            return f"{value} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    return f"{value} B"


def short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def _md(text: str) -> str:
    """Text for a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _tagged(image: Image) -> str:
    return f"`{image.reference}:{image.tag}`" + (f" ({image.platform})" if image.platform else "")


def summary_line(diff: ReleaseDiff) -> str:
    parts = [
        f"{len(diff.repinned)} re-pinned",
        f"{len(diff.added)} added",
        f"{len(diff.removed)} removed",
        f"{diff.unchanged} unchanged",
    ]
    line = "Images: " + ", ".join(parts)
    if diff.update_bytes is not None or diff.new_layer_count is not None:
        layers = f"{diff.new_layer_count} new layer" + ("" if diff.new_layer_count == 1 else "s")
        line += f"; a device downloads {size(diff.update_bytes)} ({layers})"
    return line


def markdown(diff: ReleaseDiff, failing: list[FindingChange] | None = None) -> str:
    """Release notes / a pull request's description."""
    out = ["## Container images", "", summary_line(diff) + ".", ""]
    if diff.added or diff.removed:
        out += ["| change | image | digest |", "| --- | --- | --- |"]
        out += [f"| added | {_tagged(i)} | `{short(i.digest)}` |" for i in diff.added]
        out += [f"| removed | {_tagged(i)} | `{short(i.digest)}` |" for i in diff.removed]
        out.append("")
    for repin in diff.repinned:
        out += _repin_markdown(repin)
    out += _vulnerabilities_markdown(diff, failing)
    return "\n".join(out).rstrip() + "\n"


def _repin_markdown(repin: Repin) -> list[str]:
    old, new = repin.old, repin.new
    tag = old.tag if old.tag == new.tag else f"{old.tag} → {new.tag}"
    head = f"### `{new.reference}` {tag}" + (f" ({new.platform})" if new.platform else "")
    out = [head, "", f"`{short(old.digest)}` → `{short(new.digest)}`"]
    if repin.new_layers is not None:
        out[-1] += (
            f"; layers: {repin.reused_layers} reused, {repin.new_layers} new "
            f"({size(repin.update_bytes)} to download)"
        )
    out.append("")
    if repin.packages is None:
        return out
    if not repin.packages:
        return [*out, "No package changed.", ""]
    counts = ", ".join(f"{repin.count(c)} {c}" for c in CHANGES if repin.count(c))
    out += [
        f"Packages: {counts}.",
        "",
        "| package | ecosystem | change | old | new |",
        "| --- | --- | --- | --- | --- |",
    ]
    for p in repin.packages:
        out.append(
            f"| {_md(p.key.label())} | {_md(p.key.ecosystem)} | {p.change} | "
            f"{_md(p.old or '')} | {_md(p.new or '')} |"
        )
    return [*out, ""]


def _vulnerabilities_markdown(diff: ReleaseDiff, failing: list[FindingChange] | None) -> list[str]:
    out = ["## Vulnerabilities", ""]
    v = diff.vulnerabilities
    if v is None:
        return [*out, f"Not compared: {diff.vulnerabilities_missing}.", ""]
    out += [
        f"{len(v.fixed)} fixed, {len(v.introduced)} introduced, {len(v.still_open)} still open "
        f"(from {v.source}).",
        "",
    ]
    blocking = {id(c) for c in failing or ()}
    for title, items in (("Introduced", v.introduced), ("Fixed", v.fixed)):
        if not items:
            continue
        out += [f"{title}:", "", "| id | severity | image | package | version | fixed in | triage |"]
        out.append("| --- | --- | --- | --- | --- | --- | --- |")
        for c in items:
            f = c.finding
            triage = f.analysis or ("**fails the gate**" if id(c) in blocking else "")
            out.append(
                f"| {_md(f.id)} | {f.severity} | {_tagged(c.image)} | {_md(f.package.label())} | "
                f"{_md(f.version)} | {_md(f.fixed or '')} | {_md(triage)} |"
            )
        out.append("")
    if failing:
        out += [f"**{len(failing)} introduced finding(s) at or above the gate.**", ""]
    return out
