"""Containers started by the OS (CONTAINER_SERVICES, issue 30 part 2), with real BitBake, registry,
podman and dockerd: bad declarations stop the parse with their message; the units run the image by
its pinned ID (a re-tag on the device changes nothing); the package's maintainer scripts start the
services after the loader and stop them before the images are released.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import bb
import pytest

from tests.harness.bitbake import PACKAGE_TASKS, BuildDir
from tests.harness.images import base_files, hello_binary, serving_binary
from tests.harness.podman import PODMAN
from tests.test_loader import install_deb, loader_recipe, run_loader

FAKE = "sha256:" + "a" * 64
URLS = (
    f"docker://reg.example:5000/team/web;tag=1.4;digest={FAKE}",
    f"docker://alpine;tag=3.19;digest={FAKE}",
)
# What `podman run` needs on these machines (tests/harness/podman.py), given as the service's ARGS.
PODMAN_TEST_ARGS = "--runtime runc --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024"


def service_recipe(build: BuildDir, name: str, body: str, engine: str = "podman") -> Path:
    urls = " ".join(URLS)
    return build.write_recipe(f"{name}_1.0", f'inherit {engine}-loader\nSRC_URI += "{urls}"\n{body}\n')


def parse_error(build: BuildDir, recipe: Path) -> str:
    with pytest.raises(bb.BBHandledException):  # what bb.fatal raises, after logging
        build.parse(recipe)
    return build.events.messages(logging.CRITICAL)[-1]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            'CONTAINER_SERVICES = "web"\nCONTAINER_SERVICE_IMAGE[web] = "reg.example:5000/team/web:1.4"\n'
            'CONTAINER_SERVICE_RESTART[web] = "sometimes"',
            ["service 'web': CONTAINER_SERVICE_RESTART[web] = 'sometimes' is not a restart policy; "
             "write always, on-failure or no"],
            id="unknown-restart",
        ),
        pytest.param(
            'CONTAINER_SERVICES = "web"\nCONTAINER_SERVICE_IMAGE[web] = "reg.example:5000/team/web:2.0"',
            ["service 'web': CONTAINER_SERVICE_IMAGE[web] = 'reg.example:5000/team/web:2.0' is not one of "
             "the recipe's docker:// references; write one of: alpine:3.19, reg.example:5000/team/web:1.4"],
            id="image-not-a-reference",
        ),
        pytest.param(
            'CONTAINER_SERVICES = "web"',
            ["service 'web': CONTAINER_SERVICE_IMAGE[web] is not set; set it to one of the recipe's "
             "references: alpine:3.19, reg.example:5000/team/web:1.4"],
            id="image-missing",
        ),
        pytest.param(
            f'CONTAINER_SERVICES = "web"\nCONTAINER_SERVICE_IMAGE[web] = "reg.example:5000/t/web@{FAKE}"',
            [f"'reg.example:5000/t/web@{FAKE}' is not a reference: write the reference as name[:tag]"],
            id="image-by-digest",
        ),
        pytest.param(
            'CONTAINER_SERVICES = "web db web"\nCONTAINER_SERVICE_IMAGE[web] = "alpine:3.19"\n'
            'CONTAINER_SERVICE_IMAGE[db] = "alpine:3.19"',
            ["service 'web' is declared twice in CONTAINER_SERVICES; name each service once"],
            id="duplicate",
        ),
        pytest.param(
            'CONTAINER_SERVICES = "my/web"\nCONTAINER_SERVICE_IMAGE[my/web] = "alpine:3.19"',
            ["service 'my/web': the name is not a valid unit and container name; use 1-63 of [A-Za-z0-9_.-]"],
            id="bad-name",
        ),
        pytest.param(
            'CONTAINER_SERVICES = "svc"\nCONTAINER_SERVICE_IMAGE[svc] = "alpine:3.19"',
            ["service 'svc': the name is the package's loader unit (svc.service); pick another"],
            id="loader-unit-name",
        ),
        pytest.param(
            'CONTAINER_SERVICES = "web"\nCONTAINER_SERVICE_IMAGE[web] = "alpine:3.19"\n'
            'CONTAINER_SERVICE_ARGS[web] = "-p 80:80 --name=other --rm --pull always"',
            [
                "CONTAINER_SERVICE_ARGS[web] sets --name: the container is named after the service",
                "CONTAINER_SERVICE_ARGS[web] sets --rm: the unit removes the container when it stops",
                "CONTAINER_SERVICE_ARGS[web] sets --pull: the unit never pulls",
            ],
            id="managed-options",
        ),
        pytest.param(
            'CONTAINER_SERVICES = "web"\nCONTAINER_SERVICE_IMAGE[web] = "alpine:3.19"\n'
            'CONTAINER_SERVICE_ARGS[web] = "-p 80:80 reg.example:5000/team/web:1.4"',
            ["CONTAINER_SERVICE_ARGS[web] names the image 'reg.example:5000/team/web:1.4': the unit runs "
             "CONTAINER_SERVICE_IMAGE[web] by its ID"],
            id="args-name-the-image",
        ),
        pytest.param(
            'CONTAINER_SERVICES = "web"\nCONTAINER_SERVICE_IMAGE[web] = "alpine:3.19"\n'
            "CONTAINER_SERVICE_ARGS[web] = \"-e 'A=1\"",
            ["CONTAINER_SERVICE_ARGS[web] cannot be split into words: No closing quotation"],
            id="args-unquoted",
        ),
        pytest.param(
            'CONTAINER_SERVICES = "web"\nCONTAINER_SERVICE_IMAGE[web] = "alpine:3.19"\n'
            'CONTAINER_PODMAN_QUADLET = "yes"',
            ["CONTAINER_PODMAN_QUADLET = 'yes': write auto, 1 or 0"],
            id="quadlet-setting",
        ),
    ],
)  # fmt: skip
def test_bad_declaration_stops_the_parse_with_its_message(build, body, expected) -> None:
    recipe = service_recipe(build, "svc", body)
    message = parse_error(build, recipe)
    assert message.startswith(f"{recipe} (svc): "), message  # the recipe file and its PN
    for text in expected:
        assert text in message, message


def test_good_declarations_parse_by_the_reference_as_written_or_normalised(build) -> None:
    body = (
        'CONTAINER_SERVICES = "web db"\n'
        'CONTAINER_SERVICE_IMAGE[web] = "reg.example:5000/team/web:1.4"\n'
        "CONTAINER_SERVICE_ARGS[web] = \"-p 8080:80 -e 'GREETING=hi there'\"\n"
        'CONTAINER_SERVICE_RESTART[web] = "on-failure"\n'
        'CONTAINER_SERVICE_IMAGE[db] = "docker.io/library/alpine:3.19"'
    )
    d = build.parse(service_recipe(build, "good", body))
    spec = d.getVar("CONTAINER_SERVICES_SPEC")
    assert '"image": "reg.example:5000/team/web:1.4"' in spec and '"restart": "on-failure"' in spec
    assert '"args": ["-p", "8080:80", "-e", "GREETING=hi there"]' in spec
    assert '"image": "docker.io/library/alpine:3.19"' in spec and '"restart": "always"' in spec
    assert build.events.messages(logging.CRITICAL) == []


@pytest.mark.parametrize(
    ("release", "setting", "quadlet"),
    [("bookworm", "auto", False), ("trixie", "auto", True), ("bookworm", "1", True), ("trixie", "0", False)],
)
def test_podman_unit_form_follows_the_release(build, release, setting, quadlet) -> None:
    build.set(DISTRO_CODENAME=release, CONTAINER_PODMAN_QUADLET=setting)
    body = 'CONTAINER_SERVICES = "web"\nCONTAINER_SERVICE_IMAGE[web] = "alpine:3.19"'
    d = build.parse(service_recipe(build, "form", body))
    assert f'"quadlet": {"true" if quadlet else "false"}' in d.getVar("CONTAINER_SERVICES_SPEC")
    docker = build.parse(service_recipe(build, "dform", body, engine="docker"))
    assert '"quadlet": false' in docker.getVar("CONTAINER_SERVICES_SPEC")  # docker: never Quadlet


def test_args_change_only_the_unit_task_signature(build) -> None:
    body = 'CONTAINER_SERVICES = "web"\nCONTAINER_SERVICE_IMAGE[web] = "alpine:3.19"\n'
    recipe = service_recipe(build, "sig", body + 'CONTAINER_SERVICE_ARGS[web] = "-p 80:80"')
    before = build.taskhashes(recipe)
    recipe = service_recipe(build, "sig", body + 'CONTAINER_SERVICE_ARGS[web] = "-p 81:80"')
    after = build.taskhashes(recipe)
    assert before["do_install_fetched_containers"] == after["do_install_fetched_containers"]
    assert before["do_container_services"] != after["do_container_services"]
    assert before["do_prepare_build"] != after["do_prepare_build"]


# -- units from a real fetch and package ------------------------------------------------------------


def hello_image(image_factory, repository: str, message: bytes, tag: str = "1.0"):
    files = {**base_files(repository), "bin/hello": hello_binary(message)}
    return image_factory.single_arch(repository, tag=tag, files=files)


def config_hex(image) -> str:
    return image.platforms["linux/amd64"].config_digest.split(":")[1]


def exec_words(unit: str, key: str, runtime_dir: Path, unit_name: str) -> list[str]:
    """An Exec line of a unit as systemd runs it: split (systemd quoting is a subset of the shell's
    here), specifiers expanded (%t, %n, %%; another one is an error here), `$$` made `$` and
    `$NAME`/`${NAME}` replaced by the unit's environment (none: empty), as systemd does."""
    line = next(x for x in unit.splitlines() if x.startswith(f"{key}="))
    specifiers = {"t": str(runtime_dir), "n": unit_name, "%": "%"}

    def specifier(m: re.Match[str]) -> str:
        if m[1] not in specifiers:
            raise AssertionError(f"{key}: specifier %{m[1]} in {line!r}")
        return specifiers[m[1]]

    out = []
    for word in shlex.split(line.split("=", 1)[1].lstrip("-")):
        word = re.sub(r"%(.?)", specifier, word)
        out.append(re.sub(r"\$\$|\$\{\w+\}|\$\w+", lambda m: "$" if m[0] == "$$" else "", word))
    return out


