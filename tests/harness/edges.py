"""Edge cases of every command-line slot: the bad values a slot's role calls for, made in a case
directory, and what a run of the command with one of them must (not) have done.

A slot is one click parameter of one command (`sbom:output`); its role (an input file, an input
directory, recipes, an output file, a number, a string) decides which bad kinds apply. The test
module holds the table slot → role and the valid base invocation of each command; this module
makes the bad values and judges the runs. Nothing here is random: every case is replayable by
its name (`command slot kind user`).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click

from tests.harness.forkserver import Result

# The valid documents of the world, by kind (file names from tests.harness.edge_world).
DOCUMENTS = {
    "lock": "lock.json",
    "sbom": "old.cdx.json",
    "manifest": "old.json",
    "spdx": "spdx.json",
    "vex": "vex.json",
    "policy": "policy.toml",
    "trusted-root": "root.json",
    "index": "osv.db",
    "osv-zip": "osv.zip",
}
# What a slot gets by mistake: another tool's documents, an empty JSON object, a JSON array.
WRONG_DOCUMENTS = ("lock", "sbom", "manifest", "spdx", "{}", "[]")
INLINE = {"{}": b"{}\n", "[]": b"[1, 2]\n"}
GARBAGE = b"\x00\x01 this is { not [ what = = was asked for\n\xff\n"
BINARY = bytes(range(256)) * 8
ODD_NUMBERS = {
    "zero": "0",
    "negative": "-1",
    "nan": "nan",
    "inf": "inf",
    "1e309": "1e309",
    "huge": "9" * 30,
}
ODD_TEXT = {"empty-text": "", "garbage-text": "::NOT//A VALUE\t"}
IMPOSSIBLE = "/proc/edges/x.json"  # cannot be created, not even by root
UNPRIVILEGED_ONLY = {"unreadable", "inner:unreadable", "unreadable-dir", "read-only-dir"}  # root reads anyway
WROTE_ITS_OUTPUT = {0, 1, 3}  # done (1: the check failed; 3: the rest was still done): outputs are whole


@dataclass(frozen=True)
class Role:
    """What a slot takes: `shape` (file, path, dir, recipes, output, output-dir, number, text) and
    the document kinds that are valid there (the others are tried as wrong kinds)."""

    shape: str
    accepts: frozenset[str] = frozenset()

    def kinds(self) -> list[str]:
        """The bad kinds this role is tried with."""
        wrong = [f"wrong:{d}" for d in WRONG_DOCUMENTS if d not in self.accepts]
        content = ["empty", "garbage", "truncated", "binary", "unreadable", *wrong]
        if self.shape == "file":
            return ["missing", "directory", *content]
        if self.shape == "path":  # a file or a directory of them
            return ["missing", "empty-dir", "unreadable-dir", *content]
        if self.shape == "dir":  # a directory of documents
            return ["missing", "not-dir", "empty-dir", "unreadable-dir", *(f"inner:{k}" for k in content)]
        if self.shape == "recipes":
            return ["missing", "empty", "garbage", "binary", "unreadable", "unreadable-dir"]
        if self.shape == "output":
            return ["directory", "missing-parent", "read-only-dir", "impossible"]
        if self.shape == "output-dir":
            return ["not-dir", "read-only-dir", "impossible"]
        if self.shape == "number":
            return list(ODD_NUMBERS)
        if self.shape == "text":
            return list(ODD_TEXT)
        raise ValueError(f"unknown role shape {self.shape!r}")


def role(shape: str, *accepts: str) -> Role:
    return Role(shape, frozenset(accepts))


@dataclass(frozen=True)
class Base:
    """A valid invocation: a value per slot (param name → value or values), flags, its status,
    and the files it writes (relative to the case directory)."""

    values: Mapping[str, str | Sequence[str]]
    flags: tuple[str, ...] = ()
    status: int = 0
    outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Slot:
    """One parameter of one command."""

    command: tuple[str, ...]
    param: click.Parameter

    @property
    def key(self) -> str:
        return f"{' '.join(self.command)}:{self.param.name}"

    @property
    def names(self) -> list[str]:
        """What a message may call it: its options, or the argument's metavar."""
        if isinstance(self.param, click.Option):
            return list(self.param.opts) + list(self.param.secondary_opts)
        return [self.param.make_metavar(click.Context(click.Command("x"))).rstrip(".")]


