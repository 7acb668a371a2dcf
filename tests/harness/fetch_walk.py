"""The fetcher's walk: which files of `containerlock` one real `download` passes through, in order.

Traces `DockerRegistryFetcher.download` (sys.setprofile) while an action (a real
`do_fetch`) runs, and gives the steps (file changes), the files, the returns to a
file already left and the entries per file, for three walks:
- every call: each time the innermost `containerlock` frame changes file;
- each call site once: what a reader follows, a call site the first time only
  (no loops over blobs), no dunder methods or properties (attribute access,
  `str()`), no callbacks from outside the package (skopeo's progress lines);
- helpers folded: the same, a call that never leaves its file counted as part
  of its caller (hashing, parsing, a path). The reader's walk of issue 19 item 5.
Used by `benchmarks/fetch_walk.py` (the figures) and `tests/test_fetch_walk.py` (the goal).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

PACKAGE = Path(__file__).resolve().parents[2] / "meta" / "lib" / "containerlock"


@dataclass(frozen=True)
class Walk:
    """The files of `containerlock` in the order control passed between them."""

    files: tuple[str, ...]

    @property
    def steps(self) -> int:
        return len(self.files)

    @property
    def returns(self) -> int:
        """Entries into a file the walk had already left."""
        return len(self.files) - len(set(self.files))

    @property
    def entries(self) -> Counter[str]:
        return Counter(self.files)

    def summary(self) -> str:
        most = ", ".join(f"{name} {n}" for name, n in self.entries.most_common())
        return (
            f"{self.steps} steps in {len(set(self.files))} files, {self.returns} returns to a file "
            f"already left; entries: {most}\n  walk: {' → '.join(self.files)}"
        )


def _own(frame: FrameType | None) -> str | None:
    """The file name if `frame` runs code of `containerlock`."""
    if frame is None:
        return None
    path = Path(frame.f_code.co_filename)
    return path.relative_to(PACKAGE).as_posix() if PACKAGE in path.parents else None


def _accessor(frame: FrameType) -> bool:
    """A dunder method or a property: attribute access and `str()`, not a step a reader follows."""
    name = frame.f_code.co_name
    if name.startswith("__") and name.endswith("__"):
        return True
    owner = frame.f_locals.get("self")
    return owner is not None and isinstance(getattr(type(owner), name, None), property)


@dataclass
class _Call:
    """A call the reader follows, with the calls it makes."""

    file: str
    calls: list[_Call] = field(default_factory=list)

    def stays_in_file(self) -> bool:
        """A helper: it never leaves its own file (hashing, parsing, a path, a read)."""
        return all(c.file == self.file and c.stays_in_file() for c in self.calls)

    def walk(self, fold_helpers: bool) -> list[str]:
        files = [self.file]
        for call in self.calls:
            if not (fold_helpers and call.stays_in_file()):
                files += [*call.walk(fold_helpers), self.file]
        return [f for i, f in enumerate(files) if i == 0 or files[i - 1] != f]


class _Tracer:
    """Profile events → every call's walk, and the tree of calls a reader follows."""

    def __init__(self) -> None:
        self.every: list[str] = []
        self.root: _Call | None = None
        self._stack: list[tuple[str | None, _Call | None, bool]] = []  # file, followed call, inside one
        self._sites: set[tuple[str, int, str, str]] = set()

    def _followed(self, frame: FrameType, name: str | None) -> bool:
        """A call from the package to the package, from followed code, its first time at this site."""
        caller = _own(frame.f_back)
        if name is None or caller is None or not self._stack[-1][2] or _accessor(frame):
            return False
        line = frame.f_back.f_lineno if frame.f_back else 0
        site = (caller, line, name, frame.f_code.co_name)
        new = site not in self._sites
        self._sites.add(site)
        return new

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            name = _own(frame)
            if not self._stack:  # `download` itself
                self.root = _Call(str(name))
                self._stack.append((name, self.root, True))
            elif self._followed(frame, name):
                call = _Call(str(name))
                next(c for _, c, _ in reversed(self._stack) if c is not None).calls.append(call)
                self._stack.append((name, call, True))
            else:  # a repeated site, an accessor: not followed; the standard library, bb: passed through
                self._stack.append((name, None, name is None and self._stack[-1][2]))
        elif event == "return" and self._stack:
            self._stack.pop()
        else:
            return
        now = next((n for n, _, _ in reversed(self._stack) if n is not None), None)
        if now is not None and self.every[-1:] != [now]:
            self.every.append(now)


@contextmanager
def traced_download() -> Iterator[list[_Tracer]]:
    """While active, each `DockerRegistryFetcher.download` call appends its tracer to the list."""
    from containerlock.fetch.fetcher import DockerRegistryFetcher

    original = DockerRegistryFetcher.download
    tracers: list[_Tracer] = []

    def download(self: Any, ud: Any, d: Any) -> None:
        tracer = _Tracer()
        tracers.append(tracer)
        sys.setprofile(tracer)
        try:
            original(self, ud, d)
        finally:
            sys.setprofile(None)

    DockerRegistryFetcher.download = download  # type: ignore[method-assign]
    try:
        yield tracers
    finally:
        DockerRegistryFetcher.download = original  # type: ignore[method-assign]


def walks_of(action: Callable[[], None]) -> dict[str, Walk]:
    """The walks of the one `download` that `action` runs."""
    with traced_download() as tracers:
        action()
    (tracer,) = tracers
    assert tracer.root is not None
    return {
        "every call": Walk(tuple(tracer.every)),
        "each call site once": Walk(tuple(tracer.root.walk(fold_helpers=False))),
        "each call site once, helpers folded": Walk(tuple(tracer.root.walk(fold_helpers=True))),
    }
