"""Fetch: the `docker://` BitBake fetcher (do_fetch, do_unpack) and what it drives.

Registry pulls under per-blob locks, mirror tarballs, the one skopeo client with its error
explanations and task progress, and the messages a recipe's author sees. `fetcher`,
`progress` and `task_skopeo` use `bb`; the rest is standard library, shared with the CLI.
"""
