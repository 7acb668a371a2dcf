"""The layer modules a task runs: the import closure of its code, for the task's `[file-checksums]`.

A task that calls this library must rerun when the library's code changes (a layer upgrade
whose `layout.py` writes other bytes must not keep the old payload, nor sstate serve it). The
list is derived, not written by hand: every `import containerlock.x`, `from containerlock import
x`, `from containerlock.x import y` and relative `from . import x` / `from .x import y` of the
entry modules, transitively, at module level and inside functions. Imports by computed names
(`importlib.import_module`) are not seen. Standard library only.

BitBake evaluates `[file-checksums]` for every task of every recipe it parses, so each file's
imports are parsed once per process and kept while its size and mtime stay the same.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from pathlib import Path


def _absolute(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of `from <level dots><target> import …` written in `module`."""
    if not level:
        return target or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([target] if target else [])])


# `import a.b [as c], d` and `from .x import (y, z)` at the start of a line (a docstring line
# that reads like an import only adds a file: the list errs on the side of rerunning).
_IMPORT = re.compile(
    r"^[ \t]*(?:from[ \t]+(?P<dots>\.*)(?P<base>[\w.]*)[ \t]+import[ \t]+"
    r"(?P<names>\([^)]*\)|[^\n#;]*(?:\\\n[^\n#;]*)*)|import[ \t]+(?P<modules>[^\n#;]+))",
    re.MULTILINE,
)


def _names(text: str) -> list[str]:
    """`a as b, c` (parentheses, continuation lines allowed) → ["a", "c"]."""
    cleaned = text.strip("() \t\n").replace("\\\n", " ").replace("\n", " ")
    return [part.split()[0] for part in cleaned.split(",") if part.strip()]


def imported_names(source: str, module: str = "", is_package: bool = False) -> set[str]:
    """Every name `source` imports, made absolute: modules, and `module.name` for each `from` name.

    A `from a import b` gives both `a` and `a.b` (b may be a submodule or a name in `a`; the
    caller keeps what is a module). `module` is the importing module's name, for relative imports.
    A line scan, not a parse: about ten times faster than `ast`, which counts because BitBake
    evaluates `[file-checksums]` in every parser process.
    """
    names: set[str] = set()
    for match in _IMPORT.finditer(source):
        if match["modules"] is not None:
            names.update(_names(match["modules"]))
            continue
        base = _absolute(module, is_package, len(match["dots"]), match["base"] or None)
        if base:
            names.add(base)
            names.update(f"{base}.{name}" for name in _names(match["names"]) if name != "*")
    return names


def module_file(lib: Path, name: str) -> Path | None:
    """The file of module `name` under `lib` (`a/b.py` or `a/b/__init__.py`), or None."""
    path = lib.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_name(path.name + ".py")):
        if candidate.is_file():
            return candidate
    return None


def _files_run(lib: Path, name: str) -> list[Path]:
    """Files importing `name` executes: each enclosing package's `__init__.py`, then the module."""
    parts = name.split(".")
    found = []
    for end in range(1, len(parts) + 1):
        path = module_file(lib, ".".join(parts[:end]))
        if path is None:
            break  # a name imported from the module above, or not the layer's
        found.append(path)
    return found


@functools.lru_cache(maxsize=512)
def _imports_of_file(path: str, module: str, mtime_ns: int, size: int) -> frozenset[str]:
    """`imported_names` of one file; cached per process while the file's mtime and size hold."""
    source = Path(path).read_text(encoding="utf-8")
    return frozenset(imported_names(source, module, os.path.basename(path) == "__init__.py"))


def _imports(lib: Path, path: Path) -> frozenset[str]:
    stat = path.stat()
    parts = path.relative_to(lib).with_suffix("").parts
    module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    return _imports_of_file(str(path), module, stat.st_mtime_ns, stat.st_size)


def _walk(lib: Path, entries: Iterable[str]) -> list[Path]:
    """Files of the modules under `lib` that importing `entries` runs, transitively; sorted."""
    tops = {p.name.removesuffix(".py") for p in lib.iterdir()}
    seen: set[Path] = set()
    pending = [name for name in entries if name.split(".")[0] in tops]
    while pending:
        for path in _files_run(lib, pending.pop()):
            if path not in seen:
                seen.add(path)
                pending.extend(n for n in _imports(lib, path) if n.split(".")[0] in tops)
    return sorted(seen)


def _stamp(paths: Iterable[Path]) -> tuple[tuple[int, int], ...]:
    stats = [p.stat() for p in paths]
    return tuple((s.st_mtime_ns, s.st_size) for s in stats)


# (lib, entries) → (stamp of the files and their directories, the files).
_closures: dict[tuple[str, tuple[str, ...]], tuple[tuple[tuple[int, int], ...], list[Path]]] = {}


def closure(lib: Path | str, entries: Iterable[str]) -> list[Path]:
    """Files of the modules under `lib` that importing `entries` runs, transitively; sorted.

    Names that are not modules under `lib` (the standard library, `bb`, a class or function
    imported from a module) are left out. Kept per process while none of the files, nor the
    directories holding them (a module added or removed), changes.
    """
    lib = Path(lib)
    key = (str(lib), tuple(sorted(set(entries))))
    cached = _closures.get(key)
    if cached is not None:
        stamp, files = cached
        try:
            if _stamp([*files, *sorted({f.parent for f in files})]) == stamp:
                return list(files)
        except OSError:
            pass
    files = _walk(lib, key[1])
    _closures[key] = (_stamp([*files, *sorted({f.parent for f in files})]), files)
    return list(files)


@functools.lru_cache(maxsize=256)
def code_imports(source: str) -> frozenset[str]:
    """What a task's body (BitBake stores a python function's body only) imports."""
    return frozenset(imported_names(source))


def file_checksums(lib: Path | str, code: str = "", modules: Iterable[str] = ()) -> str:
    """`[file-checksums]` entries (`path:True`) for the modules `code` and `modules` run."""
    entries = {*code_imports(code), *modules}
    return " ".join(f"{path}:True" for path in closure(lib, sorted(entries)))
