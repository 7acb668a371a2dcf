"""One entry point for both paths to the SBOM: the CLI and the end-of-build handler."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from containerlock import lockfile

from . import document, manifests, output


def generate(
    manifest_paths: Sequence[Path] = (),
    deploy_dir: Path | None = None,
    lock_path: Path | None = None,
    merge_into: Path | None = None,
    fmt: str = "json",
    source_date_epoch: int | None = None,
) -> str:
    """The validated SBOM text for the given manifests (or every manifest in `deploy_dir`)."""
    if manifest_paths:
        loaded = [manifests.load(p) for p in manifest_paths]
    elif deploy_dir is not None:
        loaded = manifests.from_deploy_dir(deploy_dir)
    else:
        raise manifests.BuildManifestError("give build manifests or --deploy-dir")
    lock = lockfile.load(lock_path) if lock_path is not None else None
    bom, edges = document.build(loaded, lock, source_date_epoch)
    if merge_into is not None:
        bom = output.merge(merge_into, bom, edges)
    return output.render(bom, fmt)