def verify_unit(root: Path, name: str) -> None:
    """systemd's own check of a unit (`systemd-analyze verify`, the package's units on the unit
    path): it says nothing about a unit it reads as written."""
    units = root / "lib/systemd/system"
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(units / name)],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:"},
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (0, ""), done.stderr


def built(build: BuildDir, tmp_path: Path, name: str, image, engine: str, extra: str) -> Path:
    d = build.run(loader_recipe(build, name, image, engine=engine, extra=extra), *PACKAGE_TASKS)
    root = tmp_path / "target"
    install_deb(d, root)
    return root


def test_podman_unit_runs_the_pinned_id_even_after_a_retag(build, tmp_path, image_factory, podman) -> None:
    a = hello_image(image_factory, "services/web", b"service image A\n")
    b = hello_image(image_factory, "services/other", b"service image B\n")
    log = tmp_path / "web.log"
    extra = (
        'CONTAINER_SERVICES = "web"\n'
        f'CONTAINER_SERVICE_IMAGE[web] = "{a.reference}"\n'
        f'CONTAINER_SERVICE_ARGS[web] = "{PODMAN_TEST_ARGS} --log-driver k8s-file --log-opt path={log}"\n'
        'CONTAINER_SERVICE_RESTART[web] = "on-failure"\n'
        'CONTAINER_PODMAN_QUADLET = "0"'
    )
    root = built(build, tmp_path, "websvc", a, "podman", extra)
    unit = (root / "lib/systemd/system/web.service").read_text()
    assert "After=network-online.target websvc.service\n" in unit  # podman: no engine daemon
    assert "Requires=websvc.service\n" in unit and "Restart=on-failure\n" in unit
    start = next(x for x in unit.splitlines() if x.startswith("ExecStart="))
    assert start.endswith(f" {config_hex(a)}") and a.reference not in start
    assert " --pull=never --name web " in start and " --rm " in start
    verify_unit(root, "web.service")

    loaded = run_loader(root / "usr/share/websvc", podman)
    assert loaded.returncode == 0, loaded.stderr
    runtime = tmp_path / "run"
    runtime.mkdir()

    def start_service() -> str:
        log.unlink(missing_ok=True)
        pre = exec_words(unit, "ExecStartPre", runtime, "web.service")
        assert pre == ["/bin/rm", "-f", f"{runtime}/web.service.ctr-id"]
        subprocess.run(pre, check=True)
        words = exec_words(unit, "ExecStart", runtime, "web.service")
        assert words[0] == "/usr/bin/podman"
        ran = subprocess.run(
            [PODMAN, *podman.options, *words[1:]],
            capture_output=True,
            text=True,
            env={**os.environ, "CONTAINERS_STORAGE_CONF": str(podman.storage_conf)},
            timeout=120,
        )
        assert ran.returncode == 0, ran.stderr
        for _ in range(300):  # the container writes its line and exits (--rm removes it)
            if log.is_file() and "service image" in log.read_text():
                break
            time.sleep(0.1)
        stop = exec_words(unit, "ExecStopPost", runtime, "web.service")
        subprocess.run(
            [PODMAN, *podman.options, *stop[1:]], env=podman.env(), capture_output=True, timeout=60
        )
        return log.read_text()

    assert "service image A" in start_service()
    podman("pull", "--tls-verify=false", b.reference)
    podman("tag", b.reference, a.reference)  # someone re-tags the reference on the device
    assert podman.image_id(a.reference) == config_hex(b)
    out = start_service()
    assert "service image A" in out and "service image B" not in out
    assert podman("ps", "--all", "--quiet").stdout == ""  # the stopped containers are removed


