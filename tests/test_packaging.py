"""The distribution ships every package: a non-editable install (what a build user gets, README)
must hold each directory of Python modules that the code imports."""

from __future__ import annotations

import tomllib

from tests.harness.bitbake import REPO

TOP_LEVEL = ("audit", "changes", "sbom", "policies", "vulns")


def _listed() -> tuple[set[str], dict[str, str]]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(config["packages"]), config.get("package-dir", {})


def test_every_package_directory_is_listed() -> None:
    listed, package_dir = _listed()
    roots = {name: REPO / name for name in TOP_LEVEL}
    roots.update({name: REPO / path for name, path in package_dir.items()})
    found = set()
    for name, root in roots.items():
        for init in root.rglob("__init__.py"):
            parts = init.parent.relative_to(root).parts
            found.add(".".join((name, *parts)))
    missing = sorted(found - listed)
    assert missing == [], f"pyproject.toml [tool.setuptools] packages lacks {missing}"
    assert {"audit.commands", "audit.render", "changes"} <= found  # the walk sees subpackages
