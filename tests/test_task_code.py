"""A layer upgrade reruns exactly the tasks whose code changed: `[file-checksums]` from the import closure.

The layer is copied, each of its modules is changed in turn, and BitBake's signature generator
(in-process, tests/harness/bitbake.py) signs a loader recipe's tasks. A task's signature must
change when a module it runs changes (or one a task before it runs: its output changes), and
must stay when any other module changes; the task's own file checksums change only for the
modules it runs itself. "Runs" is judged by the standard library's
`modulefinder`, which reads the compiled code of the task's body and of the modules, not by
the layer's own import walker (containerlock/build_hooks/task_code.py).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from modulefinder import ModuleFinder
from pathlib import Path

import bb.parse
import pytest

from containerlock.build_hooks import task_code
from tests.harness.bitbake import PROJECT_LAYER, TEST_CORE_LAYER, BuildDir

# The tasks that run the layer's code, and what each calls besides the imports in its body:
# BitBake's do_fetch/do_unpack call the registered docker:// fetcher.
CODE_TASKS = {
    "do_fetch": ["containerlock.fetch.fetcher"],
    "do_unpack": ["containerlock.fetch.fetcher"],
    "do_container_inventory": [],
    "do_install_fetched_containers": [],
}
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def layer_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[BuildDir, Path]]:
    """A build with a copy of the layer, whose modules the test may change."""
    layer = tmp_path / "meta"
    shutil.copytree(PROJECT_LAYER, layer, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    # The global class puts the copy's lib on sys.path; the imported library stays this checkout's.
    monkeypatch.setattr(sys, "path", list(sys.path))
    build = BuildDir(tmp_path / "build", layers=[TEST_CORE_LAYER, layer])
    build.set(DL_DIR=str(tmp_path / "downloads"), TMPDIR=str(tmp_path / "build" / "tmp"))
    yield build, layer
    build.events.close()


def modules_run(lib: Path, script: Path) -> set[Path]:
    """Files of the layer's modules that running `script` imports (modulefinder, layer path only)."""
    finder = ModuleFinder(path=[str(lib)])
    finder.run_script(str(script))
    return {Path(m.__file__) for name, m in finder.modules.items() if name != "__main__" and m.__file__}


def task_modules(d, lib: Path, tmp_path: Path) -> dict[str, set[Path]]:
    """Task → files of the layer's modules the task's own code runs."""
    found = {}
    for task, extra in CODE_TASKS.items():
        script = tmp_path / f"{task}.py"
        body = d.getVar(task, False) if d.getVarFlag(task, "python") else ""
        calls = "".join(f"    import {module}\n" for module in extra)
        script.write_text(f"def task(d):\n{body or ''}\n{calls}    pass\n")
        found[task] = modules_run(lib, script)
    return found


def upstream(d, task: str) -> set[str]:
    """`task` and every task it runs after."""
    seen, pending = set(), [task]
    while pending:
        current = pending.pop()
        if current not in seen:
            seen.add(current)
            pending.extend(d.getVarFlag(current, "deps") or [])
    return seen


def own_checksums(recipe: Path) -> dict[str, list[tuple[str, str]]]:
    """Task → its own (file, checksum) pairs, from the signature generator's last signing."""
    values = bb.parse.siggen.file_checksum_values
    return {task: sorted(values.get(f"{recipe}:{task}", [])) for task in CODE_TASKS}