def test_quadlet_file_names_the_pinned_id(build, tmp_path, image_factory) -> None:
    a = hello_image(image_factory, "services/quad", b"quadlet\n")
    extra = (
        'CONTAINER_SERVICES = "web"\n'
        f'CONTAINER_SERVICE_IMAGE[web] = "{a.reference}"\n'
        "CONTAINER_SERVICE_ARGS[web] = \"-p 8080:80 -e 'MOTD=50% off'\"\n"
        'CONTAINER_PODMAN_QUADLET = "1"'
    )
    root = built(build, tmp_path, "quadsvc", a, "podman", extra)
    assert sorted(p.name for p in (root / "lib/systemd/system").iterdir()) == [
        "quadsvc.service"
    ]  # the loader
    text = (root / "usr/share/containers/systemd/web.container").read_text()
    assert (
        f"\nImage={config_hex(a)}\n" in text and a.reference.split(":")[0] not in text.split("[Container]")[1]
    )
    assert "\nContainerName=web\n" in text and "\nPull=never\n" in text
    assert '\nPodmanArgs=-p 8080:80 -e "MOTD=50%% off"\n' in text  # % is a systemd specifier
    assert "\nRestart=always\n" in text and "\nRequires=quadsvc.service\n" in text
    assert "\nWantedBy=multi-user.target\n" in text


