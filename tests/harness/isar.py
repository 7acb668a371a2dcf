"""Real Isar builds for the tests: a checkout of upstream Isar, a build directory, Isar's own bitbake.

Nothing of Isar is copied into the project: Isar comes from `ISAR_DIR` (a user's checkout) or from
the git bundle `../shared/isar/isar.bundle` (relative to the project root), cloned once per process
into a temporary directory and checked out at a ref (`master`, `v1.1`, `v1.0`, `v0.10`).

Typical use::

    isar = isar_checkout("master")
    build = IsarBuild(isar, work_dir("amd64"), machine="qemuamd64")
    build.registries(insecure=[registry.host])
    build.add_recipe("my-img", 'inherit docker-loader\\nSRC_URI += "docker://…"\\n')
    result = build.bitbake("-c", "install_fetched_containers", "my-img")
    result.check()                                   # raises with the output's tail unless exit 0
    assert result.ran("my-img", "do_fetch")
    image_dir = build.workdir("my-img") / "image"    # ${D}

Isar's bitbake runs as a subprocess, as the non-root build user `clbuild` when the tests run as
root (Isar's sbuild/sudo steps expect a normal user; see .ci/setup-isar), else as the current user.
Every directory the harness creates is made readable and writable by that user. The build user's
HOME is a directory of the build (`<topdir>/home`), holding `.config/containers/registries.conf`,
so skopeo inside BitBake's tasks (HOME is in BitBake's environment whitelist) finds the loopback
registry marked insecure.

Environment variables:
- `ISAR_DIR`: a user's Isar checkout; used as is for ref `master`, cloned from for other refs.
- `CONTAINER_LOCK_LAYER`: the container-lock layer to test (default `<repo>/meta`), e.g. a worktree
  of an older commit to show that a test fails there.
- `CONTAINER_LOCK_BUILD_USER`: the build user when running as root (default `clbuild`).
- `CONTAINER_LOCK_ISAR_WORK`: parent of the temporary directories (default: the system's temp dir).
- `CONTAINER_LOCK_KEEP_ISAR`: `1` keeps the temporary directories after the process exits.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.harness import coverage
from tests.harness.containers_conf import registries_conf_text

REPO = Path(__file__).resolve().parent.parent.parent
ISAR_BUNDLE = REPO.parent / "shared" / "isar" / "isar.bundle"
DEFAULT_REF = "master"
DEFAULT_DISTRO = "debian-bookworm"
BITBAKE_TIMEOUT = 1200.0

# meta-isar's QEMU machines and the DISTRO_ARCH each sets.
MACHINE_ARCH = {"qemuamd64": "amd64", "qemuarm": "armhf", "qemuarm64": "arm64", "qemui386": "i386"}
# Debian architecture → OCI platform (as the fetcher maps PACKAGE_ARCH).
ARCH_PLATFORM = {
    "amd64": "linux/amd64",
    "arm64": "linux/arm64/v8",
    "armhf": "linux/arm/v7",
    "armel": "linux/arm/v6",
    "i386": "linux/386",
}

_TASK_LINE = re.compile(
    r"^NOTE: recipe (?P<recipe>\S+): task (?P<task>do_\w+): (?P<state>Started|Succeeded|Failed)"
)
_SUMMARY = re.compile(r"^NOTE: Tasks Summary: Attempted (?P<attempted>\d+) tasks of which (?P<current>\d+)")
_RECIPE_PVR = re.compile(r"^(?P<pn>.+)-(?P<pv>[^-]+)-(?P<pr>r\d+)$")
_UI_DEAD = re.compile(r"in startCallbackHandler\n(?:.*\n)*?(?P<error>\w+Error: .*)", re.M)
_ENV_LINE = re.compile(r'^(?:export )?(?P<name>[A-Za-z0-9_:\-${}.+/]+)="(?P<value>.*)"$')


class IsarError(RuntimeError):
    """Isar (or a host tool it needs) is missing or a build step failed; the message says which."""


# -- where things live ---------------------------------------------------------------------------


def layer_dir() -> Path:
    """The container-lock layer under test: `CONTAINER_LOCK_LAYER`, else `<repo>/meta`.

    Where the build user could not read it (a checkout under a private home), a copy in the
    work root is used instead.
    """
    path = Path(os.environ.get("CONTAINER_LOCK_LAYER") or REPO / "meta").resolve()
    if not (path / "conf" / "layer.conf").is_file():
        raise IsarError(f"CONTAINER_LOCK_LAYER={path}: no conf/layer.conf there")
    if build_user() is not None and not _world_readable(path):
        copy = work_root() / "container-lock-layer"
        if not copy.exists():
            shutil.copytree(path, copy, symlinks=True)
            give_to_build_user(copy)
        _LAYER_ORIGIN[copy] = path
        return copy
    return path


_LAYER_ORIGIN: dict[Path, Path] = {}  # a staged copy of a layer -> the layer it copies


def _world_readable(path: Path) -> bool:
    """Can any user enter every parent of `path` and read `path`?"""
    parents_ok = all(p.stat().st_mode & 0o001 for p in path.parents)
    return parents_ok and path.stat().st_mode & 0o005 == 0o005


def build_user() -> str | None:
    """The user bitbake runs as: `clbuild` (or `CONTAINER_LOCK_BUILD_USER`) as root; None otherwise."""
    if os.geteuid() != 0:
        return None
    user = os.environ.get("CONTAINER_LOCK_BUILD_USER", "clbuild")
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise IsarError(
            f"build user {user!r} does not exist: run .ci/setup-isar (Isar builds run as a non-root user)"
        ) from None
    if shutil.which("sudo") is None:
        raise IsarError("sudo is missing (apt-get install sudo; .ci/setup-isar)")
    return user


def give_to_build_user(*paths: Path) -> None:
    """Make `paths` (recursively) owned by the build user; their parents must be traversable by it."""
    user = build_user()
    if user is None:
        return  # bitbake runs as the current user
    for path in paths:
        for parent in path.parents:
            if parent == Path("/"):
                break
            mode = parent.stat().st_mode
            if mode & 0o005 != 0o005 and parent.owner() != user:
                raise IsarError(f"{parent} is not readable by the build user {user}; use another work dir")
        if path.exists():
            _chown_tree(path, user)


def _chown_tree(root: Path, user: str) -> None:
    """`chown -R user:` that tolerates files vanishing meanwhile (a bitbake server that is still
    exiting removes its `bitbake.lock` at a moment of its own choosing)."""
    entry = pwd.getpwnam(user)
    owner = (entry.pw_uid, entry.pw_gid)

    def chown(path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.chown(path, *owner, follow_symlinks=False)

    chown(str(root))
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            chown(os.path.join(parent, name))


_WORK_ROOT: list[Path] = []


def work_root() -> Path:
    """This process's temporary directory for Isar checkouts and builds (mode 0755, removed at exit)."""
    if not _WORK_ROOT:
        base = os.environ.get("CONTAINER_LOCK_ISAR_WORK") or tempfile.gettempdir()
        root = Path(tempfile.mkdtemp(prefix="container-lock-isar-", dir=base))
        root.chmod(0o755)
        _WORK_ROOT.append(root)
        if os.environ.get("CONTAINER_LOCK_KEEP_ISAR") != "1":
            atexit.register(shutil.rmtree, root, True)
    return _WORK_ROOT[0]


