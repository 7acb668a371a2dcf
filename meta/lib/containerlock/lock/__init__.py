"""Lock and policy: tag → digest pins, and which images a build may use.

The lockfile, the recipe side of the lock (pins at parse time, recorded tags, strict mode)
and the policy model with the built-in policies (policies/*.toml). `recipe` uses `bb`;
`lockfile` and `policy` are standard library, shared with the CLI.
"""
