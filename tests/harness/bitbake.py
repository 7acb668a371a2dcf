"""Drive real BitBake (`bb` from bitbake-setup) in-process: parse, sign, run tasks."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE / "stubs"))  # hashserv stand-in, see stubs/hashserv

import bb  # noqa: E402
import bb.build  # noqa: E402
import bb.cache  # noqa: E402
import bb.cookerdata  # noqa: E402
import bb.data  # noqa: E402
import bb.event  # noqa: E402
import bb.parse  # noqa: E402
import bb.runqueue  # noqa: E402
import bb.siggen  # noqa: E402
import bb.utils  # noqa: E402

REPO = _HERE.parent.parent
PROJECT_LAYER = REPO / "meta"
TEST_CORE_LAYER = REPO / "tests" / "layers" / "core"

# The loader recipe's tasks up to the payload in ${D}, and on to the .deb (test dpkg-raw stand-in).
PAYLOAD_TASKS = (
    "do_fetch",
    "do_unpack",
    "do_container_inventory",
    "do_install",
    "do_install_fetched_containers",
)
PACKAGE_TASKS = (
    *PAYLOAD_TASKS,
    "do_deploy_container_manifest",
    "do_container_services",
    "do_prepare_build",
    "do_dpkg_build",
)


@dataclass
class _CookerConfig:
    """The subset of bb.cooker.CookerConfiguration that CookerDataBuilder reads."""

    env: dict[str, str]
    prefile: list[str] = field(default_factory=list)
    postfile: list[str] = field(default_factory=list)
    tracking: bool = False
    skip_fragments: bool = True


class EventRecorder(logging.Handler):
    """Collects what BitBake reports in this process: fired events and log records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.events: list[Any] = []
        self.records: list[logging.LogRecord] = []
        logging.getLogger("BitBake").addHandler(self)

    def __call__(self, event: Any, d: Any = None) -> None:
        self.events.append(event)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def of_type(self, cls: type) -> list[Any]:
        """Fired events of one class."""
        return [e for e in self.events if isinstance(e, cls)]

    def messages(self, level: int = logging.WARNING) -> list[str]:
        """Log messages at exactly `level` (WARNING by default)."""
        return [r.getMessage() for r in self.records if r.levelno == level]

    def clear(self) -> None:
        self.events.clear()
        self.records.clear()

    def close(self) -> None:
        logging.getLogger("BitBake").removeHandler(self)
        super().close()