def work_dir(name: str) -> Path:
    """A new, empty directory `<work root>/<name>-<n>` for a build (owned by the build user)."""
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work_root()))
    path.chmod(0o755)
    give_to_build_user(path)
    return path


# -- the CLI, installed for the build user -------------------------------------------------------

SYSTEM_PYTHON = Path("/usr/bin/python3")
_STAGED_CLI: list[Path] = []


def _installed_closure(site: Path, top: str = "container-lock") -> list[metadata.Distribution]:
    """The distributions installed in `site` that `top` needs to run (its requirements, no extras)."""
    found = {canonicalize_name(d.metadata["Name"]): d for d in metadata.distributions(path=[str(site)])}
    needed: dict[str, metadata.Distribution] = {}
    todo: list[tuple[str, frozenset[str]]] = [(top, frozenset())]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if (key, extras) in done:
            continue
        done.add((key, extras))
        if key not in found:
            raise IsarError(f"{name} (needed by {top}) is not installed in {site}: run `bash .ci/setup`")
        dist = needed[key] = found[key]
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras or {""}):
                todo.append((req.name, frozenset(req.extras)))
    return list(needed.values())


def _copy_distribution(dist: metadata.Distribution, site: Path, dest: Path) -> None:
    """Copy the files of an installed distribution (those under `site`) into `dest`.

    For this project, installed editable, its metadata is copied and its packages (top_level.txt)
    come from where the editable finder points, i.e. the checkout.
    """
    editable = canonicalize_name(dist.metadata["Name"]) == "container-lock"
    for file in dist.files or []:
        parts = file.parts
        if ".." in parts or "__pycache__" in parts:
            continue
        if editable and (parts[0].startswith("__editable__") or file.name == "direct_url.json"):
            continue
        target = dest.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(site.joinpath(*parts), target)
    if not editable:
        return
    for name in (dist.read_text("top_level.txt") or "").split():
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise IsarError(f"package {name} of container-lock cannot be found from the test venv")
        source = Path(next(iter(spec.submodule_search_locations)))
        shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)


