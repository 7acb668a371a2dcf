"""Preloaded stores (CONTAINER_PRELOAD): the images of the loader packages installed in an image's
root file system, written into each engine's store inside it at build time, so that a first boot
loads nothing (docs/loader.md, "Preloaded stores").

- `installed`: the loader packages installed in a root file system and their image.list.
- `debs`: loader packages among built .debs (path-exclude lines, their archives).
- `podman`: containers-storage through skopeo; `docker`: a private dockerd on the data root.
- `record`: the loaders' record, written as the loader writes it.
- `run`: the whole step, and the command the image build runs (`python3 -m containerlock.preload`).

Standard library and host tools (skopeo, dockerd, dpkg-deb, dpkg-query, zstd/xz/gzip) only.
"""


class PreloadError(RuntimeError):
    """The store cannot be written; the text names the package, image or tool and what to do."""
