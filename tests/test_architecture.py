"""The module graph keeps one direction: audit → changes → vulns → sbom, policies → containerlock
(layer) → bb, stdlib.

docs/architecture.md shows the graph this test keeps true.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.bitbake import REPO

PACKAGES = {
    "containerlock": REPO / "meta" / "lib" / "containerlock",
    "policies": REPO / "policies",
    "sbom": REPO / "sbom",
    "vulns": REPO / "vulns",
    "changes": REPO / "changes",
    "audit": REPO / "audit",
}
# Which first-party packages each package may import (itself included).
ALLOWED = {
    "containerlock": {"containerlock"},
    "policies": {"policies", "containerlock"},
    "sbom": {"sbom", "containerlock"},
    "vulns": {"vulns", "sbom", "containerlock"},
    "changes": {"changes", "vulns", "sbom", "containerlock"},
    "audit": {"audit", "changes", "sbom", "policies", "vulns", "containerlock"},
}
# Beyond the standard library, the layer uses BitBake and host tools only.
LAYER_THIRD_PARTY = {"bb"}


def module_name(package: str, path: Path) -> str:
    parts = path.relative_to(PACKAGES[package]).with_suffix("").parts
    return ".".join((package, *[p for p in parts if p != "__init__"]))


def modules() -> dict[str, Path]:
    return {
        module_name(package, path): path
        for package, root in PACKAGES.items()
        for path in sorted(root.rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def imports(name: str, path: Path) -> Iterator[str]:
    """Every module `name` imports, anywhere in the file (functions too), made absolute."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                yield f"{prefix}.{alias.name}"  # a module of `prefix`, or a name in it (trimmed later)


def first_party_edges() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = set()
        for target in imports(name, path):
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
        edges[name] = targets
    return edges


def test_packages_import_in_one_direction_only() -> None:
    wrong = sorted(
        f"{source} imports {target}"
        for source, targets in first_party_edges().items()
        for target in targets
        if target.split(".")[0] not in ALLOWED[source.split(".")[0]]
    )
    assert wrong == []


def test_the_layer_imports_only_bitbake_and_the_standard_library() -> None:
    outside = set()
    for name, path in modules().items():
        if not name.startswith("containerlock"):
            continue
        for target in imports(name, path):
            top = target.split(".")[0]
            if top and top != "containerlock" and top not in sys.stdlib_module_names:
                outside.add(f"{name} imports {target}")
    assert {o for o in outside if o.split(" imports ")[1].split(".")[0] not in LAYER_THIRD_PARTY} == set()


def test_no_import_cycles() -> None:
    edges = first_party_edges()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def documented_bitbake_modules(text: str) -> set[str]:
    """The layer modules docs/architecture.md says use `bb` ("(standard library; `a`, `b` also use `bb`)")."""
    found = re.search(r"\(standard library;(?P<names>[^)]*?)\s+also\s+uses?\s+`bb`\)", text)
    assert found, "docs/architecture.md no longer says which layer modules use `bb`"
    return {f"containerlock.{name}" for name in re.findall(r"`([\w.]+)`", found["names"])}


def bitbake_modules() -> set[str]:
    """The layer modules that import `bb` anywhere (module level or inside functions)."""
    return {
        name
        for name, path in modules().items()
        if name.startswith("containerlock")
        and any(target == "bb" or target.startswith("bb.") for target in imports(name, path))
    }


def test_architecture_doc_names_the_modules_that_import_bitbake() -> None:
    """The "Shared code" list of `bb` users is the code's, so the CLI's share of the layer is stated right."""
    documented = documented_bitbake_modules((REPO / "docs" / "architecture.md").read_text())
    assert documented == bitbake_modules()


def test_the_library_stages_import_one_way() -> None:
    """The stages (the layer's subpackages) import each other without a cycle (docs/architecture.md)."""
    edges: dict[str, set[str]] = {}
    for source, targets in first_party_edges().items():
        parts = source.split(".")
        if parts[0] != "containerlock" or len(parts) < 3:
            continue  # `files`, `version` and the package itself are shared by every stage
        for target in targets:
            other = target.split(".")
            if other[0] == "containerlock" and len(other) >= 3 and other[1] != parts[1]:
                edges.setdefault(parts[1], set()).add(other[1])

    def reaches(start: str, goal: str, seen: frozenset[str]) -> bool:
        nexts = edges.get(start, set())
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in nexts)

    cycles = sorted(f"{a} ⇄ {b}" for a, ends in edges.items() for b in ends if reaches(b, a, frozenset()))
    assert cycles == []


@pytest.mark.parametrize(
    ("source", "line", "finding"),
    [
        (
            "containerlock.fetch.fetcher",
            "from sbom import generate",
            "containerlock.fetch.fetcher imports sbom.generate",
        ),
        ("sbom.document", "import audit.cli", "sbom.document imports audit.cli"),
        ("policies.evaluate", "from ..audit import scan", "policies.evaluate imports audit.scan"),
    ],
)
def test_the_check_sees_outward_edges(source: str, line: str, finding: str, tmp_path: Path) -> None:
    """The walker resolves absolute and relative imports (so the tests above can fail)."""
    path = tmp_path / "module.py"
    path.write_text(line + "\n")
    known = modules()
    found = set()
    for target in imports(source, path):
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target:
            found.add(f"{source} imports {target}")
    assert finding in found


def test_the_command_imports_heavy_packages_only_where_used() -> None:
    """`update` of 100 tags takes ~0.1 s; rich, the policies and package metadata cost as much to import."""
    import subprocess
    from importlib.metadata import version

    heavy = (
        "rich",
        "policies.evaluate",
        "containerlock.lock.policy",
        "importlib.metadata",
        "cyclonedx",
        "sigstore",
        "vulns",
        "changes.compare",
        "univers",
        "debian",
        "cvss",
        "packageurl",
        "sqlite3",
    )
    probe = f"import sys, audit.cli; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "[]"
    shown = subprocess.run(
        [sys.executable, "-m", "audit", "--version"], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert shown.stdout == f"container-lock, version {version('container-lock')}\n"
