"""The layer costs no re-parse: once BitBake's caches are warm, `bitbake -p` parses 0 recipes.

Per OE release, two build directories, identical but for the layer in BBLAYERS, each parsed three
times in a row. The configuration masks OE-Core's recipes (tests/harness/oe.py), so a parse takes
seconds, yet BitBake decides about its parse cache as for a full parse: by the hash of the whole
configuration (OE-Core's and the layer's, the global class included) and by each recipe's file
dependencies. The test layer's recipes take every parse-time path of the layer: a pinned URL, a
tag-only URL pinned from CONTAINER_LOCKFILE (the lockfile becomes a parse dependency), and a
tag-only URL in strict mode (a note written under TMPDIR while parsing).

BitBake 2.18 (wrynose) parses every recipe twice in a new build directory: its configuration hash
covers what the codeparser found in OE-Core's Python modules (`moddep[...]` in
`DataSmart.get_hash`), whose `var_execs` are filled by a real parse but left empty when the
codeparser cache (`${TOPDIR}/cache/bb_codeparser.dat`) answers; the first run has no such cache,
so its parse cache is keyed by a hash that no later run computes. It does so without the layer
too, which is what this test compares: the layer may add no parse to what BitBake does without it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from containerlock.lock import lockfile
from tests.harness.bbparse import parse_counts
from tests.harness.oe import (
    BuildUser,
    OEBuild,
    check_host_tools,
    layer_under_test,
    new_workdir,
    oe_tree,
    selected_releases,
)

HOST = "127.0.0.1:5000"  # never contacted: the test only parses
DIGEST = "sha256:" + "1" * 64
LOCKED = "sha256:" + "2" * 64
RUNS = 3


def _recipes(build: OEBuild, with_layer: bool) -> None:
    urls = {
        "cl-parse-pinned": f"docker://{HOST}/parse/pinned;tag=1;digest={DIGEST}",
        "cl-parse-locked": f"docker://{HOST}/parse/locked;tag=1",
        "cl-parse-unpinned": f"docker://{HOST}/parse/unpinned;tag=1",
    }
    # Without the layer OE has no docker:// fetcher: the same recipes with an empty SRC_URI.
    for name, url in urls.items():
        build.write_recipe(name, [url] if with_layer else [])


@pytest.fixture(scope="module", params=selected_releases())
def parse_counts_per_layer(request: pytest.FixtureRequest) -> Iterator[dict[str, list[int]]]:
    """Recipes parsed by each of three `bitbake -p` runs, with and without the layer."""
    check_host_tools()
    user = BuildUser.for_this_process()
    workdir = new_workdir(user)
    try:
        tree = oe_tree(request.param, workdir / "oe", user)
        lock = workdir / "lock" / "container-lock.json"
        lock.parent.mkdir()
        lockfile.record(lock, f"{HOST}/parse/locked:1", LOCKED, None, None)
        user.own(lock.parent)
        counts: dict[str, list[int]] = {}
        for variant in ("with", "without"):
            layer = layer_under_test()
            build = OEBuild(tree, workdir / variant, user, layer)
            if variant == "without":
                conf = build.topdir / "conf" / "bblayers.conf"
                conf.write_text(conf.read_text().replace(f"    {layer} \\\n", ""))
            _recipes(build, variant == "with")
            # OE's distro sets BB_STRICT_CHECKSUM = "1": the tag-only recipe is noted at parse.
            build.configure("qemuarm64", variables={"CONTAINER_LOCKFILE": str(lock)})
            counts[variant] = []
            for _ in range(RUNS):
                run = build.bitbake("-p")
                assert run.ok and not run.errors(), run.describe()
                counts[variant].append(parse_counts(run.output).parsed)
            if variant == "with":
                src_uri = build.recipe_vars("cl-parse-locked", "SRC_URI")["SRC_URI"]
                assert f"digest={LOCKED}" in src_uri, "the lockfile did not pin the recipe at parse"
                notes = list((build.tmpdir / "container-lock" / "strict").glob("*.json"))
                assert len(notes) == 1, f"strict notes written at parse: {notes}"
        yield counts
    finally:
        if not os.environ.get("OE_KEEP_BUILD"):
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.oe
def test_layer_adds_no_reparse(parse_counts_per_layer: dict[str, list[int]]) -> None:
    """After the first parse, the layer's build parses exactly what the same build without it does."""
    counts = parse_counts_per_layer
    assert counts["with"][0] == counts["without"][0] > 0, counts
    assert counts["with"][1:] == counts["without"][1:], f"the layer makes BitBake re-parse: {counts}"


@pytest.mark.oe
def test_warm_parse_parses_nothing(parse_counts_per_layer: dict[str, list[int]]) -> None:
    """Once BitBake's caches are warm (third run, after wrynose's own second parse), 0 recipes parse."""
    assert parse_counts_per_layer["with"][-1] == 0, parse_counts_per_layer


def test_parse_counts_reads_both_summaries() -> None:
    """The counter reads knotty's summary of a parse and the line of a fully cached one."""
    parsed = "Parsing of 951 .bb files complete (0 cached, 951 parsed). 1972 targets, 59 skipped"
    assert parse_counts(f"Loading cache...done.\n{parsed}\n").parsed == 951
    assert parse_counts("Loading cache...done.\nLoaded 1972 entries from dependency cache.\n").parsed == 0
    with pytest.raises(ValueError):
        parse_counts("ERROR: no configuration\n")