def commands(
    group: click.Group, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every leaf command of the click tree, with its path."""
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def needs_role(param: click.Parameter) -> bool:
    """A path, a file, a number or a plain string: a slot that can be handed a bad value."""
    kind = param.type
    if isinstance(param, click.Option) and (param.is_flag or param.is_bool_flag):
        return False
    if isinstance(kind, click.Choice):
        return False
    takes = (click.Path, click.File, click.types.StringParamType, click.types.IntParamType)
    return isinstance(kind, (*takes, click.types.FloatParamType))


def slots(group: click.Group) -> list[Slot]:
    return [Slot(path, p) for path, command in commands(group) for p in command.params if needs_role(p)]


def argv(
    command: tuple[str, ...], click_command: click.Command, base: Base, bad: tuple[str, str] | None
) -> list[str]:
    """The command line: options first, then `--` and the arguments; `bad` replaces one value."""
    values = dict(base.values)
    if bad is not None:
        values[bad[0]] = bad[1]
    options: list[str] = []
    arguments: list[str] = []
    for param in click_command.params:
        if param.name not in values:
            continue
        given = values[param.name]
        items = [given] if isinstance(given, str) else list(given)
        if isinstance(param, click.Option):
            for item in items:
                options += [param.opts[0], item]
        else:
            arguments += items
    return [*command, *options, *base.flags, "--", *arguments]


@dataclass(frozen=True)
class Case:
    """One bad value in one slot of one command, run by one user."""

    slot: Slot
    role: Role
    kind: str
    user: str
    base: Base
    click_command: click.Command

    @property
    def name(self) -> str:
        return f"{' '.join(self.slot.command)} {self.slot.key.split(':')[1]} {self.kind} {self.user}"


def first_value(base: Base, param: str) -> str:
    given = base.values[param]
    return given if isinstance(given, str) else next(iter(given))


def _write(path: Path, data: bytes, mode: int | None = None) -> None:
    path.write_bytes(data)
    if mode is not None:
        path.chmod(mode)


def _content(kind: str, valid: Path, world: Path) -> bytes | None:
    """The bytes of a content kind (None: not a content kind)."""
    if kind == "empty":
        return b""
    if kind == "garbage":
        return GARBAGE
    if kind == "binary":
        return BINARY
    if kind == "truncated":
        data = (
            valid.read_bytes()
            if valid.is_file()
            else next(p for p in sorted(valid.rglob("*")) if p.is_file()).read_bytes()
        )
        return data[: len(data) // 2]
    if kind.startswith("wrong:"):
        doc = kind.removeprefix("wrong:")
        return INLINE[doc] if doc in INLINE else (world / DOCUMENTS[doc]).read_bytes()
    return None


def materialize(case: Case, case_dir: Path, world: Path) -> tuple[str, list[str]]:
    """Make the bad value in `case_dir`: the argument to give, and the names a message may use."""
    kind = case.kind
    shape = case.role.shape
    if shape == "number":
        return ODD_NUMBERS[kind], []  # "0" is in any message: the option must be named
    if shape == "text":
        parts = ODD_TEXT[kind].replace("/", " ").split()  # a message may quote the part it refuses
        return ODD_TEXT[kind], [p for p in parts if len(p) >= 4]
    valid = case_dir / first_value(case.base, case.slot.param.name)
    suffix = valid.suffix or ".txt"
    if kind == "missing":
        return f"missing{suffix}", [f"missing{suffix}"]
    if kind in ("directory", "empty-dir"):
        (case_dir / "adir").mkdir()
        return "adir", ["adir"]
    if kind == "not-dir":
        _write(case_dir / "afile", b"a file\n")
        return "afile", ["afile"]
    if kind == "unreadable-dir":
        locked = case_dir / "locked"
        locked.mkdir()
        if valid.is_file():
            shutil.copyfile(valid, locked / valid.name)
        locked.chmod(0)
        return "locked", ["locked"]
    if kind == "unreadable":
        unreadable = case_dir / f"unreadable{suffix}"
        if valid.is_file():
            shutil.copyfile(valid, unreadable)
        else:
            unreadable.write_bytes(b"{}\n")
        unreadable.chmod(0)
        return unreadable.name, [unreadable.name]
    if kind == "missing-parent":
        return f"nodir/out{suffix}", ["nodir"]
    if kind == "read-only-dir":
        (case_dir / "ro").mkdir(mode=0o555)
        (case_dir / "ro").chmod(0o555)
        if shape == "output-dir":
            return "ro", ["ro"]
        return f"ro/out{suffix}", [f"ro/out{suffix}", "ro"]
    if kind == "impossible":
        return IMPOSSIBLE, ["/proc/edges"]
    if kind.startswith("inner:"):  # a copy of the valid directory with its first document spoiled
        spoiled = case_dir / "spoiled"
        shutil.copytree(valid, spoiled)
        inner = next(p for p in sorted(spoiled.rglob("*")) if p.is_file())
        inner_kind = kind.removeprefix("inner:")
        if inner_kind == "unreadable":
            inner.chmod(0)
        else:
            data = _content(inner_kind, valid, world)
            assert data is not None, kind
            inner.write_bytes(data)
        return "spoiled", ["spoiled", inner.name]
    data = _content(kind, valid, world)
    if data is None:
        raise ValueError(f"unknown bad kind {kind!r}")
    name = f"bad-{kind.replace(':', '-').replace('{}', 'object').replace('[]', 'array')}{suffix}"
    _write(case_dir / name, data)
    return name, [name]


def base_of(slot: Slot, bases: Mapping[tuple[str, ...], Sequence[Base]]) -> Base | None:
    """The first base invocation of the slot's command that gives the slot a value."""
    return next((b for b in bases.get(slot.command, ()) if slot.param.name in b.values), None)


def cases(
    group: click.Group,
    roles: Mapping[str, Role],
    bases: Mapping[tuple[str, ...], Sequence[Base]],
    users: Sequence[str],
) -> list[Case]:
    """Every slot × bad kind × user, each on the first base that gives the slot a value."""
    found: list[Case] = []
    leaf = dict(commands(group))
    for slot in slots(group):
        base = base_of(slot, bases)
        assert base is not None, f"no base invocation of {' '.join(slot.command)} gives {slot.key} a value"
        role_ = roles[slot.key]
        for kind in role_.kinds():
            for user in users:
                if kind in UNPRIVILEGED_ONLY and user == "root":  # root reads and writes anyway
                    continue
                found.append(Case(slot, role_, kind, user, base, leaf[slot.command]))
    return found


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` → sha256 of a file's bytes, or 'dir' (as root: reads everything)."""
    seen: dict[str, str] = {}
    for parent, dirs, files in os.walk(root):
        for name in dirs:
            seen[os.path.relpath(os.path.join(parent, name), root)] = "dir"
        for name in files:
            path = os.path.join(parent, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):
                with open(path, "rb") as handle:
                    seen[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
            else:
                seen[os.path.relpath(path, root)] = "special"
    return seen


def give_to(user: str, root: Path) -> None:
    """chown -R `root` to `user` (its modes kept)."""
    if user == "root":
        return
    entry = pwd.getpwnam(user)
    for parent, _, files in os.walk(root):  # as root: enters mode-0 directories too
        os.chown(parent, entry.pw_uid, entry.pw_gid)
        for name in files:
            os.chown(os.path.join(parent, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def mentions(text: str, name: str) -> bool:
    """Does `text` name `name`, as a word of its own (`-l` is not in `container-lock`)?"""
    return bool(name) and re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


@dataclass
class Verdict:
    """What was wrong with one run (empty: nothing)."""

    case: Case
    result: Result
    problems: list[str] = field(default_factory=list)

    @property
    def first_line(self) -> str:
        """The message's first line (stderr; stdout when stderr said nothing)."""
        for stream, prefix in ((self.result.stderr, ""), (self.result.stdout, "(stdout) ")):
            for line in stream.splitlines():
                if line.strip() and not line.startswith(("Usage:", "Try ")):
                    return prefix + line.strip()[:160]
        return "(no message)"


def judge(
    case: Case,
    result: Result,
    before: Mapping[str, str],
    after: Mapping[str, str],
    names: Sequence[str],
    allowed: frozenset[int],
) -> Verdict:
    """The rules every bad input obeys: its status, no traceback, a message naming it, nothing
    changed, nothing half-written."""
    verdict = Verdict(case, result)
    problems = verdict.problems
    output = result.stdout + result.stderr
    if result.status not in allowed:
        problems.append(f"exit {result.status}, expected {'/'.join(map(str, sorted(allowed)))}")
    if "Traceback" in output:
        problems.append("a traceback")
    if result.status == 2 or result.status not in allowed | {0}:  # an error names what was bad
        said = "\n".join(
            line for line in result.stderr.splitlines() if not line.startswith(("Usage:", "Try '"))
        )
        named = list(names)
        if case.role.shape in ("number", "text"):  # the option or the argument
            named += case.slot.names
        if not any(mentions(said, n) for n in named):
            problems.append(f"the message names none of {named}")
    changed = [p for p, digest in before.items() if after.get(p) != digest and p not in case.base.outputs]
    if changed:
        problems.append(f"inputs changed or removed: {sorted(changed)[:4]}")
    created = sorted(set(after) - set(before))
    if result.status in WROTE_ITS_OUTPUT:
        created = [p for p in created if p not in case.base.outputs]
    if created:
        problems.append(f"left behind: {created[:4]}")
    return verdict
