"""The README demo: loopback registry → pin (lockfile) → strict build → .deb → SBOM → podman → run
→ the packaged service answers.

Run it with `bash .ci/demo` (which installs what is needed first), or
`.venv/bin/python -m tests.demo [--keep DIR]`. It uses the demo layer
(meta/demo: recipes demo-docker-img and demo-podman-img) through real BitBake.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.harness import pkgdbs
from tests.harness.bitbake import PACKAGE_TASKS, PROJECT_LAYER, TEST_CORE_LAYER, BuildDir
from tests.harness.containers_conf import write_registries_conf
from tests.harness.images import ImageFactory, base_files
from tests.harness.podman import PODMAN, RUN_OPTIONS, Podman
from tests.harness.registry import Registry

DEMO_LAYER = PROJECT_LAYER / "demo"
_TOOL_BASE = {
    **base_files("demo/tool"),
    "etc/os-release": pkgdbs.os_release("Debian GNU/Linux 12 (bookworm)", "debian", "12"),
    "var/lib/dpkg/status": pkgdbs.dpkg_status(
        {"Package": "base-files", "Version": "12.4+deb12u5", "Architecture": "amd64"},
        {"Package": "libssl3", "Version": "3.0.11-1~deb12u1", "Architecture": "amd64", "Source": "openssl"},
    ),
}
TOOL_LAYERS = [
    _TOOL_BASE,
    {  # the security update, in a layer of its own
        "var/lib/dpkg/status": pkgdbs.dpkg_status(
            {"Package": "base-files", "Version": "12.4+deb12u5", "Architecture": "amd64"},
            {
                "Package": "libssl3",
                "Version": "3.0.15-1~deb12u1",
                "Architecture": "amd64",
                "Source": "openssl",
            },
        ),
        "usr/lib/python3/dist-packages/demo_tool-2.1.dist-info/METADATA": pkgdbs.python_metadata(
            "demo-tool", "2.1", "MIT"
        ),
    },
]


def step(title: str) -> None:
    """A section heading: bold on a terminal, plain when piped or with NO_COLOR."""
    bold = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    print(f"\n\033[1m== {title}\033[0m" if bold else f"\n== {title}", flush=True)


def quietly(action, *args):
    """Run `action`, keeping skopeo's per-blob chatter off the terminal."""
    sys.stdout.flush()  # what was printed so far must not end up in /dev/null
    with open(os.devnull, "w") as devnull:
        saved = os.dup(1)
        os.dup2(devnull.fileno(), 1)
        try:
            return action(*args)
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def cli(*args: str) -> None:
    """Run the real `container-lock` command and show it."""
    print("   $ container-lock " + " ".join(args))
    result = subprocess.run([sys.executable, "-m", "audit", *args], capture_output=True, text=True)
    for line in (result.stdout + result.stderr).rstrip().splitlines():
        print("   " + line)
    print(f"   (exit {result.returncode})")


# The next release of demo/tool 2.1 (the tag moves): a layer on top upgrades openssl again, adds
# curl and a newer demo-tool.
NEXT_TOOL_LAYER = {
    "var/lib/dpkg/status": pkgdbs.dpkg_status(
        {"Package": "base-files", "Version": "12.4+deb12u5", "Architecture": "amd64"},
        {"Package": "curl", "Version": "7.88.1-10+deb12u8", "Architecture": "amd64"},
        {"Package": "libssl3", "Version": "3.0.16-1~deb12u1", "Architecture": "amd64", "Source": "openssl"},
    ),
    "usr/lib/python3/dist-packages/.wh.demo_tool-2.1.dist-info": b"",  # an OCI whiteout: 2.1 removed
    "usr/lib/python3/dist-packages/demo_tool-2.2.dist-info/METADATA": pkgdbs.python_metadata(
        "demo-tool", "2.2", "MIT"
    ),
}


