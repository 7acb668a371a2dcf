"""Real OpenEmbedded-Core builds: OE's own bitbake, oe-init-build-env, sanity checks, HOSTTOOLS.

The trees come from `OE_DIR` (a directory holding `openembedded-core/` and `bitbake/`) or,
by default, from the snapshots in `../shared/oe/` (relative to the project), unpacked once
per session. OE refuses to build as root ("Do not use Bitbake as root."), so when the tests
run as root every bitbake command runs as the build user (`CONTAINER_LOCK_BUILD_USER`,
default `clbuild`, created by .ci/setup-oe) and everything the build touches lives in a
directory that user owns. The layer under test is `CONTAINER_LOCK_LAYER` (default: this
repository's `meta/`), so the same tests can be run against another checkout.

One build directory serves a whole session: configurations are switched by rewriting
local.conf, and BitBake keeps one parse cache per configuration (`bb_cache.dat.<hash>`), so
going back to a configuration costs seconds. A configuration with `core_recipes` parses all of
OE-Core's recipes (one to three minutes on 2 cores); the others mask them (`BBMASK`; none has a
docker:// URL) and parse only the test layer, with all of OE-Core's configuration and global
classes, in seconds. The tasks of the test recipes that are never run (patch, package, …) name
native tools as dependencies; a masked configuration lists those in ASSUME_PROVIDED.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness import coverage

REPO = Path(__file__).resolve().parent.parent.parent
SNAPSHOTS = REPO.parent / "shared" / "oe"
# release -> (OE-Core snapshot, the BitBake release it pairs with)
RELEASES: Mapping[str, tuple[str, str]] = {
    "scarthgap": ("oe-core-scarthgap.tar.xz", "bitbake-2.8.tar.xz"),
    "wrynose": ("oe-core-wrynose.tar.xz", "bitbake-2.18.tar.xz"),
}
CUSTOM = "oe_dir"  # the release id used for a tree given by OE_DIR
BUILD_USER = os.environ.get("CONTAINER_LOCK_BUILD_USER", "clbuild")
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PARSE_TIMEOUT = 1800
# What a fetch/unpack-only recipe's other tasks (patch, package, …) name as dependencies, whose
# recipes a masked configuration does not parse; found with `bitbake -g` on scarthgap and wrynose.
MASKED_ASSUME_PROVIDED = (
    "quilt-native patch-replacement-native virtual/fakeroot-native rpm-native dwarfsrcfiles-native "
    "opkg-utils-native zstd-native virtual/${TARGET_PREFIX}binutils binutils-cross-${TARGET_ARCH}"
)
TASK_TIMEOUT = 600


class OESetupError(RuntimeError):
    """The OE tier cannot run here; the message says what is missing."""


def layer_under_test() -> Path:
    """The container-lock layer to test: $CONTAINER_LOCK_LAYER or this repo's meta/ (see `staged_layer`)."""
    layer = Path(os.environ.get("CONTAINER_LOCK_LAYER") or REPO / "meta").resolve()
    if not (layer / "conf" / "layer.conf").is_file():
        raise OESetupError(f"CONTAINER_LOCK_LAYER={layer} has no conf/layer.conf")
    return layer


def _readable_by_anyone(path: Path) -> bool:
    """Can any user enter every parent of `path` and read `path`?"""
    parents_ok = all(p.stat().st_mode & 0o001 for p in path.parents)
    return parents_ok and path.stat().st_mode & 0o005 == 0o005


def staged_layer(layer: Path, user: BuildUser, workdir: Path) -> Path:
    """The layer to put in BBLAYERS: `layer` itself, or a copy in `workdir` (owned by the build
    user) when that user may not be able to read it (a checkout under root's 0700 home)."""
    if not user.switch or _readable_by_anyone(layer):
        return layer
    copy = workdir / "container-lock-layer"
    shutil.copytree(layer, copy, symlinks=True)
    user.own(copy)
    _LAYER_ORIGIN[copy] = layer
    return copy


_LAYER_ORIGIN: dict[Path, Path] = {}  # a staged copy of a layer -> the layer it copies


def selected_releases() -> list[str]:
    """The releases to test: the OE_DIR tree alone, or the snapshots ($OE_RELEASES narrows them)."""
    if os.environ.get("OE_DIR"):
        return [CUSTOM]
    wanted = os.environ.get("OE_RELEASES", " ".join(RELEASES)).replace(",", " ").split()
    unknown = [r for r in wanted if r not in RELEASES]
    if unknown:
        raise OESetupError(f"OE_RELEASES: unknown release(s) {unknown}; known: {list(RELEASES)}")
    return wanted


