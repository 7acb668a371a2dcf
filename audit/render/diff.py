"""`container-lock diff`'s summary for people: images, per re-pinned image its packages and
layers, the update's download size, the vulnerabilities fixed and introduced. Digests whole
(`grep` finds them in a CI log); only `--markdown` abbreviates them."""

from __future__ import annotations

from changes.compare import FindingChange, ReleaseDiff, Repin
from changes.report import CHANGES, size, summary_line

from ..console import err, escape, out
from .tables import styled, table

STYLES = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "unknown": "magenta"}
CHANGE_STYLES = {"upgraded": "green", "downgraded": "bold yellow", "added": "cyan", "removed": "red"}


def show(diff: ReleaseDiff, failing: list[FindingChange]) -> None:
    console = out()
    console.print(f"[bold]{escape(summary_line(diff))}[/]")
    if diff.added or diff.removed:
        grid = table("change", "image", "platform", "digest")
        for label, images in (("added", diff.added), ("removed", diff.removed)):
            for image in images:
                grid.add_row(
                    styled(label, CHANGE_STYLES[label]),
                    escape(f"{image.reference}:{image.tag}"),
                    escape(image.platform or "-"),
                    image.digest,
                )
        console.print(grid)
    for repin in diff.repinned:
        _repin(repin)
    _vulnerabilities(diff, failing)


def _repin(repin: Repin) -> None:
    old, new = repin.old, repin.new
    tag = old.tag if old.tag == new.tag else f"{old.tag} → {new.tag}"
    line = f"[bold]{escape(new.reference)}[/] {escape(tag)}"
    line += f" ({escape(new.platform)})" if new.platform else ""
    line += f": {old.digest} → {new.digest}"  # whole, as everywhere but --markdown
    if repin.new_layers is not None:
        line += (
            f"; layers {repin.reused_layers} reused, {repin.new_layers} new, "
            f"{size(repin.update_bytes)} to download"
        )
    out().print(line)
    if repin.packages is None:
        return
    if not repin.packages:
        out().print("  no package changed")
        return
    out().print("  packages: " + ", ".join(f"{repin.count(c)} {c}" for c in CHANGES if repin.count(c)))
    grid = table("package", "ecosystem", "change", "old", "new")
    for p in repin.packages:
        grid.add_row(
            escape(p.key.label()),
            escape(p.key.ecosystem),
            styled(p.change, CHANGE_STYLES.get(p.change, "")),
            escape(p.old or "-"),
            escape(p.new or "-"),
        )
    out().print(grid)


def _vulnerabilities(diff: ReleaseDiff, failing: list[FindingChange]) -> None:
    v = diff.vulnerabilities
    if v is None:
        err().print(f"vulnerabilities not compared: {escape(diff.vulnerabilities_missing or '')}")
        return
    out().print(
        f"[bold]Vulnerabilities[/]: {len(v.fixed)} fixed, {len(v.introduced)} introduced, "
        f"{len(v.still_open)} still open (from {escape(v.source)})"
    )
    failed = {id(c) for c in failing}
    for title, items in (("introduced", v.introduced), ("fixed", v.fixed)):
        if not items:
            continue
        grid = table("id", "severity", "image", "package", "version", "fixed in", "triage", title=title)
        for c in items:
            f = c.finding
            triage = (
                escape(f.analysis) if f.analysis else (styled("FAIL", "bold red") if id(c) in failed else "")
            )
            grid.add_row(
                escape(f.id),
                styled(escape(f.severity), STYLES.get(f.severity, "")),
                escape(c.image.label()),
                escape(f.package.label()),
                escape(f.version),
                escape(f.fixed or "-"),
                triage,
            )
        out().print(grid)