def staged_cli() -> Path:
    """`<work root>/container-lock-cli/bin/container-lock`: the CLI as the build user can run it.

    The tests' venv (its interpreter, and the editable install pointing into the checkout) may
    live where the build user cannot read it, e.g. a checkout in root's 0700 home. So once per
    process the project's packages and the distributions it needs (not the test extras) are
    copied from the venv into a directory the build user owns, and a wrapper runs them with the
    system python3 (same minor version as the venv: the copied binary extensions need it).
    Checked by running `container-lock --version` as the build user.
    """
    if _STAGED_CLI:
        return _STAGED_CLI[0]
    probe = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
    )
    if probe.returncode or probe.stdout.strip() != str(tuple(sys.version_info[:2])):
        want = sys.version_info[:2]
        raise IsarError(f"{SYSTEM_PYTHON} is not Python {want} (the venv's); cannot run the CLI")
    site = Path(sysconfig.get_paths()["purelib"])
    root = work_root() / "container-lock-cli"
    packages = root / "site-packages"
    packages.mkdir(parents=True)
    for dist in _installed_closure(site):
        _copy_distribution(dist, site, packages)
    wrapper = root / "bin" / "container-lock"
    wrapper.parent.mkdir()
    program = (
        "import site, sys; d = sys.argv.pop(1); sys.path.insert(0, d); site.addsitedir(d); "
        "sys.argv[0] = 'container-lock'; from audit.cli import main; sys.exit(main())"
    )
    wrapper.write_text(f'#!/bin/sh\nexec {SYSTEM_PYTHON} -I -c "{program}" {packages} "$@"\n')
    wrapper.chmod(0o755)
    root.chmod(0o755)
    give_to_build_user(root)
    user = build_user()
    run_as = ["sudo", "-n", "-u", user, "-H"] if user else []
    check = subprocess.run(
        [*run_as, str(wrapper), "--version"], capture_output=True, text=True, cwd="/", check=False
    )
    if check.returncode:
        raise IsarError(f"the staged CLI {wrapper} does not run as {user or 'this user'}:\n{check.stderr}")
    _STAGED_CLI.append(wrapper)
    return wrapper


# -- Isar checkouts ------------------------------------------------------------------------------

_CHECKOUTS: dict[str, Path] = {}


def _git(*args: str, cwd: Path | None = None) -> str:
    if shutil.which("git") is None:
        raise IsarError("git is missing (apt-get install git)")
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode:
        raise IsarError(f"git {' '.join(args)} failed (exit {result.returncode}):\n{result.stderr}")
    return result.stdout