def test_update_restarts_on_the_new_id_and_prunes_the_old_image_once_unused(
    build, tmp_path, image_factory, podman
) -> None:
    """The update as the postinst's restart runs it: while the service runs the old image the loader
    keeps it; the service stops (its container removed), the loader loads the new image and prunes
    the old one, the service starts on the new ID."""
    serving = {"bin/hello": serving_binary(b"serving v1\n")}
    a = image_factory.single_arch("services/upd", tag="stable", files={**base_files("upd"), **serving})
    serving = {"bin/hello": serving_binary(b"serving v2\n")}
    b = image_factory.single_arch("services/upd", tag="stable", files={**base_files("upd"), **serving})
    log = tmp_path / "web.log"
    extra = (
        'CONTAINER_SERVICES = "web"\n'
        f'CONTAINER_SERVICE_IMAGE[web] = "{a.reference}"\n'
        f'CONTAINER_SERVICE_ARGS[web] = "{PODMAN_TEST_ARGS} --stop-timeout 1 '
        f"--log-driver k8s-file --log-opt path={log} -e 'MOTD=50% off, $HOME'\"\n"
        'CONTAINER_PODMAN_QUADLET = "0"'
    )
    runtime = tmp_path / "run"
    runtime.mkdir()
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(podman.storage_conf)}

    def unit_run(unit: str, key: str) -> subprocess.CompletedProcess[str]:
        words = exec_words(unit, key, runtime, "web.service")
        if words[0] == "/usr/bin/podman":
            words = [PODMAN, *podman.options, *words[1:]]
        return subprocess.run(words, capture_output=True, text=True, env=env, timeout=120)

    def start(unit: str, want: str) -> None:
        log.unlink(missing_ok=True)
        assert unit_run(unit, "ExecStartPre").returncode == 0
        ran = unit_run(unit, "ExecStart")
        assert ran.returncode == 0, ran.stderr
        for _ in range(300):
            if log.is_file() and want in log.read_text():
                return
            time.sleep(0.1)
        raise AssertionError(f"{want!r} not in the service's log: {log.read_text() if log.exists() else ''}")

    v1 = built(build, tmp_path, "upd", a, "podman", extra)
    unit_v1 = (v1 / "lib/systemd/system/web.service").read_text()
    assert run_loader(v1 / "usr/share/upd", podman).returncode == 0
    start(unit_v1, "serving v1")

    v2 = built(build, tmp_path, "upd", b, "podman", extra)  # dpkg -i of the new version
    unit_v2 = (v2 / "lib/systemd/system/web.service").read_text()
    assert unit_v2 != unit_v1 and unit_v2.split("ExecStart=")[1].split("\n")[0].endswith(config_hex(b))
    # A loader run while the service still runs the old image keeps it.
    early = run_loader(v2 / "usr/share/upd", podman)
    assert early.returncode == 0, early.stderr
    assert (
        f"kept {a.reference} ({config_hex(a)}): no installed package lists it, but container(s)"
        in early.stderr
    )
    assert podman.image_id(config_hex(a)) == config_hex(a)

    # The restart transaction: the service stops (ExecStopPost removes its container), the loader
    # runs again, the service starts on the new ID.
    assert unit_run(unit_v2, "ExecStopPost").returncode == 0
    assert podman("ps", "--all", "--quiet").stdout == ""
    again = run_loader(v2 / "usr/share/upd", podman)
    assert again.returncode == 0, again.stderr
    assert f"pruned {a.reference} ({config_hex(a)}): no installed package lists it" in again.stderr
    assert podman.image_id(config_hex(a)) is None
    start(unit_v2, "serving v2")
    running = podman("ps", "--format", "{{.Names}} {{.ImageID}}").stdout.split()
    assert running[0] == "web" and config_hex(b).startswith(running[1])
    container_env = podman("inspect", "web", "--format", "{{json .Config.Env}}").stdout
    assert '"MOTD=50% off, $HOME"' in container_env  # % and $ of ARGS reach the engine as written
    assert unit_run(unit_v2, "ExecStopPost").returncode == 0