@dataclass(frozen=True)
class BuildUser:
    """Who runs bitbake: this process's user, or the build user when we are root."""

    name: str
    uid: int
    gid: int
    home: str

    @classmethod
    def for_this_process(cls) -> BuildUser:
        name = BUILD_USER if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise OESetupError(
                f"OE refuses to run as root and the build user '{name}' does not exist: "
                "run `bash .ci/setup-oe` (or set CONTAINER_LOCK_BUILD_USER)"
            ) from None
        return cls(name, entry.pw_uid, entry.pw_gid, entry.pw_dir)

    @property
    def switch(self) -> bool:
        return os.getuid() != self.uid

    def popen_kwargs(self) -> dict[str, Any]:
        """subprocess arguments that run a command as this user."""
        if not self.switch:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def own(self, path: Path) -> None:
        """Give `path` (recursively) to this user."""
        if not self.switch:
            return
        os.chown(path, self.uid, self.gid)
        for parent, dirs, files in os.walk(path):
            for name in (*dirs, *files):
                os.chown(os.path.join(parent, name), self.uid, self.gid, follow_symlinks=False)


def check_host_tools(tools: Iterable[str] = ("skopeo", "tar", "xz", "gawk", "chrpath", "cpio")) -> None:
    """Fail with one clear message when a host tool the tier needs is missing."""
    missing = [t for t in tools if shutil.which(t, path=HOST_PATH) is None]
    if missing:
        raise OESetupError(f"missing host tools for the OE tier: {missing}; run `bash .ci/setup-oe`")


def _corenames(core: Path) -> str:
    text = (core / "meta" / "conf" / "layer.conf").read_text()
    m = re.search(r'^LAYERSERIES_CORENAMES\s*=\s*"([^"]*)"', text, re.M)
    if not m:
        raise OESetupError(f"{core}/meta/conf/layer.conf: no LAYERSERIES_CORENAMES")
    return m[1]


@dataclass(frozen=True)
class OETree:
    """An OE-Core tree with its BitBake: `<root>/openembedded-core` and `<root>/bitbake`."""

    release: str
    root: Path

    @property
    def core(self) -> Path:
        return self.root / "openembedded-core"

    @property
    def bitbake(self) -> Path:
        return self.root / "bitbake"

    @property
    def corenames(self) -> str:
        """LAYERSERIES_CORENAMES of this OE-Core (what a layer's LAYERSERIES_COMPAT must name)."""
        return _corenames(self.core)

    @property
    def appends_libc_to_tmpdir(self) -> bool:
        """OE-Core before walnascar appends TCLIBCAPPEND ("-glibc") to TMPDIR."""
        setup = self.core / "meta" / "conf" / "distro" / "defaultsetup.conf"
        return setup.is_file() and 'TMPDIR .= "${TCLIBCAPPEND}"' in setup.read_text()

    def check(self) -> OETree:
        for needed in (self.core / "oe-init-build-env", self.core / "meta" / "conf", self.bitbake / "bin"):
            if not needed.exists():
                raise OESetupError(f"{self.root}: no {needed.relative_to(self.root)} (expected an OE tree)")
        return self


def oe_tree(release: str, workdir: Path, user: BuildUser) -> OETree:
    """The tree for `release`: $OE_DIR as it is, or the snapshots unpacked under `workdir`."""
    if release == CUSTOM:
        return OETree(CUSTOM, Path(os.environ["OE_DIR"]).resolve()).check()
    dest = workdir / release
    dest.mkdir(parents=True)
    user.own(dest)
    for name in RELEASES[release]:
        archive = SNAPSHOTS / name
        if not archive.is_file():
            raise OESetupError(
                f"no OE snapshot {archive}: set OE_DIR to a dir with openembedded-core/, bitbake/"
            )
        # Read by this process, unpacked by the build user: it may not be able to read the
        # snapshots (e.g. `../shared` beside a checkout in root's 0700 home).
        with archive.open("rb") as stream:
            subprocess.run(
                ["tar", "-xJf", "-", "-C", str(dest), "--no-same-owner"],
                stdin=stream,
                check=True,
                **user.popen_kwargs(),
            )
    return OETree(release, dest).check()


@dataclass(frozen=True)
class BitbakeRun:
    """One bitbake command: arguments, exit status, merged stdout/stderr, wall time."""

    args: tuple[str, ...]
    returncode: int
    output: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def errors(self) -> list[str]:
        """The lines with an `ERROR:` (knotty may print one after a progress text on the same line)."""
        return [line for line in self.output.splitlines() if "ERROR:" in line]

    def describe(self, chars: int = 6000) -> str:
        """For assertion messages: the command, its status and the end of its output."""
        head = f"{' '.join(self.args)} -> exit {self.returncode} in {self.seconds:.0f} s"
        return f"{head}\n{self.output[-chars:]}"


