"""container-lock's BitBake library: the `docker://` fetcher and its helpers.

The layer's global class imports `containerlock.fetcher` and calls `register()`.
Everything but `fetcher`, `recipe_lock`, `build_sbom` and `progress` uses only the
standard library, so the CLI shares it.
"""
