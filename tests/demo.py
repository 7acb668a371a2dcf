"""The README demo: a loopback registry with generated images, fetched through real BitBake.

Run it with `bash .ci/demo` (which installs what is needed first), or
`.venv/bin/python -m tests.demo [--keep DIR]`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from tests.harness.bitbake import BuildDir
from tests.harness.containers_conf import write_registries_conf
from tests.harness.images import ImageFactory
from tests.harness.registry import Registry


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m")


def show_unpacked(d) -> None:
    for facts_file in sorted(Path(d.getVar("WORKDIR")).glob("container-images/*/container-lock.json")):
        facts = json.loads(facts_file.read_text())
        print(f"   {facts['reference']}:{facts['tag']}  {facts['platform']}")
        print(f"     digest  {facts['digest']}\n     config  {facts['config']}  (= image ID)")
        print(f"     layout  {facts_file.parent}")


def run(workdir: Path) -> None:
    step("Start a loopback OCI registry (Debian's docker-registry)")
    registry = Registry(workdir / "registry").start()
    try:
        print(f"   listening on {registry.host}")
        home = workdir / "home"
        write_registries_conf(home, insecure=[registry.host])
        os.environ["HOME"] = str(home)
        print(f"   {home}/.config/containers/registries.conf marks it as plain HTTP (as a user would)")

        step("Generate and push images: a 4-platform index and a single-arch arm/v7 image")
        factory = ImageFactory(workdir / "images", registry.host)
        multi = factory.multi_arch("demo/hello", tag="1.0")
        single = factory.single_arch("demo/tool", tag="2.1", platform="linux/arm/v7")
        for image in (multi, single):
            print(f"   {image.reference}  {image.digest}  ({', '.join(image.platforms)})")

        build = BuildDir(workdir / "build")
        build.set(DL_DIR=str(workdir / "downloads"), TMPDIR=str(workdir / "build" / "tmp"))
        unpinned = f"docker://{multi.host}/{multi.repository};tag={multi.tag}"
        recipe = build.write_recipe("demo-containers_1.0", f'SRC_URI = "{unpinned}"\n')

        step("BitBake: fetch an unpinned docker:// URL (warning + MissingChecksumEvent)")
        build.run(recipe, "do_fetch")
        for message in build.events.messages(logging.WARNING):
            print("   WARNING: " + message.replace("\n", "\n   "))

        step("BitBake: strict build (BB_STRICT_CHECKSUM = 1), pinned, for armhf, offline")
        pinned = f"{unpinned};digest={multi.digest}"
        tool = f"docker://{single.host}/{single.repository};tag={single.tag};digest={single.digest}"
        recipe = build.write_recipe("demo-containers_1.0", f'SRC_URI = "{pinned} {tool}"\n')
        build.set(BB_STRICT_CHECKSUM="1", DISTRO_ARCH="armhf")
        build.run(recipe, "do_fetch")  # the index is in DL_DIR; only the armhf image's blobs are new
        build.set(BB_NO_NETWORK="1")
        mark = registry.mark()
        d = build.run(recipe, "do_fetch", "do_unpack")
        print(f"   registry requests while offline: {len(registry.requests(mark))}")
        show_unpacked(d)
    finally:
        registry.stop()

    step("DL_DIR: one verified copy of each blob, keyed by digest")
    blobs = list((workdir / "downloads" / "containers" / "blobs" / "sha256").iterdir())
    print(f"   {len(blobs)} blobs, {sum(b.stat().st_size for b in blobs)} bytes in {workdir / 'downloads'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="container-lock-demo."))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        run(workdir.resolve())
        print("\nDemo finished.")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