@dataclass(frozen=True)
class Config:
    """A local.conf: MACHINE, extra variables, and whether OE-Core's recipes are parsed."""

    machine: str
    variables: tuple[tuple[str, str], ...] = ()
    core_recipes: bool = False


class OEBuild:
    """A build directory for one OE tree with OE-Core's meta, the layer under test and a test layer.

    The layer is used in place, or copied into `workdir` when the build user could not read it.
    """

    def __init__(self, tree: OETree, workdir: Path, user: BuildUser, layer: Path) -> None:
        self.tree = tree
        self.user = user
        self.workdir = workdir
        self.layer = staged_layer(layer, user, workdir)
        self.topdir = workdir / "build"
        self.test_layer = workdir / "layer-test"
        self.home = workdir / "home"
        self.dl_dir = workdir / "downloads"
        self.tmpdir = self.topdir / "tmp"
        self.logs = workdir / "logs"  # one file per command
        self.config: Config | None = None
        self.runs: list[BitbakeRun] = []
        for d in (self.topdir / "conf", self.test_layer / "conf", self.home, self.dl_dir):
            d.mkdir(parents=True, exist_ok=True)
        (self.test_layer / "conf" / "layer.conf").write_text(
            "# Test layer written by tests/harness/oe.py\n"
            'BBPATH .= ":${LAYERDIR}"\n'
            'BBFILES += "${LAYERDIR}/recipes-*/*/*.bb"\n'
            'BBFILE_COLLECTIONS += "container-lock-test"\n'
            'BBFILE_PATTERN_container-lock-test = "^${LAYERDIR}/"\n'
            'BBFILE_PRIORITY_container-lock-test = "10"\n'
            f'LAYERSERIES_COMPAT_container-lock-test = "{tree.corenames}"\n'
        )
        layers = [tree.core / "meta", self.layer, self.test_layer]
        (self.topdir / "conf" / "bblayers.conf").write_text(
            'BBPATH = "${TOPDIR}"\nBBFILES ?= ""\nBBLAYERS = " \\\n'
            + "".join(f"    {p} \\\n" for p in layers)
            + '"\n'
        )
        user.own(workdir)

    # -- files -----------------------------------------------------------------------------

    def write_recipe(self, name: str, src_uri: Iterable[str], extra: str = "") -> Path:
        """A fetch/unpack-only recipe: LICENSE CLOSED, no default dependencies, only `src_uri`."""
        path = self.test_layer / "recipes-test" / name / f"{name}_1.0.bb"
        path.parent.mkdir(parents=True, exist_ok=True)
        uris = "".join(f"    {u} \\\n" for u in src_uri)
        path.write_text(
            f'SUMMARY = "container-lock OE test recipe {name}"\n'
            'LICENSE = "CLOSED"\n'
            'INHIBIT_DEFAULT_DEPS = "1"\n'
            # OE-Core before styhead unpacks into WORKDIR, later ones into UNPACKDIR.
            "S = \"${@d.getVar('UNPACKDIR') or d.getVar('WORKDIR')}\"\n"
            f'SRC_URI = " \\\n{uris}"\n{extra}'
        )
        self.user.own(self.test_layer)
        return path

    def configure(
        self, machine: str, core_recipes: bool = False, variables: Mapping[str, str] | None = None
    ) -> None:
        """Write local.conf for this configuration (untouched if it already is the current one)."""
        config = Config(machine, tuple(sorted((variables or {}).items())), core_recipes)
        if config == self.config:
            return
        lines = [
            "# Written by tests/harness/oe.py: no network except the loopback registry.",
            f'MACHINE = "{machine}"',
            f'DL_DIR = "{self.dl_dir}"',
            'TMPDIR = "${TOPDIR}/tmp"',
            'SSTATE_DIR = "${TOPDIR}/sstate-cache"',
            'PACKAGE_CLASSES = "package_ipk"',
            'BB_NUMBER_THREADS = "2"',
            'BB_HASHSERVE = ""',
            'BB_SIGNATURE_HANDLER = "OEBasicHash"',
            'PREMIRRORS = ""',
            'MIRRORS = ""',
            'SSTATE_MIRRORS = ""',
            'CONNECTIVITY_CHECK_URIS = ""',
            'BB_ALLOWED_NETWORKS = "127.0.0.1"',
            'INHERIT:remove = "uninative"',
            'CONF_VERSION = "2"',
        ]
        if self.tree.appends_libc_to_tmpdir:
            lines.append('TCLIBCAPPEND = ""')  # else TMPDIR would be tmp-glibc (a renamed variable later)
        if not core_recipes:
            lines += [
                f'BBMASK += "^{re.escape(str(self.tree.core))}/meta/recipes-"',
                'BBFILE_PATTERN_IGNORE_EMPTY_core = "1"',
                f'ASSUME_PROVIDED += "{MASKED_ASSUME_PROVIDED}"',
            ]
        lines += [f'{name} = "{value}"' for name, value in config.variables]
        path = self.topdir / "conf" / "local.conf"
        path.write_text("\n".join(lines) + "\n")
        self.user.own(path)
        self.config = config

    # -- commands --------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        return {
            "PATH": HOST_PATH,
            "HOME": str(self.home),
            "USER": self.user.name,
            "LOGNAME": self.user.name,
            "SHELL": "/bin/bash",
            "LANG": "en_US.UTF-8",
            "LC_ALL": "en_US.UTF-8",
        }

    def run(self, command: str, *args: str, timeout: float = TASK_TIMEOUT) -> BitbakeRun:
        """`command args` (bitbake, …) in the environment oe-init-build-env sets up.

        A bitbake whose UI died (its event thread could not unpickle an event, e.g. a log
        record carrying an object of a module only the server can import) never exits: that
        and a timeout end the run (its session and its server), with the reason in the output.
        """
        self._record()
        script = (
            f". {shlex.quote(str(self.tree.core / 'oe-init-build-env'))} "
            f'{shlex.quote(str(self.topdir))} >/dev/null && exec "$@"'
        )
        self.logs.mkdir(exist_ok=True)
        log = self.logs / f"{len(self.runs):03d}-{command}.log"
        start = time.monotonic()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["bash", "-c", script, "bash", command, *args],
                cwd=self.topdir,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self.user.popen_kwargs(),
            )
            reason = self._wait(proc, log, start + timeout)
        output = log.read_text(errors="replace") + (f"\n[harness] {reason}\n" if reason else "")
        result = BitbakeRun((command, *args), proc.returncode, output, time.monotonic() - start)
        self.runs.append(result)
        return result

    def _wait(self, proc: subprocess.Popen[bytes], log: Path, deadline: float) -> str:
        """Wait for `proc`; '' when it exited by itself, else why it was stopped."""
        while True:
            try:
                proc.wait(1)
                return ""
            except subprocess.TimeoutExpired:
                pass
            text = log.read_text(errors="replace")
            ui_dead = "Exception in thread" in text and "startCallbackHandler" in text
            if ui_dead or time.monotonic() > deadline:
                self._stop(proc)
                if ui_dead:
                    return (
                        "bitbake's UI could not read an event from the server and would hang forever "
                        "(see the traceback: an event or log record carries an object of a module "
                        "the UI process cannot import)"
                    )
                return "bitbake did not finish in time"

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        """End a hung bitbake: its process group and the server that holds bitbake.lock."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        lock = self.topdir / "bitbake.lock"
        first = lock.read_text().split()[:1] if lock.exists() else []
        if first and first[0].isdigit():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(first[0]), signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def _record(self) -> None:
        """Note the release, MACHINE and layer of a command for the coverage summary."""
        if self.tree.release == CUSTOM:
            release = f"OE_DIR={self.tree.root} ({self.tree.corenames})"
        else:
            release = f"{self.tree.release} ({' + '.join(RELEASES[self.tree.release])})"
        origin = _LAYER_ORIGIN.get(self.layer)
        layer = f"{origin} (as a copy the build user owns)" if origin else str(self.layer)
        machine = self.config.machine if self.config else "(not configured)"
        coverage.record("oe", release=release, machine=machine, layer=layer)

    def bitbake(self, *args: str, timeout: float = TASK_TIMEOUT) -> BitbakeRun:
        return self.run("bitbake", *args, timeout=timeout)

    def recipe_vars(self, recipe: str, *names: str) -> dict[str, str]:
        """Expanded variables of a recipe (`bitbake -e`), '' for unset ones."""
        result = self.bitbake("-e", recipe)
        if not result.ok:
            raise AssertionError(result.describe())
        found = dict.fromkeys(names, "")
        for line in result.output.splitlines():
            m = re.match(r'^(?:export )?([A-Za-z0-9_:-]+)="(.*)"$', line)
            if m and m[1] in found:
                found[m[1]] = m[2]
        return found


def new_workdir(user: BuildUser) -> Path:
    """A directory for one session's OE trees and build, owned by the build user.

    Under $OE_WORK_DIR if set, else the system temp dir (the build user must reach it, which
    pytest's own temp dirs, mode 0700 and owned by root, do not allow).
    """
    base = os.environ.get("OE_WORK_DIR") or None
    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="container-lock-oe-", dir=base))
    path.chmod(0o755)
    user.own(path)
    return path


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
