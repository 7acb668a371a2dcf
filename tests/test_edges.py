"""One test that walks every edge: every command × input slot × bad kind, as root and as the
unprivileged build user. Each bad value exits with the documented status (2: bad input), never 4,
never a traceback; the message names the path (or the option); every input is byte-identical
afterwards and nothing is left half-written.

The slots come from the click command tree, so a new command or option joins by construction:
`test_every_slot_has_a_role` fails until ROLES says what it takes (and BASES gives it a value).
The runs go through a fork server (tests.harness.forkserver): one interpreter imports the CLI once
and forks per case. Nothing is random; a case is replayed by its name:
EDGES_ONLY="sbom output impossible clbuild" pytest tests/test_edges.py -k every_edge
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from audit.cli import cli
from tests.harness import edge_world
from tests.harness.edges import (
    Base,
    Case,
    Role,
    Verdict,
    argv,
    base_of,
    cases,
    commands,
    give_to,
    judge,
    materialize,
    mentions,
    role,
    slots,
    snapshot,
)
from tests.harness.forkserver import ForkServer, Result

USERS = ("root", "clbuild")
BAD_INPUT = frozenset({2})
WORKERS = 2  # fork servers: the fast tier shares 2 cores

# A CycloneDX BOM is a CycloneDX VEX document: one without vulnerabilities triages nothing (and
# `audit -o` writes a BOM whose analyses are the team's triage).
VEX = ("vex", "sbom")
# Every slot (command:param) and what it takes. `file`/`path` roles list the document kinds that
# are valid there; the other kinds of tests.harness.edges.WRONG_DOCUMENTS are tried as wrong.
ROLES: dict[str, Role] = {
    "audit:inputs": role("path", "sbom", "manifest"),
    "audit:db_path": role("file", "index"),
    "audit:vex_paths": role("file", *VEX),
    "audit:policy_spec": role("file", "policy"),
    "audit:max_db_age": role("number"),
    "audit:output": role("output"),
    "check:paths": role("recipes"),
    "check:lockfile": role("file", "lock"),
    "check:policy_spec": role("file", "policy"),
    "check:defines": role("text"),
    "diff:old": role("path", "sbom", "manifest", "lock"),
    "diff:new": role("path", "sbom", "manifest", "lock"),
    "diff:db_path": role("file", "index"),
    "diff:vex_paths": role("file", *VEX),
    "inventory:source": role("file", "manifest"),
    "inventory:platform_text": role("text"),
    "inventory:timeout": role("number"),
    "sbom:manifests": role("path", "manifest"),
    "sbom:deploy_dir": role("dir", "manifest"),
    "sbom:lockfile": role("file", "lock"),
    "sbom:merge_into": role("file", "sbom"),
    "sbom:output": role("output"),
    "sbom:source_date_epoch": role("number"),
    "sbom:db_path": role("file", "index"),
    "sbom:vex_paths": role("file", *VEX),
    "update:paths": role("recipes"),
    "update:lockfile": role("file", "lock"),
    "update:images": role("text"),
    "update:dl_dir": role("output-dir"),
    "update:jobs": role("number"),
    "update:timeout": role("number"),
    "update:defines": role("text"),
    "verify:paths": role("recipes"),
    "verify:lockfile": role("file", "lock"),
    "verify:policy_spec": role("file", "policy"),
    "verify:trusted_root": role("file", "trusted-root"),
    "verify:timeout": role("number"),
    "verify:defines": role("text"),
    "vulndb import:sources": role("path", "osv-zip"),
    "vulndb import:db_path": role("output"),
    "vulndb show:db_path": role("file", "index"),
}

# Where a bad kind is not bad input, or not only: (slot, kind) → (statuses, why).
ALLOWED: dict[tuple[str, str], tuple[frozenset[int], str]] = {
    ("check:lockfile", "missing"): (
        frozenset({0, 1}),
        "a first run: check judges the recipes without a lock and says so (docs: check)",
    ),
    ("update:lockfile", "missing"): (
        frozenset({3}),
        "update makes the lockfile; with the registry down nothing is resolved, nothing written",
    ),
    ("sbom:source_date_epoch", "zero"): (frozenset({0}), "1970-01-01 is in the documented range (>= 0)"),
    ("audit:max_db_age", "zero"): (
        frozenset({1}),
        "0 days is in the documented range (>= 0): any snapshot is older, the gate fails (exit 1)",
    ),
    ("audit:max_db_age", "huge"): (
        frozenset({0, 2}),
        "a finite age, however large, is a gate that never fails: harmless either way",
    ),
}


def bases(registry: str) -> dict[tuple[str, ...], list[Base]]:
    """A valid invocation of every command (names from tests.harness.edge_world; cwd = a copy)."""
    ref = f"{registry}/team/a:1"
    return {
        ("audit",): [
            Base(
                {
                    "inputs": ["old.json"],
                    "db_path": "osv.db",
                    "vex_paths": ["vex.json"],
                    "policy_spec": "policy.toml",
                    "max_db_age": "100000",
                    "output": "out.cdx.json",
                },
                outputs=("out.cdx.json",),
            )
        ],
        ("check",): [
            Base(
                {
                    "paths": ["layer"],
                    "lockfile": "lock.json",
                    "policy_spec": "policy.toml",
                    "defines": ["X=1"],
                }
            )
        ],
        ("diff",): [
            Base({"old": "old.cdx.json", "new": "new.json", "db_path": "osv.db", "vex_paths": ["vex.json"]})
        ],
        ("inventory",): [
            Base({"source": "old.json"}),
            Base({"source": ref, "platform_text": "linux/amd64", "timeout": "5"}, status=3),
        ],
        ("sbom",): [
            Base(
                {
                    "manifests": ["old.json"],
                    "lockfile": "lock.json",
                    "merge_into": "base.cdx.json",
                    "output": "out.cdx.json",
                    "source_date_epoch": "1700000000",
                    "db_path": "osv.db",
                    "vex_paths": ["vex.json"],
                },
                outputs=("out.cdx.json",),
            ),
            Base({"deploy_dir": "deploy"}),
        ],
        ("update",): [
            Base(
                {
                    "paths": ["layer"],
                    "lockfile": "lock.json",
                    "images": [ref],
                    "dl_dir": "dl",
                    "jobs": "2",
                    "timeout": "5",
                    "defines": ["X=1"],
                },
                flags=("--diff",),
                status=3,  # the registry is down
            )
        ],
        ("verify",): [
            Base(
                {
                    "paths": ["layer"],
                    "lockfile": "lock.json",
                    "policy_spec": "policy.toml",
                    "trusted_root": "root.json",
                    "timeout": "5",
                    "defines": ["X=1"],
                },
                status=3,  # the registry is down
            )
        ],
        ("vulndb", "import"): [Base({"sources": ["osv.zip"], "db_path": "new.db"}, outputs=("new.db",))],
        ("vulndb", "show"): [Base({"db_path": "osv.db"})],
    }


class Edges:
    """The world (valid documents), the fork servers, the homes, and how one case is run."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.registry = f"127.0.0.1:{edge_world.closed_port()}"
        self.world = root / "world"
        edge_world.build(self.world, self.registry)
        (self.world / "dl").mkdir()
        self.homes = {user: root / f"home-{user}" for user in USERS}
        for user, home in self.homes.items():
            home.mkdir()
            give_to(user, home)
        env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "HOME": str(self.homes["root"])}
        self.servers: list[ForkServer] = [ForkServer(env) for _ in range(WORKERS)]
        self._free = list(self.servers)
        self._lock = threading.Lock()
        for line in edge_world.needs_cli():
            made = self.servers[0].run(line, self.world, home=self.homes["root"])
            assert made.status == 0, (line, made.stderr)
        self.bases = bases(self.registry)
        self._serial = itertools.count()

    def close(self) -> None:
        for server in self.servers:
            server.close()

    def _server(self) -> ForkServer:
        with self._lock:
            return self._free.pop()

    def _release(self, server: ForkServer) -> None:
        with self._lock:
            self._free.append(server)

    def case_dir(self) -> Path:
        """A fresh copy of the world."""
        with self._lock:
            directory = self.root / "cases" / str(next(self._serial))
        shutil.copytree(self.world, directory)
        return directory

    def run(self, args: list[str], directory: Path, user: str) -> Result:
        """`container-lock args` in `directory` as `user`, on a free fork server."""
        server = self._server()
        try:
            return server.run(
                args, directory, user=None if user == "root" else user, home=self.homes[user], timeout=60
            )
        finally:
            self._release(server)

    def check(self, case: Case) -> Verdict:
        """Run one case in its own copy of the world and judge it."""
        directory = self.case_dir()
        try:
            value, names = materialize(case, directory, self.world)
            give_to(case.user, directory)
            before = snapshot(directory)
            result = self.run(
                argv(case.slot.command, case.click_command, case.base, (case.slot.param.name, value)),
                directory,
                case.user,
            )
            after = snapshot(directory)
            allowed = ALLOWED.get((case.slot.key, case.kind), (BAD_INPUT, ""))[0]
            return judge(case, result, before, after, names, allowed)
        finally:
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def edges() -> Iterator[Edges]:
    root = Path(tempfile.mkdtemp(prefix="edges-"))
    root.chmod(0o755)  # the build user enters its case directories
    world = Edges(root)
    try:
        yield world
    finally:
        world.close()
        shutil.rmtree(root, ignore_errors=True)


