"""The OCI model: what an image is, wherever it comes from.

Image references, platforms, manifests and indexes, the content-addressed blob store in
DL_DIR, resolving a pinned image to its platform manifest, the record of a fetched image,
and the OCI image layout do_unpack writes. Standard library only; the other stages build on it.
"""