# demo/web: Debian's static busybox serving WEB_PAGE (the image's command, /bin/hello, starts it).
BUSYBOX = Path("/bin/busybox")
WEB_PAGE = b"hello from the demo/web service, run by its pinned image ID\n"
# What `podman run` needs on this machine only (DEVELOPERS.md; not on a device), as
# tests/test_services.py adds them: the unit's own networking (--network host) stays.
TEST_RUN_OPTIONS = ("--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def web_files(port: int) -> dict[str, bytes]:
    """demo/web's layer: busybox httpd on 127.0.0.1:`port` serving /www."""
    if not BUSYBOX.is_file():
        raise SystemExit(f"{BUSYBOX} is missing: install busybox-static (bash .ci/setup-demo does)")
    start = f"#!/bin/busybox sh\nexec /bin/busybox httpd -f -p 127.0.0.1:{port} -h /www\n"
    return {
        **base_files("demo/web"),
        "bin/busybox": BUSYBOX.read_bytes(),
        "bin/hello": start.encode(),
        "www/index.html": WEB_PAGE,
    }


def unit_command(unit: str, key: str, runtime: Path, name: str) -> list[str]:
    """An Exec line of a unit as systemd runs it: split, a leading `-` dropped, the specifiers
    %t (runtime directory), %n (unit name) and %% expanded, `$$` made `$`."""
    line = next(x for x in unit.splitlines() if x.startswith(f"{key}="))
    specifiers = {"t": str(runtime), "n": name, "%": "%"}
    words = shlex.split(line.split("=", 1)[1].lstrip("-"))
    return [re.sub(r"%(.)", lambda m: specifiers[m[1]], w).replace("$$", "$") for w in words]


def run_unit_command(podman: Podman, words: list[str]) -> subprocess.CompletedProcess[str]:
    """A podman command of the unit on the demo's store, with TEST_RUN_OPTIONS after `run`."""
    if words[0] != "/usr/bin/podman":
        raise SystemExit(f"the unit runs {words[0]}, not podman")
    args = words[1:]
    if args[0] == "run":
        args = ["run", *TEST_RUN_OPTIONS, *args[1:]]
    return subprocess.run(
        [PODMAN, *podman.options, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "CONTAINERS_STORAGE_CONF": str(podman.storage_conf)},
        timeout=120,
    )


def ask(url: str, timeout: float = 60.0) -> bytes:
    """GET `url`, retrying until it answers (the service is starting) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def serve(podman: Podman, root: Path, workdir: Path, port: int) -> None:
    """Start web.service's container as systemd would (ExecStartPre, ExecStart), ask it over HTTP
    from the host, then stop it (ExecStop, ExecStopPost)."""
    unit = (root / "lib" / "systemd" / "system" / "web.service").read_text()
    runtime = workdir / "run"
    runtime.mkdir(exist_ok=True)
    print("   /lib/systemd/system/web.service:")
    for line in unit.splitlines():
        if line.startswith(("After=", "Requires=", "ExecStart=", "Restart=")):
            print(f"      {line}")
    subprocess.run(unit_command(unit, "ExecStartPre", runtime, "web.service"), check=True)
    started = run_unit_command(podman, unit_command(unit, "ExecStart", runtime, "web.service"))
    try:
        if started.returncode != 0:
            raise SystemExit(f"web.service's ExecStart failed: {started.stderr}")
        url = f"http://127.0.0.1:{port}/index.html"
        answer = ask(url).decode()
        print(f"   $ curl {url}\n   {answer.rstrip()}")
    finally:
        for key in ("ExecStop", "ExecStopPost"):
            run_unit_command(podman, unit_command(unit, key, runtime, "web.service"))
    left = podman("ps", "--all", "--quiet").stdout.strip()
    print(f"   stopped and removed: {'yes' if not left else 'no, ' + left}")


def pinned_digest(recipe: Path) -> str:
    return recipe.read_text().split(";digest=")[1].split('"')[0]


def run(workdir: Path) -> None:
    step("Start a loopback OCI registry (Debian's docker-registry)")
    registry = Registry(workdir / "registry").start()
    podman = Podman(workdir / "podman")
    try:
        home = workdir / "home"
        write_registries_conf(home, insecure=[registry.host])
        os.environ["HOME"] = str(home)
        print(f"   {registry.host}; {home}/.config/containers/registries.conf marks it plain-HTTP")

        step("Generate and push images (deterministic digests; demo/web's names the port it serves on)")
        factory = ImageFactory(workdir / "images", registry.host)
        hello = factory.multi_arch("demo/hello", tag="1.0")
        # demo/tool carries package databases (a base layer, then an upgrade), so the SBOM can list
        # what is inside it; demo/hello stays as meta/demo pins it.
        tool = factory.layered("demo/tool", TOOL_LAYERS, tag="2.1")
        # demo/web: the service. It runs on the host's network (the recipe's ARGS), so it serves on a
        # port free here, which its layer names.
        port = free_port()
        web = factory.single_arch("demo/web", tag="1.0", files=web_files(port))
        for image in (hello, tool, web):
            print(f"   {image.reference}  {image.digest}\n      platforms: {', '.join(image.platforms)}")
        recipes = DEMO_LAYER / "recipes-demo" / "prebuilt-containers"
        if pinned_digest(recipes / "demo-docker-img_1.0.bb") != hello.digest:
            raise SystemExit("demo-docker-img pins another digest than the generated image has")

        build = BuildDir(workdir / "build", layers=[TEST_CORE_LAYER, PROJECT_LAYER, DEMO_LAYER])
        build.set(
            DL_DIR=str(workdir / "downloads"),
            TMPDIR=str(workdir / "build" / "tmp"),
            CONTAINER_DEMO_REGISTRY=registry.host,
        )

        step("container-lock check: what is not pinned yet (policy 'default')")
        define = f"CONTAINER_DEMO_REGISTRY={registry.host}"
        cli("check", str(DEMO_LAYER), "-D", define)

        step("demo-podman-img: an unpinned URL builds with a warning that says what to pin")
        quietly(build.run, recipes / "demo-podman-img_1.0.bb", "do_fetch")
        for message in build.events.messages(logging.WARNING):
            print("   WARNING: " + message.replace("\n", "\n   "))

        step("Pin: container-lock update → the lockfile")
        lock = workdir / "container-lock.json"
        cli("update", str(DEMO_LAYER), "--lockfile", str(lock), "-D", define)
        print("   " + lock.read_text().replace("\n", "\n   ").rstrip())

        step("Strict build (BB_STRICT_CHECKSUM = 1, CONTAINER_LOCKFILE), then offline: → .deb")
        build.set(BB_STRICT_CHECKSUM="1", CONTAINER_LOCKFILE=str(lock))
        debs = []
        for name in ("demo-docker-img", "demo-podman-img"):
            build.set(BB_NO_NETWORK="0")
            quietly(build.run, recipes / f"{name}_1.0.bb", "do_fetch")
            build.set(BB_NO_NETWORK="1")
            mark = registry.mark()
            d = quietly(build.run, recipes / f"{name}_1.0.bb", *PACKAGE_TASKS)
            deb = next(Path(d.getVar("WORKDIR")).glob("*.deb"))
            debs.append(deb)
            depends = subprocess.run(
                ["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True, check=True
            ).stdout.strip()
            print(
                f"   {deb.name}: {deb.stat().st_size} bytes, Depends: {depends}; "
                f"{len(registry.requests(mark))} registry requests offline"
            )
            manifest = json.loads((Path(d.getVar("WORKDIR")) / "container-lock-manifest.json").read_text())
            for image in manifest["images"]:
                print(f"      {image['file']} ({image['compression']}, {image['file_size']} bytes)")
                name_tag = f"{image['reference']}:{image['tag']}"
                print(f"      {name_tag} {image['platform']} image ID {image['config']}")

        step("SBOM: container-lock sbom over the build manifests (CycloneDX 1.6, schema-validated)")
        sbom_path = workdir / "container-images.cdx.json"
        cli("sbom", "--deploy-dir", str(workdir / "build" / "tmp" / "deploy"), "-o", str(sbom_path))
        sbom = json.loads(sbom_path.read_text())
        for component in sbom["components"]:
            print(f"   {component['type']:<11} {component['purl']}")
            for nested in component.get("components", []):
                if nested["type"] == "container":
                    print(f"     variant   {nested['purl']}")
            for package in (c for c in component.get("components", []) if c["type"] == "library"):
                layer = next(p["value"] for p in package["properties"] if p["name"] == "container-lock:layer")
                print(f"     package   {package['purl']}  (layer {layer[:19]}…)")

        step("Target: install the .debs into a temp root, run their loaders (docker → podman shim)")
        root = workdir / "target"
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        for name in ("demo-docker-img", "demo-podman-img"):
            loader = root / "usr" / "share" / name / "container-loader.sh"
            for attempt in ("first boot", "second boot"):
                result = subprocess.run([str(loader)], capture_output=True, text=True, env=podman.env())
                said = "\n      ".join(result.stderr.strip().splitlines())
                print(f"   {name}, {attempt}: exit {result.returncode}\n      {said}")
        print(f"   podman images: {', '.join(sorted(podman.names()))}")

        step("Run the loaded image")
        ran = podman("run", "--rm", *RUN_OPTIONS, hello.reference, "/bin/hello")
        print(f"   $ podman run {hello.reference} /bin/hello\n   {ran.stdout.strip()}")

        step("Start demo-podman-img's service as its unit does (no systemd here: its Exec lines)")
        serve(podman, root, workdir, port)

        step("Next release: demo/tool:2.1 moves; update --diff says what the re-pin brings")
        tool = factory.layered("demo/tool", [*TOOL_LAYERS, NEXT_TOOL_LAYER], tag="2.1")
        print(f"   {tool.reference} now {tool.digest}")
        before = workdir / "container-lock.before.json"
        shutil.copyfile(lock, before)
        mark = registry.mark()
        downloads = workdir / "downloads"
        cli(
            "update",
            str(DEMO_LAYER),
            "--lockfile",
            str(lock),
            "-D",
            define,
            "--diff",
            "--dl-dir",
            str(downloads),
        )
        layers = [layer.digest for layer in tool.platforms["linux/amd64"].layers]
        fetched = {g.digest for g in registry.blob_gets(mark)} & set(layers)
        print(
            f"   layers downloaded for the diff: {len(fetched)} of {len(layers)} (the others were in DL_DIR)"
        )

        step("container-lock diff of the two lock states (images only; SBOMs give packages too)")
        cli("diff", str(before), str(lock))
    finally:
        podman.close()
        registry.stop()


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
