"""One entry point for both paths to the SBOM: the CLI and the end-of-build handler."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from containerlock.lock import lockfile

from . import document, kind, manifests, output, preloaded
from .memory import no_cycle_collection

Progress = Callable[[int, int], None]


def generate(
    manifest_paths: Sequence[Path] = (),
    deploy_dir: Path | None = None,
    lock_path: Path | None = None,
    merge_into: Path | None = None,
    fmt: str = "json",
    source_date_epoch: int | None = None,
    progress: Progress | None = None,
) -> str:
    """The validated SBOM text for the given manifests (or every manifest in `deploy_dir`).

    `progress(done, total)` is called as the work proceeds: once per manifest read, then
    per image built, per image's packages written and per share of the validation.
    `total` counts the manifest files until they are read, then stays fixed
    (files + 3 × images + 1); `done` only grows and ends equal to `total`.
    """
    with no_cycle_collection():
        return _generate(manifest_paths, deploy_dir, lock_path, merge_into, fmt, source_date_epoch, progress)


def _generate(
    manifest_paths: Sequence[Path],
    deploy_dir: Path | None,
    lock_path: Path | None,
    merge_into: Path | None,
    fmt: str,
    source_date_epoch: int | None,
    progress: Progress | None,
) -> str:
    if manifest_paths:
        paths = list(manifest_paths)
    elif deploy_dir is not None:
        paths = manifests.paths_in(deploy_dir)
    else:
        raise manifests.BuildManifestError("give build manifests or --deploy-dir")
    report = progress or (lambda done, total: None)
    loaded = []
    for n, path in enumerate(paths, 1):
        loaded.append(manifests.load(path))
        report(n, len(paths))
    images = sum(len(m.images) for m in loaded)
    total = len(paths) + 3 * images + 1
    if lock_path is not None and not lock_path.exists():  # a named lock that is not there is bad input
        raise lockfile.LockfileError(
            f"{lock_path}: no such lockfile; give the build's lockfile (CONTAINER_LOCKFILE) or leave out -l"
        )
    try:
        lock = lockfile.load(lock_path) if lock_path is not None else None
    except OSError as err:
        raise lockfile.LockfileError(f"{lock_path}: cannot be read ({err.strerror or err})") from None
    except lockfile.LockfileError as err:
        assert lock_path is not None
        message = kind.mistaken(lock_path, kind.LOCKFILE, "the lockfile `container-lock update` wrote")
        raise lockfile.LockfileError(message or str(err)) from None
    doc = document.build(
        loaded,
        lock,
        source_date_epoch,
        inventory_model=fmt == "xml",
        progress=lambda n: report(len(paths) + n, total),
    )
    # What an image build preloaded (CONTAINER_PRELOAD), beside the manifests.
    preloaded.annotate(doc, preloaded.stores(p.parent for p in paths))
    if merge_into is not None:
        doc = output.merge(merge_into, doc)
    counter = _Counter(report, len(paths) + images, total, images, len(doc.bom.components) + images)
    text = output.render(doc, fmt, counter.tick)
    report(total, total)
    return text


class _Counter:
    """Maps `ticks` steps (packages written per image, then top-level components validated)
    onto `span` units of progress after `base`."""

    def __init__(self, report: Progress, base: int, total: int, span: int, ticks: int) -> None:
        self.report, self.base, self.total = report, base, total
        self.scale = 2 * span / max(ticks, 1)
        self.count = 0
        self.shown = -1

    def tick(self) -> None:
        self.count += 1
        done = self.base + min(int(self.count * self.scale), self.total - self.base - 1)
        if done != self.shown:
            self.shown = done
            self.report(done, self.total)