class BuildDir:
    """A BitBake build directory: conf/bblayers.conf + conf/local.conf, layers and recipes.

    Every parse builds the configuration afresh (as a new bitbake process
    would), so a test can change local.conf between steps.
    """

    def __init__(self, topdir: Path, layers: list[Path] | None = None) -> None:
        self.topdir = topdir
        self.layers = layers or [TEST_CORE_LAYER, PROJECT_LAYER]
        self.recipes = topdir / "recipes"
        self.local_conf: dict[str, str] = {}
        self.extra_conf = ""
        self.events = EventRecorder()
        (topdir / "conf").mkdir(parents=True, exist_ok=True)
        self.recipes.mkdir(exist_ok=True)

    # -- files -----------------------------------------------------------------------------

    def set(self, **variables: str) -> None:
        """Set local.conf variables (`VAR = "value"`)."""
        self.local_conf.update(variables)

    def write_recipe(self, name: str, body: str) -> Path:
        """Write `recipes/<name>.bb`."""
        path = self.recipes / f"{name}.bb"
        path.write_text(body)
        return path

    def _write_conf(self) -> None:
        layers = " ".join(str(p) for p in self.layers)
        (self.topdir / "conf" / "bblayers.conf").write_text(
            f'BBPATH = "{self.topdir}"\nBBFILES ?= ""\nBBLAYERS = "{layers}"\n'
        )
        lines = [f'{k} = "{v}"' for k, v in sorted(self.local_conf.items())]
        (self.topdir / "conf" / "local.conf").write_text("\n".join(lines) + "\n" + self.extra_conf)

    # -- parsing ---------------------------------------------------------------------------

    def parse_config(self) -> bb.cookerdata.CookerDataBuilder:
        """Parse bblayers.conf, every layer.conf, bitbake.conf, base.bbclass (as the cooker does)."""
        self._write_conf()
        env = {k: v for k, v in os.environ.items()}
        env["BBPATH"] = str(self.topdir)
        cwd = os.getcwd()
        os.chdir(self.topdir)
        try:
            builder = bb.cookerdata.CookerDataBuilder(_CookerConfig(env=env), worker=False)
            builder.parseBaseConfiguration()
        finally:
            os.chdir(cwd)
        bb.event.register("container_lock_test_recorder", self.events, data=builder.data)
        bb.parse.siggen = bb.siggen.init(builder.data)
        return builder

    def parse(self, recipe: Path) -> Any:
        """Parse one recipe with a fresh configuration; returns its datastore."""
        builder = self.parse_config()
        d = builder.parseRecipe(str(recipe), [], "")
        d.setVar("BB_FILENAME", str(recipe))
        return d

    def basehashes(self, recipe: Path) -> dict[str, str]:
        """Task → basehash, as BitBake's signature generator computed it at parse time."""
        return dict(self.parse(recipe).getVar("__siggen_basehashes", False))

    def taskhashes(self, recipe: Path) -> dict[str, str]:
        """Task → taskhash (basehash + dependencies' hashes + file checksums), via bb.siggen."""
        d = self.parse(recipe)
        fn = str(recipe)
        info = bb.cache.CoreRecipeInfo(fn, d)
        cache = bb.cache.CacheData([bb.cache.CoreRecipeInfo])
        info.add_cacheData(cache, fn)
        siggen_info = bb.cache.SiggenRecipeInfo(fn, d)
        bb.cache.SiggenRecipeInfo.init_cacheData(cache)
        siggen_info.add_cacheData(cache, fn)
        siggen = bb.parse.siggen
        hashes: dict[str, str] = {}
        for task in _task_order(d):
            tid = f"{fn}:{task}"
            deps = [f"{fn}:{dep}" for dep in (d.getVarFlag(task, "deps") or [])]
            siggen.prep_taskhash(tid, deps, {"": cache})
            hashes[task] = siggen.get_taskhash(tid, deps, {"": cache})
        return hashes

    def start_build(self, d: Any, *recipes: Path) -> None:
        """Fire DepTreeGenerated as BitBake's runqueue does before the first task runs.

        The graph has the shape of `bb.cooker.buildDependTree`'s, limited to what
        container-lock reads: each recipe's file name and its do_fetch task. Real
        runqueues (real Isar/OE builds) are exercised by the test_isar_*/test_oe_* tiers.
        """
        graph: dict[str, dict[str, Any]] = {"pn": {}, "tdepends": {}}
        for recipe in recipes:
            pn = recipe.stem.split("_")[0]
            graph["pn"][pn] = {"filename": str(recipe)}
            graph["tdepends"][f"{pn}.do_fetch"] = []
        bb.event.fire(bb.event.DepTreeGenerated(graph), d)

    def finish_build(self, d: Any, failures: int = 0) -> None:
        """Fire BuildCompleted as BitBake does when a build ends (lock recording, the SBOM)."""
        bb.event.fire(bb.event.BuildCompleted(1, "build", ["target"], failures=failures), d)

    # -- running ---------------------------------------------------------------------------

    def run(self, recipe: Path, *tasks: str) -> Any:
        """Run tasks in order with bb.build.exec_func in a freshly parsed datastore.

        Like BitBake's worker, the recipe is parsed anew for the run. Returns the
        datastore. Raises whatever the task raises (FetchError, …).
        """
        return self.execute(self.parse(recipe), *tasks)

    def execute(self, d: Any, *tasks: str) -> Any:
        """Run tasks in order in an already parsed datastore (see `run`)."""
        real_better_exec = bb.utils.better_exec

        def better_exec_raising(*args: Any, **kwargs: Any) -> Any:
            # The worker logs a task's exception and raises BBHandledException;
            # tests want the exception itself (FetchError, NetworkAccess, …).
            kwargs["pythonexception"] = True
            return real_better_exec(*args, **kwargs)

        bb.utils.better_exec = better_exec_raising
        try:
            for task in tasks:
                d.setVar("BB_CURRENTTASK", task.removeprefix("do_"))
                bb.build.exec_func(task, d)
        finally:
            bb.utils.better_exec = real_better_exec
        return d


def _task_order(d: Any) -> list[str]:
    """The recipe's tasks, dependencies first."""
    tasks = list(d.getVar("__BBTASKS", False) or [])
    done: list[str] = []

    def visit(task: str) -> None:
        if task in done:
            return
        for dep in d.getVarFlag(task, "deps") or []:
            visit(dep)
        done.append(task)

    for task in tasks:
        visit(task)
    return done