def test_each_module_a_task_runs_and_only_those_change_its_signature(layer_build, tmp_path: Path) -> None:
    build, layer = layer_build
    lib = layer / "lib"
    recipe = build.write_recipe(
        "upgrade_1.0",
        f'inherit podman-loader\nSRC_URI += "docker://registry.invalid:5000/a/b;tag=1;digest={DIGEST}"\n',
    )
    d = build.parse(recipe)
    own = task_modules(d, lib, tmp_path)
    expected = {task: set().union(*(own.get(t, set()) for t in upstream(d, task))) for task in CODE_TASKS}
    # The modules the issue names for packaging are among them (so the oracle is not empty).
    assert {p.stem for p in own["do_install_fetched_containers"]} >= {
        "archive", "layout", "reference", "image", "store", "registry_errors", "files", "record", "skopeo"
    }  # fmt: skip
    assert {p.stem for p in own["do_container_inventory"]} >= {
        "inventory",
        "layer_stack",
        "package_db",
        "layout",
    }
    assert {p.stem for p in own["do_fetch"]} >= {"fetcher", "layout", "pull", "skopeo", "store"}

    before = build.taskhashes(recipe)
    before_own = own_checksums(recipe)
    wrong: list[str] = []
    modules = sorted(p for p in (lib / "containerlock").rglob("*.py") if "__pycache__" not in p.parts)
    assert {p.stem for p in modules} - set().union(*({p.stem for p in e} for e in expected.values()))
    for module in modules:
        original = module.read_bytes()
        module.write_bytes(original + b"\n# a layer upgrade\n")
        try:
            after = build.taskhashes(recipe)
            after_own = own_checksums(recipe)
        finally:
            module.write_bytes(original)
        rel = module.relative_to(lib)
        for task, runs in expected.items():
            changed = after[task] != before[task]
            if changed != (module in runs):
                wrong.append(f"{rel} {'changed' if changed else 'did not change'} {task}'s signature")
            changed = after_own[task] != before_own[task]
            if changed != (module in own[task]):
                wrong.append(f"{rel} {'changed' if changed else 'did not change'} {task}'s file checksums")
    assert wrong == []
    assert build.taskhashes(recipe) == before  # the same bytes again: the same signatures


def test_a_module_the_task_starts_importing_joins_its_signature(layer_build) -> None:
    """The list follows the code of the layer in use, not the one the process started with."""
    build, layer = layer_build
    package = layer / "lib" / "containerlock"
    recipe = build.write_recipe(
        "grow_1.0",
        f'inherit docker-loader\nSRC_URI += "docker://registry.invalid:5000/a/b;tag=1;digest={DIGEST}"\n',
    )
    task = "do_install_fetched_containers"
    before = build.taskhashes(recipe)[task]
    version = package / "version.py"
    version.write_text(version.read_text() + "\n# changed\n")
    assert build.taskhashes(recipe)[task] == before
    layout = package / "oci" / "layout.py"
    layout.write_text(layout.read_text() + "\n\ndef _later():\n    from .. import version  # noqa: F401\n")
    grown = build.taskhashes(recipe)[task]
    assert grown != before
    version.write_text(version.read_text() + "\n# changed again\n")
    assert build.taskhashes(recipe)[task] != grown
    assert "lib/containerlock/version.py" in build.parse(recipe).getVarFlag(task, "file-checksums")


def test_recipes_without_docker_urls_keep_their_fetch_signatures(layer_build) -> None:
    build, layer = layer_build
    recipe = build.write_recipe("plain_1.0", 'SRC_URI = ""\n')
    d = build.parse(recipe)
    assert "containerlock" not in (d.getVarFlag("do_fetch", "file-checksums") or "")
    assert "containerlock" not in (d.getVarFlag("do_unpack", "file-checksums") or "")
    before = build.taskhashes(recipe)
    fetcher = layer / "lib" / "containerlock" / "fetch" / "fetcher.py"
    fetcher.write_text(fetcher.read_text() + "\n# changed\n")
    assert build.taskhashes(recipe) == before


def test_the_walker_follows_every_import_form(tmp_path: Path) -> None:
    """Absolute, `from`, relative (one and two dots), aliased, inside functions; not names or others."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "entry.py": "import os\nimport pkg.a as alias\nfrom pkg import b\nfrom pkg.c import Thing\n",
        "a.py": "def later():\n    from .sub import inner\n",
        "b.py": "",
        "c.py": "class Thing: ...\n",
        "sub/__init__.py": "",
        "sub/inner.py": "from .. import d\nfrom ..e import f\n",
        "d.py": "",
        "e.py": "def f(): ...\n",
        "unused.py": "",
    }
    for name, text in files.items():
        (package / name).write_text(text)
    found = task_code.closure(tmp_path, ["pkg.entry"])
    assert {p.relative_to(package).as_posix() for p in found} == set(files) - {"unused.py"}
    assert task_code.code_imports("    import pkg.entry\n    from pkg import b\n") >= {"pkg.entry", "pkg.b"}
