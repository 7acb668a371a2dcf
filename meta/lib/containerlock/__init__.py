"""container-lock's BitBake library, one subpackage per stage of the pipeline.

- `oci`: the OCI model: references, platforms, manifests, the blob store in DL_DIR, resolving,
  the record of a fetched image, the OCI image layout do_unpack writes.
- `fetch`: the `docker://` fetcher (do_fetch, do_unpack), registry pulls, mirrors, skopeo.
- `contents`: what is inside an image (do_container_inventory): layer stack, package databases.
- `payload`: the loader package's payload (do_install_fetched_containers): engine archives.
- `lock`: the lockfile, the recipe side of the lock (pins, strict mode), policies.
- `build_hooks`: the tasks' `[file-checksums]` (the import closure) and the end-of-build SBOM.
- `files`, `version`: shared by all.

The layer's global class imports `containerlock.fetch.fetcher` and calls `register()`.
Everything but `build_hooks.sbom`, `fetch.fetcher`, `fetch.progress`, `fetch.task_skopeo` and
`lock.recipe` uses only the standard library, so the CLI shares it. This package imports
nothing.
"""
