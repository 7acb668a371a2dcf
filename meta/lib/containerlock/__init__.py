"""container-lock's BitBake library: the `docker://` fetcher and its helpers.

Imported by `addpylib` in conf/layer.conf; importing registers the fetcher.
Everything but `fetcher` and `progress` uses only the standard library, so the
CLI can share it.
"""

try:
    import bb.fetch2  # noqa: F401
except ImportError:  # used outside BitBake (the CLI): nothing to register
    pass
else:
    from .fetcher import register

    register()
