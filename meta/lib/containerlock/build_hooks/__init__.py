"""Build hooks: what the global class runs around the tasks rather than inside them.

The import closure that makes a task's `[file-checksums]`, and the SBOM written when the
build completes. (Not `build/`: the project's .gitignore ignores every `build/` directory.)
"""