def test_every_slot_has_a_role_and_a_base() -> None:
    """A new command or option that takes a path, a number or a string fails here until ROLES
    says what it takes and BASES gives it a value: the edges then walk it too."""
    keys = {slot.key for slot in slots(cli)}
    assert sorted(keys - set(ROLES)) == [], "slots without a role in ROLES"
    assert sorted(set(ROLES) - keys) == [], "ROLES names slots the CLI does not have"
    table = bases("127.0.0.1:9")
    assert {path for path, _ in commands(cli)} == set(table), "every command needs a base invocation"
    unused = [slot.key for slot in slots(cli) if base_of(slot, table) is None]
    assert unused == [], "slots no base invocation gives a value"
    assert {key for key, _ in ALLOWED} <= keys
    assert all(reason for _, reason in ALLOWED.values()), "every allowed exception says why"


def test_the_judge_flags_every_rule() -> None:
    """Each rule can fail: a wrong status, a traceback, a message that names nothing, a changed
    input, a file left behind; and a clean exit 2 that names the path passes."""
    slot = next(s for s in slots(cli) if s.key == "sbom:lockfile")
    base = bases("127.0.0.1:9")[("sbom",)][0]
    case = Case(slot, ROLES[slot.key], "garbage", "root", base, dict(commands(cli))[("sbom",)])
    before = {"bad-garbage.json": "a", "old.json": "b"}
    named = ["bad-garbage.json"]

    def problems(status: int, stderr: str, after: dict[str, str] | None = None) -> list[str]:
        result = Result(status, "", stderr, 0.0)
        return judge(case, result, before, before if after is None else after, named, BAD_INPUT).problems

    assert problems(2, "error: bad-garbage.json:1: not JSON\n") == []
    assert problems(4, "error: bad-garbage.json: internal error\n") == ["exit 4, expected 2"]
    assert problems(0, "") == ["exit 0, expected 2"]
    assert "a traceback" in problems(2, "Traceback (most recent call last):\nbad-garbage.json\n")
    assert problems(2, "Usage: container-lock sbom bad-garbage.json\nerror: not JSON\n") == [
        "the message names none of ['bad-garbage.json']"
    ]
    changed = problems(2, "bad-garbage.json: no", {**before, "old.json": "c"})
    assert changed == ["inputs changed or removed: ['old.json']"]
    left = problems(2, "bad-garbage.json: no", {**before, "out.cdx.json": "d"})
    assert left == ["left behind: ['out.cdx.json']"]
    assert mentions("error: -D : write NAME=VALUE", "-D") and not mentions("container-lock", "-l")