@pytest.mark.docker
def test_docker_unit_runs_the_pinned_id_even_after_a_retag(build, tmp_path, image_factory, dockerd) -> None:
    dockerd.remove_all()
    a = hello_image(image_factory, "services/dweb", b"docker service A\n")
    b = hello_image(image_factory, "services/dother", b"docker service B\n")
    extra = (
        'CONTAINER_SERVICES = "web"\n'
        f'CONTAINER_SERVICE_IMAGE[web] = "{a.reference}"\n'
        'CONTAINER_SERVICE_ARGS[web] = "--network none"\n'
    )
    root = built(build, tmp_path, "dwebsvc", a, "docker", extra)
    unit = (root / "lib/systemd/system/web.service").read_text()
    assert "After=network-online.target docker.service dwebsvc.service\n" in unit
    assert "Requires=docker.service dwebsvc.service\n" in unit and "Restart=always\n" in unit
    start = next(x for x in unit.splitlines() if x.startswith("ExecStart="))
    assert start.endswith(f" sha256:{config_hex(a)}") and a.reference not in start
    verify_unit(root, "web.service")

    loaded = subprocess.run(
        [str(root / "usr/share/dwebsvc/container-loader.sh")],
        capture_output=True,
        text=True,
        env=dockerd.env(),
    )
    assert loaded.returncode == 0, loaded.stderr

    def start_service() -> str:
        words = exec_words(unit, "ExecStart", tmp_path, "web.service")
        assert words[0] == "/usr/bin/docker"
        ran = subprocess.run(
            [words[0], "-H", dockerd.host, *words[1:]],
            capture_output=True,
            text=True,
            env=dockerd.env(),
            timeout=120,
        )
        assert ran.returncode == 0, ran.stderr
        return ran.stdout

    try:
        assert start_service() == "docker service A\n"
        pulled = tmp_path / "b.tar"
        subprocess.run(
            [
                "skopeo",
                "copy",
                "--src-tls-verify=false",
                f"docker://{b.reference}",
                f"docker-archive:{pulled}:{b.reference}",
            ],
            check=True,
            capture_output=True,
        )
        dockerd("load", "-i", str(pulled))
        dockerd("tag", b.reference, a.reference)  # someone re-tags the reference on the device
        assert dockerd.image_id(a.reference) == f"sha256:{config_hex(b)}"
        assert start_service() == "docker service A\n"
        assert dockerd("ps", "--all", "--quiet").stdout == ""  # --rm removed them
    finally:
        dockerd.remove_all()


