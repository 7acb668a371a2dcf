"""Payload: unpacked OCI layouts turned into the loader package's payload.

do_install_fetched_containers: engine archives (the fetched blobs as they are, or recompressed
by skopeo and zstd/xz/gzip), image.list and the build manifest. Standard library and host
tools only.
"""