def test_the_bases_are_valid(edges: Edges) -> None:
    """Each base invocation does what it says (exit 0, or 3 with the registry down), for both
    users: the edge cases differ from it in one value only."""
    problems = []
    leaf = dict(commands(cli))
    for path, invocations in edges.bases.items():
        for base in invocations:
            for user in USERS:
                directory = edges.case_dir()
                give_to(user, directory)
                before = snapshot(directory)
                result = edges.run(argv(path, leaf[path], base, None), directory, user)
                after = snapshot(directory)
                shutil.rmtree(directory, ignore_errors=True)
                if result.status != base.status or "Traceback" in result.stderr:
                    problems.append(
                        f"{' '.join(path)} as {user}: exit {result.status}: {result.stderr[-300:]}"
                    )
                missing = [o for o in base.outputs if o not in after]
                changed = [p for p, d in before.items() if after.get(p) != d]
                if missing or changed:
                    problems.append(
                        f"{' '.join(path)} as {user}: outputs missing {missing}, changed {changed}"
                    )
    assert problems == [], "\n".join(problems)


def test_every_edge(edges: Edges) -> None:
    """Every command × slot × bad kind × user: status 2 (or as ALLOWED says), no traceback, the
    message names the value, inputs byte-identical, nothing left behind."""
    found = cases(cli, ROLES, edges.bases, USERS)
    only = os.environ.get("EDGES_ONLY")
    if only:
        found = [c for c in found if c.name == only]
        assert found, f"EDGES_ONLY={only!r} names no case"
    started = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:
        verdicts = list(pool.map(edges.check, found))
    seconds = time.monotonic() - started
    per = Counter((" ".join(c.slot.command), c.user) for c in found)
    print(f"\nedges: {len(found)} cases in {seconds:.1f} s (no random choices; replay one case with")
    print("  EDGES_ONLY='<command> <slot> <kind> <user>', e.g. EDGES_ONLY='sbom output impossible root')")
    for (command, user), count in sorted(per.items()):
        print(f"  {command:14} {user:8} {count}")
    failed = [v for v in verdicts if v.problems]
    grouped: dict[str, list[str]] = defaultdict(list)
    for verdict in failed:
        case = verdict.case
        grouped[case.slot.key].append(
            f"    {case.kind:22} {case.user:8} exit {verdict.result.status}: {verdict.first_line}"
            f"  [{'; '.join(verdict.problems)}]"
        )
    report = "\n".join(f"{key}:\n" + "\n".join(lines) for key, lines in sorted(grouped.items()))
    print(f"edges failed: {len(failed)} of {len(found)}\n{report}")
    assert failed == [], f"{len(failed)} of {len(found)} edge cases failed:\n{report}"