# -- maintainer scripts ---------------------------------------------------------------------------------


def run_script(root: Path, tmp_path: Path, script: str, *args: str, disabled: str = "-") -> list[str]:
    """Run a maintainer script as on a running system (/run/systemd/system present, in a private
    mount namespace) with deb-systemd-helper/-invoke and the loader recorded instead of run."""
    calls = tmp_path / "calls"
    calls.write_text("")
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)
    for tool in ("deb-systemd-helper", "deb-systemd-invoke", "systemctl"):
        (stubs / tool).write_text(
            f'#!/bin/sh\necho "{tool} $*" >> {calls}\n'
            f'case "$*" in *"was-enabled {disabled}") exit 1 ;; esac\n'  # the administrator disabled it
        )
        (stubs / tool).chmod(0o755)
    loader = root / "usr/share/msvc/container-loader.sh"
    loader.write_text(f'#!/bin/sh\necho "container-loader.sh $*" >> {calls}\n')
    text = (root / f"DEBIAN/{script}").read_text().replace("/usr/share/msvc/", f"{root}/usr/share/msvc/")
    (tmp_path / script).write_text(text)
    command = (
        "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && "
        f"PATH={stubs}:$PATH exec sh {tmp_path / script} {shlex.join(args)}"
    )
    done = subprocess.run(["unshare", "-m", "sh", "-c", command], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return calls.read_text().splitlines()


@pytest.mark.parametrize("quadlet", ["0", "1"])
def test_scripts_start_services_after_the_loader_and_stop_them_before_release(
    build, tmp_path, image_factory, quadlet
) -> None:
    a = hello_image(image_factory, "services/scripts", b"scripts\n")
    extra = (
        'CONTAINER_SERVICES = "web api"\n'
        f'CONTAINER_SERVICE_IMAGE[web] = "{a.reference}"\nCONTAINER_SERVICE_IMAGE[api] = "{a.reference}"\n'
        f'CONTAINER_PODMAN_QUADLET = "{quadlet}"'
    )
    d = build.run(loader_recipe(build, "msvc", a, engine="podman", extra=extra), *PACKAGE_TASKS)
    root = tmp_path / "target"
    deb = next(Path(d.getVar("WORKDIR")).glob("*.deb"))
    subprocess.run(["dpkg-deb", "-R", str(deb), str(root)], check=True)  # files and DEBIAN/ scripts

    installed = run_script(root, tmp_path, "postinst", "configure", "")
    # Plain units: enabled unless the administrator disabled them (deb-systemd-helper's record);
    # Quadlet units are enabled by their [Install] section through the generator.
    enable = [] if quadlet == "1" else [
        "deb-systemd-helper --quiet was-enabled web.service",
        "deb-systemd-helper enable web.service",
        "deb-systemd-helper --quiet was-enabled api.service",
        "deb-systemd-helper enable api.service",
    ]  # fmt: skip
    # deb-systemd-invoke leaves out disabled units, and would leave out generated (Quadlet) ones.
    restart = "systemctl restart" if quadlet == "1" else "deb-systemd-invoke restart"
    assert installed == [
        *enable,
        "systemctl --system daemon-reload",
        # one transaction: the loader (re)loads and verifies, then the services start on the new IDs
        f"{restart} msvc.service web.service api.service",
    ]
    if quadlet == "0":
        upgraded = run_script(root, tmp_path, "postinst", "configure", "1.0", disabled="api.service")
        assert upgraded[:4] == [
            "deb-systemd-helper --quiet was-enabled web.service",
            "deb-systemd-helper enable web.service",
            "deb-systemd-helper --quiet was-enabled api.service",
            "deb-systemd-helper update-state api.service",  # stays disabled
        ]
    assert run_script(root, tmp_path, "prerm", "upgrade", "2.0") == []  # an upgrade keeps them running
    removed = run_script(root, tmp_path, "prerm", "remove")
    disable = [] if quadlet == "1" else ["deb-systemd-helper disable web.service api.service"]
    assert removed == [
        "deb-systemd-invoke stop web.service api.service",
        *disable,
        "container-loader.sh --release",  # after the containers are gone: their images can go
    ]
    assert run_script(root, tmp_path, "postrm", "remove") == ["systemctl --system daemon-reload"]
    purge = [] if quadlet == "1" else ["deb-systemd-helper purge web.service api.service"]
    assert run_script(root, tmp_path, "postrm", "purge") == purge


def test_with_debhelper_compat_10_plain_units_are_left_to_debhelper(build, tmp_path, image_factory) -> None:
    """debhelper (compat >= 10, Isar's DEBIAN_COMPAT) enables and restarts every unit with [Install]
    in lib/systemd/system in #DEBHELPER#, the loader's and the services' in one call; the class adds
    no postinst lines then (on the booted image, tests/test_isar_ready.py, they ran the loader and
    restarted the services a second time per update). The prerm still stops the services first."""
    a = hello_image(image_factory, "services/compat", b"compat\n")
    extra = (
        f'CONTAINER_SERVICES = "web"\nCONTAINER_SERVICE_IMAGE[web] = "{a.reference}"\n'
        'CONTAINER_PODMAN_QUADLET = "0"\nDEBIAN_COMPAT = "10"'
    )
    d = build.run(loader_recipe(build, "msvc", a, engine="podman", extra=extra), *PACKAGE_TASKS)
    root = tmp_path / "target"
    deb = next(Path(d.getVar("WORKDIR")).glob("*.deb"))
    subprocess.run(["dpkg-deb", "-R", str(deb), str(root)], check=True)
    assert not (root / "DEBIAN/postinst").exists(), (root / "DEBIAN/postinst").read_text()
    assert (root / "lib/systemd/system/web.service").is_file()
    removed = run_script(root, tmp_path, "prerm", "remove")
    assert removed[0] == "deb-systemd-invoke stop web.service", removed