def isar_checkout(ref: str = DEFAULT_REF) -> Path:
    """An Isar tree at `ref`, cloned once per process (shared by every caller; do not modify it).

    With `ISAR_DIR` set, ref `master` is that checkout as it is (its HEAD cloned when the build user
    could not read it); other refs are cloned from it.
    Without it, the bundle `../shared/isar/isar.bundle` is cloned. A missing source or ref is an
    `IsarError` naming what to do.
    """
    user_dir = os.environ.get("ISAR_DIR")
    if user_dir and ref == DEFAULT_REF:
        path = Path(user_dir).resolve()
        if not (path / "bitbake" / "bin" / "bitbake").is_file():
            raise IsarError(f"ISAR_DIR={path} is not an Isar checkout (no bitbake/bin/bitbake)")
        if build_user() is None or _world_readable(path):
            return path
        # The build user could not read it: cloned (its HEAD) like the other refs.
    if ref in _CHECKOUTS:
        return _CHECKOUTS[ref]
    source = Path(user_dir).resolve() if user_dir else ISAR_BUNDLE
    if not source.exists():
        raise IsarError(
            f"no Isar: {source} does not exist. Set ISAR_DIR to an Isar checkout, or put the bundle at "
            f"{ISAR_BUNDLE} (see ../shared/isar/README.md)"
        )
    path = work_root() / f"isar-{re.sub(r'[^A-Za-z0-9._-]', '_', ref)}"
    _git("clone", "-q", "--no-checkout", str(source), str(path))
    # ISAR_DIR's master is that checkout's HEAD, whatever its branch.
    wanted = _git("rev-parse", "HEAD", cwd=path).strip() if user_dir and ref == DEFAULT_REF else ref
    try:
        _git("-c", "advice.detachedHead=false", "checkout", "-q", wanted, cwd=path)
    except IsarError as err:
        refs = _git("for-each-ref", "--format=%(refname:short)", cwd=path).split()
        raise IsarError(f"Isar ref {ref!r} not in {source} (it has: {', '.join(refs)})\n{err}") from None
    path.chmod(0o755)
    _CHECKOUTS[ref] = path
    _ORIGIN[path] = f"{ref} of {source}"
    return path


_ORIGIN: dict[Path, str] = {}  # an Isar tree -> which ref of which source it is


def describe_checkout(isar: Path) -> str:
    """`<ref> of <bundle or ISAR_DIR> (bitbake <version>)` for the coverage summary."""
    origin = _ORIGIN.get(isar, f"ISAR_DIR={isar}")
    return f"{origin} (bitbake {bitbake_version(isar)})"


def bitbake_version(isar: Path) -> str:
    """The version of Isar's bundled bitbake (`2.8.0`, `2.0.0`, …)."""
    text = (isar / "bitbake" / "lib" / "bb" / "__init__.py").read_text()
    m = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if not m:
        raise IsarError(f"no __version__ in {isar}/bitbake/lib/bb/__init__.py")
    return m.group(1)


# -- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskRun:
    """One task bitbake started: recipe as `PN-PV-PR`, task `do_…`, and how it ended."""

    recipe: str
    task: str
    state: str  # "Succeeded", "Failed", or "Started" (never finished)

    @property
    def pn(self) -> str:
        m = _RECIPE_PVR.match(self.recipe)
        return m["pn"] if m else self.recipe


@dataclass
class BitbakeResult:
    """What one bitbake invocation did: exit status, combined output, tasks it executed."""

    args: tuple[str, ...]
    returncode: int
    output: str
    tasks: list[TaskRun] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def executed(self, pn: str | None = None) -> list[str]:
        """Tasks that ran (started) in this invocation, in order; only `pn`'s when given."""
        return [t.task for t in self.tasks if pn is None or t.pn == pn]

    def ran(self, pn: str, task: str) -> bool:
        """Whether `pn`'s `task` was executed (not merely found current by its stamp)."""
        return task in self.executed(pn)

    def failed(self) -> list[TaskRun]:
        return [t for t in self.tasks if t.state == "Failed"]

    def errors(self) -> list[str]:
        """Lines starting with `ERROR:` (bitbake's own and the tasks')."""
        return [line for line in self.output.splitlines() if line.startswith("ERROR:")]

    def summary(self) -> tuple[int, int] | None:
        """(attempted, already current) from `Tasks Summary`, when bitbake printed one."""
        for line in self.output.splitlines():
            m = _SUMMARY.match(line)
            if m:
                return int(m["attempted"]), int(m["current"])
        return None

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])

    def check(self) -> BitbakeResult:
        """Self, or IsarError with the command and the output's tail when bitbake failed."""
        if not self.ok:
            raise IsarError(f"bitbake {' '.join(self.args)} exited {self.returncode}:\n{self.tail()}")
        return self


def parse_tasks(output: str) -> list[TaskRun]:
    """Tasks from knotty's `NOTE: recipe <PN-PV-PR>: task <do_x>: Started|Succeeded|Failed` lines."""
    order: list[tuple[str, str]] = []
    state: dict[tuple[str, str], str] = {}
    for line in output.splitlines():
        m = _TASK_LINE.match(line)
        if not m:
            continue
        key = (m["recipe"], m["task"])
        if key not in state:
            order.append(key)
        if m["state"] != "Started" or key not in state:
            state[key] = m["state"]
    return [TaskRun(recipe, task, state[(recipe, task)]) for recipe, task in order]


