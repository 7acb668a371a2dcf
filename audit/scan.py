"""Find the docker:// references in layers and recipes, with file and line, without BitBake."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from containerlock.oci.reference import ImageReference, InvalidReference, parse_url

RECIPE_SUFFIXES = (".bb", ".bbappend", ".inc")
CONF_SUFFIXES = (".conf",)
_URL = re.compile(r"docker://[^\s\"'\\]+")
_ASSIGN = re.compile(r'^\s*(?:export\s+)?([A-Za-z0-9_][A-Za-z0-9_\-]*)\s*(\?\?=|\?=|:=|=)\s*"([^"]*)"\s*$')
_VARREF = re.compile(r"\$\{([A-Za-z0-9_][A-Za-z0-9_\-]*)\}")


class ScanError(ValueError):
    """A path given to the scanner does not exist or is not readable."""


@dataclass(frozen=True)
class Found:
    """A docker:// URL in a file. `ref` is None when it could not be resolved statically."""

    path: Path
    line: int
    text: str
    url: str | None
    ref: ImageReference | None
    problem: str | None

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def _unreadable(error: OSError) -> None:
    """A directory under a scanned path that cannot be listed: its recipes would be missed."""
    raise ScanError(
        f"{error.filename}: cannot be read ({error.strerror or error}); its recipes would be missed: "
        "make it readable, or give the directories to scan"
    )


def _files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_file():
            if path.suffix not in RECIPE_SUFFIXES + CONF_SUFFIXES:
                raise ScanError(
                    f"{path}: not a recipe ({', '.join(RECIPE_SUFFIXES)}) nor a .conf file; "
                    "give layers, directories or recipe files"
                )
            files.append(path)
        elif path.is_dir():
            for top, _dirs, names in os.walk(path, onerror=_unreadable, followlinks=True):
                files += [
                    Path(top, n)
                    for n in names
                    if Path(n).suffix in RECIPE_SUFFIXES + CONF_SUFFIXES and Path(top, n).is_file()
                ]
        else:
            raise ScanError(f"{path}: no such file or directory")
    return sorted(set(files))


def _read(path: Path) -> str:
    """A recipe's text; ScanError naming it if it cannot be read."""
    try:
        return path.read_text(errors="replace")
    except OSError as error:
        raise ScanError(f"{path}: cannot be read ({error.strerror or error}); make it readable") from None


def collect_defaults(files: Iterable[Path]) -> dict[str, str]:
    """Simple `VAR = "value"` / `?=` / `??=` assignments (a strong `=` wins over defaults)."""
    strong: dict[str, str] = {}
    weak: dict[str, str] = {}
    for path in files:
        for line in _read(path).splitlines():
            m = _ASSIGN.match(line)
            if not m:
                continue
            name, op, value = m.groups()
            if op in ("=", ":="):
                strong[name] = value
            else:
                weak.setdefault(name, value)
    return {**weak, **strong}


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Expand `${VAR}` from `variables` (nested, bounded); unknown references stay."""
    for _ in range(10):
        new = _VARREF.sub(lambda m: variables.get(m.group(1), m.group(0)), text)
        if new == text:
            break
        text = new
    return text


def scan(paths: Iterable[Path], defines: Mapping[str, str] | None = None) -> list[Found]:
    """Every docker:// URL in the recipes (.bb, .bbappend, .inc) under `paths`."""
    files = _files(paths)
    variables = {**collect_defaults(files), **(defines or {})}
    found = []
    for path in files:
        if path.suffix not in RECIPE_SUFFIXES:
            continue
        for lineno, line in enumerate(_read(path).splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            for m in _URL.finditer(line):
                text = m.group(0)
                url = expand(text, variables)
                if "${" in url:
                    missing = sorted(set(_VARREF.findall(url)))
                    found.append(
                        Found(
                            path,
                            lineno,
                            text,
                            None,
                            None,
                            f"cannot resolve ${{{'}, ${'.join(missing)}}} statically "
                            "(pass -D NAME=VALUE; a build still records it via MissingChecksumEvent)",
                        )
                    )
                    continue
                try:
                    found.append(Found(path, lineno, text, url, parse_url(url), None))
                except InvalidReference as err:
                    found.append(Found(path, lineno, text, url, None, str(err)))
    return found