# -- build directory -----------------------------------------------------------------------------

_TEST_LAYER_CONF = """\
# A layer of recipes written by container-lock's tests.
BBPATH .= ":${LAYERDIR}"
BBFILES += "${LAYERDIR}/recipes-*/*/*.bb ${LAYERDIR}/recipes-*/*/*.bbappend"
BBFILE_COLLECTIONS += "cltest"
BBFILE_PATTERN_cltest = "^${LAYERDIR_RE}/"
BBFILE_PRIORITY_cltest = "9"
LAYERSERIES_COMPAT_cltest = "v0.6 next"
"""


class IsarBuild:
    """An Isar build directory: conf/bblayers.conf, conf/local.conf, a test layer, a HOME.

    Layers: Isar's `meta` and `meta-isar`, the container-lock layer (`layer_dir()` unless
    `cl_layer` is given; None leaves it out), the test layer `<topdir>/meta-cltest`, then `extra_layers`.
    `set()` and `conf_append` change local.conf; it is rewritten before every bitbake run, so a
    test can change a variable between runs of the same build directory.
    """

    def __init__(
        self,
        isar: Path,
        topdir: Path,
        *,
        machine: str = "qemuamd64",
        distro: str = DEFAULT_DISTRO,
        dl_dir: Path | None = None,
        cl_layer: Path | bool | None = True,
        extra_layers: Iterable[Path] = (),
    ) -> None:
        if not (isar / "bitbake" / "bin" / "bitbake").is_file():
            raise IsarError(f"{isar} is not an Isar tree (no bitbake/bin/bitbake)")
        self.isar = isar
        self.topdir = topdir
        self.home = topdir / "home"
        self.test_layer = topdir / "meta-cltest"
        self.dl_dir = dl_dir or topdir / "downloads"
        self.cl_layer: Path | None = layer_dir() if cl_layer is True else (cl_layer or None)
        self.extra_layers = list(extra_layers)
        self.local_conf: dict[str, str] = {
            "MACHINE": machine,
            "DISTRO": distro,
            "BBMULTICONFIG": "",
            "DL_DIR": str(self.dl_dir),
        }
        self.conf_append = ""
        self.env: dict[str, str] = {}
        for path in (topdir / "conf", self.home, self.test_layer / "conf", self.dl_dir):
            path.mkdir(parents=True, exist_ok=True)
        (self.test_layer / "conf" / "layer.conf").write_text(_TEST_LAYER_CONF)
        self._own()

    # -- configuration ---------------------------------------------------------------------------

    @property
    def machine(self) -> str:
        return self.local_conf["MACHINE"]

    @property
    def distro(self) -> str:
        return self.local_conf["DISTRO"]

    @property
    def distro_arch(self) -> str:
        """DISTRO_ARCH: set in local.conf, else the machine's (for meta-isar's qemu machines)."""
        if "DISTRO_ARCH" in self.local_conf:
            return self.local_conf["DISTRO_ARCH"]
        try:
            return MACHINE_ARCH[self.machine]
        except KeyError:
            raise IsarError(f"DISTRO_ARCH of machine {self.machine} unknown: set it in local.conf") from None

    @property
    def tmpdir(self) -> Path:
        return Path(self.local_conf.get("TMPDIR", self.topdir / "tmp"))

    @property
    def deploy_dir(self) -> Path:
        return self.tmpdir / "deploy"

    def set(self, **variables: str) -> IsarBuild:
        """Set local.conf variables (`NAME = "value"`); use `unset()` to drop one."""
        self.local_conf.update(variables)
        return self

    def unset(self, *names: str) -> IsarBuild:
        for name in names:
            self.local_conf.pop(name, None)
        return self

    def layers(self) -> list[Path]:
        """BBLAYERS in order."""
        layers = [self.isar / "meta", self.isar / "meta-isar"]
        if self.cl_layer is not None:
            layers.append(self.cl_layer)
        return [*layers, self.test_layer, *self.extra_layers]

    def registries(
        self, insecure: Iterable[str] = (), mirrors: Mapping[str, Iterable[str]] | None = None
    ) -> Path:
        """Write the build user's `$HOME/.config/containers/registries.conf`; its path."""
        path = self.home / ".config" / "containers" / "registries.conf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(registries_conf_text(insecure, mirrors))
        self._own(self.home)
        return path

    def add_recipe(self, name: str, body: str, version: str = "1.0") -> Path:
        """Write `meta-cltest/recipes-test/<name>/<name>_<version>.bb` (LICENSE/MAINTAINER added)."""
        path = self.test_layer / "recipes-test" / name / f"{name}_{version}.bb"
        path.parent.mkdir(parents=True, exist_ok=True)
        header = 'LICENSE = "MIT"\nMAINTAINER = "container-lock tests <tests@example.invalid>"\n'
        path.write_text(header + body)
        self._own(self.test_layer)
        return path

    def remove_recipe(self, name: str) -> None:
        shutil.rmtree(self.test_layer / "recipes-test" / name, ignore_errors=True)

    def write_conf(self) -> None:
        """Write conf/bblayers.conf and conf/local.conf from the current settings."""
        layers = " \\\n    ".join(str(p) for p in self.layers())
        (self.topdir / "conf" / "bblayers.conf").write_text(
            f'BBPATH = "${{TOPDIR}}"\nBBFILES ?= ""\nBBLAYERS = " \\\n    {layers} \\\n    "\n'
        )
        lines = [f'{k} = "{v}"' for k, v in self.local_conf.items()]
        (self.topdir / "conf" / "local.conf").write_text("\n".join(lines) + "\n" + self.conf_append)

    def _own(self, *paths: Path) -> None:
        give_to_build_user(*(paths or (self.topdir, self.dl_dir)))

    # -- paths of a recipe -----------------------------------------------------------------------

    def workdir(self, pn: str, pv: str = "1.0", pr: str = "r0") -> Path:
        """`${WORKDIR}` of a recipe (Isar: `${TMPDIR}/work/${DISTRO}-${DISTRO_ARCH}/${PN}/${PV}-${PR}`)."""
        return self.tmpdir / "work" / f"{self.distro}-{self.distro_arch}" / pn / f"{pv}-{pr}"

    def image_dir(self, pn: str, pv: str = "1.0", pr: str = "r0") -> Path:
        """`${D}` of a dpkg-raw recipe: `${S}/image` (Isar ≥ 0.11), `${WORKDIR}/image` (v0.10)."""
        workdir = self.workdir(pn, pv, pr)
        old = workdir / "image"
        return old if old.is_dir() else workdir / f"{pn}-{pv}" / "image"

    def task_log(self, pn: str, task: str, pv: str = "1.0", pr: str = "r0") -> str:
        """The latest log of `task` (`${T}/log.do_<task>`), or '' if it never ran."""
        path = self.workdir(pn, pv, pr) / "temp" / f"log.{task}"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- running ---------------------------------------------------------------------------------

    def command(self, *args: str, program: str = "bitbake") -> list[str]:
        """The argv that runs Isar's `program` (bitbake, bitbake-layers, …) in this build directory."""
        binary = self.isar / "bitbake" / "bin" / program
        # bitbake 2.0 starts `bitbake-worker` from PATH (isar-init-build-env puts bitbake/bin there).
        path = f"{binary.parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        env = {
            "HOME": str(self.home),
            "PATH": path,
            "LANG": "en_US.UTF-8",
            "LC_ALL": "en_US.UTF-8",
            "SHELL": "/bin/bash",
            **self.env,
        }
        user = build_user()
        envargs = [f"{k}={v}" for k, v in env.items()]
        if user is not None:
            envargs.append(f"USER={user}")
            return ["sudo", "-n", "-u", user, "-H", "env", "-i", *envargs, str(binary), *args]
        return ["env", "-i", *envargs, f"USER={pwd.getpwuid(os.getuid()).pw_name}", str(binary), *args]

    def bitbake(
        self, *args: str, timeout: float = BITBAKE_TIMEOUT, program: str = "bitbake"
    ) -> BitbakeResult:
        """Run Isar's bitbake with `args` in this build directory (as the build user).

        The output goes to a file (knotty waits on a terminal otherwise) and is returned with the
        tasks it executed. Never raises for a failed build: see `BitbakeResult.check()`.
        """
        self.write_conf()
        self._own()
        layer = "none"
        if self.cl_layer is not None:
            origin = _LAYER_ORIGIN.get(self.cl_layer)
            layer = f"{origin} (as a copy the build user owns)" if origin else str(self.cl_layer)
        coverage.record("isar", ref=describe_checkout(self.isar), machine=self.machine, layer=layer)
        log = self.topdir / f"bitbake-{os.getpid()}.out"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                self.command(*args, program=program),
                cwd=self.topdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            returncode = self._wait(proc, log, args, timeout)
        output = log.read_text(errors="replace")
        return BitbakeResult(tuple(args), returncode, output, parse_tasks(output))

    def _wait(self, proc: subprocess.Popen[bytes], log: Path, args: tuple[str, ...], timeout: float) -> int:
        """Wait for bitbake; fail fast when its UI's event thread died (the client then hangs forever)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return proc.wait(2)
            except subprocess.TimeoutExpired:
                pass
            text = log.read_text(errors="replace")
            m = _UI_DEAD.search(text)
            if m or time.monotonic() > deadline:
                self._kill(proc)
                why = (
                    "bitbake's UI could not read an event from the server and hangs "
                    f"({m['error'].strip()}: an event or log record carries an object of a module "
                    "the UI process cannot import)"
                    if m
                    else f"bitbake did not finish in {timeout} s"
                )
                raise IsarError(f"bitbake {' '.join(args)}: {why}\n{text[-4000:]}")

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop a bitbake that hangs: its session, and the server that holds bitbake.lock."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        lock = self.topdir / "bitbake.lock"
        if lock.exists():
            first = lock.read_text().split()
            if first and first[0].isdigit():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(first[0]), 15)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()

    def variables(self, pn: str | None = None) -> dict[str, str]:
        """`bitbake -e [pn]`: the final values of plain variables (not functions)."""
        result = self.bitbake("-e", *([pn] if pn else []))
        result.check()
        found: dict[str, str] = {}
        for line in result.output.splitlines():
            m = _ENV_LINE.match(line)
            if m:
                found[m["name"]] = m["value"]
        return found

    def image_list(self, pn: str) -> list[list[str]]:
        """`${D}/usr/share/<pn>/image.list` of a loader recipe, split into columns."""
        path = self.image_dir(pn) / "usr" / "share" / pn / "image.list"
        return [line.split() for line in path.read_text().splitlines() if line.strip()]

    def cli_wrapper(self) -> Path:
        """This project's CLI for the build user (CONTAINER_LOCK_SBOM_CLI): `staged_cli()`."""
        return staged_cli()


def loader_recipe(engine: str, *urls: str, extra: str = "") -> str:
    """The body of a `docker-loader`/`podman-loader` recipe with `urls` in SRC_URI."""
    lines = [f"inherit {engine}-loader", *(f'SRC_URI += "{url}"' for url in urls)]
    return "\n".join(lines) + "\n" + extra


def docker_url(host: str, repository: str, tag: str, digest: str | None = None) -> str:
    """`docker://host/repository;tag=…[;digest=…]`."""
    return f"docker://{host}/{repository};tag={tag}" + (f";digest={digest}" if digest else "")


def unpacked_records(workdir: Path) -> list[dict[str, object]]:
    """The facts (`container-lock.json`) of every image do_unpack placed under `${WORKDIR}`."""
    return [json.loads(p.read_text()) for p in sorted(workdir.glob("container-images/*/container-lock.json"))]


def same_package_recipe_extra(bpn: str) -> str:
    """Recipe lines that make a second recipe (its own PN, e.g. `<bpn>-v2`) build the Debian
    package `bpn`: a device update carried by the same build. dpkg-raw names its install list
    after PN; with PN != BPN, Isar builds from the source package of BPN fetched from isar-apt
    (do_fetch_common_source): here the recipe builds its own source instead."""
    return (
        f'BPN = "{bpn}"\n'
        "do_prepare_build:append() {\n"
        "    mv ${S}/debian/${PN}.install ${S}/debian/${BPN}.install\n"
        "}\n"
        "do_fetch_common_source() {\n"
        "    :\n"
        "}\n"
        "addtask dpkg_build after do_dpkg_source\n"
    )
