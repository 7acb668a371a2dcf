"""Containers the OS starts (CONTAINER_SERVICES): declarations checked at parse time, systemd units.

A loader recipe declares `CONTAINER_SERVICES = "web"` with the varflags
`CONTAINER_SERVICE_IMAGE[web]` (one of its docker:// references, name[:tag]),
`CONTAINER_SERVICE_ARGS[web]` (engine run arguments) and `CONTAINER_SERVICE_RESTART[web]`.
Each service becomes a systemd unit (or a podman Quadlet `.container`) that runs the image by
its pinned image ID (the config digest), never by its name: a re-tag on the device changes
nothing. See docs/loader.md, "Services".
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from containerlock.oci.reference import InvalidReference, parse_url

RESTART_POLICIES = ("always", "on-failure", "no")
DEFAULT_RESTART = "always"
# Run options the unit sets itself: a service's ARGS may not set them.
MANAGED_OPTIONS = {
    "--name": "the container is named after the service",
    "--rm": "the unit removes the container when it stops",
    "--pull": "the unit never pulls (--pull=never): the image comes from the package",
    "--detach": "the unit decides how the engine runs",
    "-d": "the unit decides how the engine runs",
    "--replace": "the unit replaces a leftover container itself",
    "--restart": "systemd restarts the service (CONTAINER_SERVICE_RESTART)",
    "--cidfile": "the unit keeps the container ID file",
}
# A service name is a systemd unit name part and an engine container name at once.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_HEX_ID = re.compile(r"[0-9a-f]{64}")
# Distribution releases whose podman has no Quadlet (podman < 4.4).
NO_QUADLET_RELEASES = frozenset({"stretch", "buster", "bullseye", "bookworm", "bionic", "focal", "jammy"})
QUADLET_DIR = "usr/share/containers/systemd"
UNIT_DIR = "lib/systemd/system"


class ServiceError(ValueError):
    """A bad CONTAINER_SERVICES declaration; the text names the service and what to write."""


@dataclass(frozen=True)
class Service:
    """One declared service: the image as the recipe's reference `host/path:tag`."""

    name: str
    image: str
    args: tuple[str, ...]
    restart: str

    @property
    def unit(self) -> str:
        return f"{self.name}.service"

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "image": self.image, "args": list(self.args), "restart": self.restart}


def _written(url: str) -> str:
    """A docker:// URL's reference as the recipe wrote it: name[:tag]."""
    location = url.removeprefix("docker://").split(";", 1)[0]
    tag = next((p[4:] for p in url.split(";")[1:] if p.startswith("tag=")), None)
    return f"{location}:{tag}" if tag else location


def _normalised(image: str) -> str:
    """`host/path:tag` of a name[:tag] as written in CONTAINER_SERVICE_IMAGE."""
    if "@" in image or image.startswith("docker://"):
        raise InvalidReference("write the reference as name[:tag]; the pin comes from SRC_URI")
    name, tag = image, None
    if ":" in image.rsplit("/", 1)[-1]:
        name, _, tag = image.rpartition(":")
    return parse_url(f"docker://{name}" + (f";tag={tag}" if tag else "")).tagged


def _option(arg: str) -> str:
    return arg.split("=", 1)[0]


def declared(
    names: str, flag: Callable[[str, str], str | None], urls: Sequence[str], loader_unit: str
) -> list[Service]:
    """The services of a recipe, checked; ServiceError lists every problem found.

    `flag(var, name)` reads a varflag; `urls` are the recipe's docker:// URLs; `loader_unit` is
    the package's own loader unit name (a service may not take it).
    """
    references: dict[str, str] = {}  # host/path:tag -> as written
    for url in urls:
        try:
            references.setdefault(parse_url(url).tagged, _written(url))
        except InvalidReference:
            continue  # the fetcher reports a bad URL itself
    available = ", ".join(sorted(references.values())) or "none (the recipe has no docker:// URL)"
    problems: list[str] = []
    services: list[Service] = []
    seen: set[str] = set()
    for name in names.split():
        where = f"service '{name}'"
        if name in seen:
            problems.append(f"{where} is declared twice in CONTAINER_SERVICES; name each service once")
            continue
        seen.add(name)
        if not _NAME.fullmatch(name):
            problems.append(
                f"{where}: the name is not a valid unit and container name; use 1-63 of "
                "[A-Za-z0-9_.-], starting with a letter or digit"
            )
            continue
        if f"{name}.service" == loader_unit:
            problems.append(f"{where}: the name is the package's loader unit ({loader_unit}); pick another")
            continue
        image = (flag("CONTAINER_SERVICE_IMAGE", name) or "").strip()
        tagged = None
        if not image:
            problems.append(
                f"{where}: CONTAINER_SERVICE_IMAGE[{name}] is not set; set it to one of the "
                f"recipe's references: {available}"
            )
        else:
            try:
                tagged = _normalised(image)
            except InvalidReference as err:
                problems.append(
                    f"{where}: CONTAINER_SERVICE_IMAGE[{name}] = '{image}' is not a reference: {err}"
                )
            else:
                if tagged not in references:
                    problems.append(
                        f"{where}: CONTAINER_SERVICE_IMAGE[{name}] = '{image}' is not one of the recipe's "
                        f"docker:// references; write one of: {available}"
                    )
                    tagged = None
        restart = (flag("CONTAINER_SERVICE_RESTART", name) or DEFAULT_RESTART).strip()
        if restart not in RESTART_POLICIES:
            problems.append(
                f"{where}: CONTAINER_SERVICE_RESTART[{name}] = '{restart}' is not a restart policy; "
                f"write {', '.join(RESTART_POLICIES[:-1])} or {RESTART_POLICIES[-1]}"
            )
        raw_args = flag("CONTAINER_SERVICE_ARGS", name) or ""
        try:
            args = tuple(shlex.split(raw_args))
        except ValueError as err:
            problems.append(f"{where}: CONTAINER_SERVICE_ARGS[{name}] cannot be split into words: {err}")
            args = ()
        for arg in args:
            if _option(arg) in MANAGED_OPTIONS:
                problems.append(
                    f"{where}: CONTAINER_SERVICE_ARGS[{name}] sets {_option(arg)}: "
                    f"{MANAGED_OPTIONS[_option(arg)]}; remove it"
                )
            elif arg in references or arg in references.values() or (image and arg == image):
                problems.append(
                    f"{where}: CONTAINER_SERVICE_ARGS[{name}] names the image '{arg}': the unit runs "
                    f"CONTAINER_SERVICE_IMAGE[{name}] by its ID; remove it (ARGS are run options only)"
                )
        if tagged is not None:
            services.append(Service(name, tagged, args, restart))
    if problems:
        raise ServiceError("bad CONTAINER_SERVICES declaration:\n  " + "\n  ".join(problems))
    return services


def use_quadlet(setting: str, engine: str, release: str) -> bool:
    """Whether podman services are Quadlet files: "1"/"0" force, "auto" by the distro release."""
    value = (setting or "auto").strip()
    if engine != "podman":
        return False
    if value in ("1", "0"):
        return value == "1"
    if value != "auto":
        raise ServiceError(f"CONTAINER_PODMAN_QUADLET = '{value}': write auto, 1 or 0")
    return release.strip() not in NO_QUADLET_RELEASES


def spec(services: Sequence[Service], quadlet: bool) -> str:
    """What the unit task signs: every declaration and the unit form."""
    return json.dumps({"quadlet": quadlet, "services": [s.to_json() for s in services]}, sort_keys=True)


def from_spec(text: str) -> tuple[list[Service], bool]:
    doc = json.loads(text)
    services = [Service(s["name"], s["image"], tuple(s["args"]), s["restart"]) for s in doc["services"]]
    return services, bool(doc["quadlet"])


def image_ids(manifest: Mapping) -> dict[str, str]:
    """`host/path:tag` -> image ID (`sha256:<hex>`, the config digest) from a build manifest."""
    return {
        f"{i['reference']}:{i['tag']}": i["config"] for i in manifest.get("images", ()) if i.get("config")
    }


def _quote(arg: str, dollar: bool = True) -> str:
    """One word of a unit's command line: specifiers (%) and, in Exec lines, variables ($) kept literal."""
    text = arg.replace("%", "%%")
    if dollar:
        text = text.replace("$", "$$")
    if text and re.fullmatch(r"[A-Za-z0-9_@%+=:,./$-]+", text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _words(args: Sequence[str], dollar: bool = True) -> str:
    return " ".join(_quote(a, dollar) for a in args)


@dataclass(frozen=True)
class UnitContext:
    """What every unit of a package needs: names of the loader unit and the engine's."""

    bpn: str
    engine: str
    engine_service: str
    quadlet: bool


def _unit_section(service: Service, ctx: UnitContext) -> list[str]:
    needs = " ".join(u for u in (ctx.engine_service, f"{ctx.bpn}.service") if u)
    return [
        "[Unit]",
        f"Description=Container service {service.name} of {ctx.bpn} ({service.image})",
        "Wants=network-online.target",
        f"After=network-online.target {needs}",
        f"Requires={needs}",
    ]


def run_command(service: Service, ctx: UnitContext, image_id: str) -> list[str]:
    """The ExecStart words of a plain unit (before systemd's quoting)."""
    hex_id = image_id.removeprefix("sha256:")
    if not _HEX_ID.fullmatch(hex_id):
        raise ServiceError(f"service '{service.name}': image ID '{image_id}' is not sha256:<64 hex>")
    if ctx.engine == "podman":
        # As `podman generate systemd --new` writes it: conmon notifies systemd, the container
        # ID file lets ExecStop/ExecStopPost find the container.
        return [
            "/usr/bin/podman", "run", "--cidfile=%t/%n.ctr-id", "--cgroups=no-conmon", "--rm",
            "--sdnotify=conmon", "-d", "--replace", "--pull=never", "--name", service.name,
            *service.args, hex_id,
        ]  # fmt: skip
    return [
        "/usr/bin/docker",
        "run",
        "--rm",
        "--pull=never",
        "--name",
        service.name,
        *service.args,
        f"sha256:{hex_id}",
    ]


def plain_unit(service: Service, ctx: UnitContext, image_id: str) -> str:
    """A `<name>.service` running the image by its ID with the engine's CLI."""
    command = run_command(service, ctx, image_id)
    start = " ".join(
        w if w.startswith("--cidfile=%t") else _quote(w) for w in command
    )  # the specifiers of the ID file are meant
    lines = [*_unit_section(service, ctx), "", "[Service]", f"Restart={service.restart}"]
    if ctx.engine == "podman":
        lines += [
            "Environment=PODMAN_SYSTEMD_UNIT=%n",
            "Type=notify",
            "NotifyAccess=all",
            "TimeoutStopSec=70",
            "ExecStartPre=/bin/rm -f %t/%n.ctr-id",
            f"ExecStart={start}",
            "ExecStop=/usr/bin/podman stop --ignore -t 10 --cidfile=%t/%n.ctr-id",
            "ExecStopPost=/usr/bin/podman rm -f --ignore --cidfile=%t/%n.ctr-id",
        ]
    else:
        lines += [
            f"ExecStartPre=-/usr/bin/docker rm -f {_quote(service.name)}",
            f"ExecStart={start}",
            f"ExecStop=/usr/bin/docker stop {_quote(service.name)}",
        ]
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def quadlet_unit(service: Service, ctx: UnitContext, image_id: str) -> str:
    """A Quadlet `<name>.container`: Image= is the ID, which Quadlet hands to `podman run` as it is."""
    hex_id = image_id.removeprefix("sha256:")
    if not _HEX_ID.fullmatch(hex_id):
        raise ServiceError(f"service '{service.name}': image ID '{image_id}' is not sha256:<64 hex>")
    lines = [
        *_unit_section(service, ctx),
        "",
        "[Container]",
        f"ContainerName={service.name}",
        f"Image={hex_id}",
    ]
    lines.append("Pull=never")
    if service.args:
        lines.append(f"PodmanArgs={_words(service.args, dollar=False)}")
    lines += [
        "",
        "[Service]",
        f"Restart={service.restart}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def unit_files(services: Sequence[Service], ctx: UnitContext, ids: Mapping[str, str]) -> dict[str, str]:
    """Path under the package root -> text, for every service."""
    files: dict[str, str] = {}
    for service in services:
        image_id = ids.get(service.image)
        if image_id is None:
            raise ServiceError(
                f"service '{service.name}': no packaged image is {service.image} "
                f"(packaged: {', '.join(sorted(ids)) or 'none'}); run do_install_fetched_containers again"
            )
        if ctx.quadlet:
            files[f"{QUADLET_DIR}/{service.name}.container"] = quadlet_unit(service, ctx, image_id)
        else:
            files[f"{UNIT_DIR}/{service.unit}"] = plain_unit(service, ctx, image_id)
    return files


def postinst(services: Sequence[Service], ctx: UnitContext, debhelper_units: bool = False) -> list[str]:
    """Lines of the package's postinst after #DEBHELPER#: enable (plain units, keeping a unit the
    administrator disabled disabled, as debhelper does), then, on a running system, restart the
    loader and the services in one transaction (the loader loads and verifies the new images
    before the services start on their new IDs; the old containers are gone by then, so the
    loader's prune removes the superseded images in the same update).

    Plain units restart through deb-systemd-invoke, which leaves out disabled units; it would
    leave out Quadlet's generated units too (`is-enabled` says "generated"), so those restart
    through systemctl.

    `debhelper_units`: debhelper (compat >= 10) already does all of this for the plain units in
    #DEBHELPER# (it takes every unit with [Install] in lib/systemd/system, the loader's and the
    services', into one `deb-systemd-invoke restart`); repeating it ran the loader and restarted
    the services twice per update (seen on a booted image), so plain units then get no lines."""
    if not services or (debhelper_units and not ctx.quadlet):
        return []
    units = " ".join(s.unit for s in services)
    lines = ['if [ "$1" = configure ]; then']
    if not ctx.quadlet:
        lines += [
            f"    for unit in {units}; do",
            '        if deb-systemd-helper --quiet was-enabled "$unit"; then',
            '            deb-systemd-helper enable "$unit" >/dev/null || true',
            "        else",
            '            deb-systemd-helper update-state "$unit" >/dev/null || true',
            "        fi",
            "    done",
        ]
    restart = "systemctl restart" if ctx.quadlet else "deb-systemd-invoke restart"
    lines += [
        "    if [ -d /run/systemd/system ]; then",
        "        systemctl --system daemon-reload >/dev/null || true",
        f"        {restart} {ctx.bpn}.service {units} || true",
        "    fi",
        "fi",
    ]
    return lines


def prerm(services: Sequence[Service], ctx: UnitContext) -> list[str]:
    """Lines of the package's prerm before the loader's release: on removal the services stop
    (their containers are removed) so that the release can prune their images."""
    if not services:
        return []
    units = " ".join(s.unit for s in services)
    lines = [
        'if [ "$1" = remove ] && [ -d /run/systemd/system ]; then',
        f"    deb-systemd-invoke stop {units} || true",
        "fi",
    ]
    if not ctx.quadlet:
        lines += [
            'if [ "$1" = remove ]; then',
            f"    deb-systemd-helper disable {units} >/dev/null || true",
            "fi",
        ]
    return lines


def postrm(services: Sequence[Service], ctx: UnitContext) -> list[str]:
    """Lines of the package's postrm: systemd forgets the removed units (Quadlet's generated ones
    too); a purge forgets that the plain units were enabled."""
    if not services:
        return []
    lines = [
        'if [ "$1" = remove ] && [ -d /run/systemd/system ]; then',
        "    systemctl --system daemon-reload >/dev/null || true",
        "fi",
    ]
    if not ctx.quadlet:
        units = " ".join(s.unit for s in services)
        lines += [
            'if [ "$1" = purge ]; then',
            f"    deb-systemd-helper purge {units} >/dev/null || true",
            "fi",
        ]
    return lines


def write_units(files: Mapping[str, str], root: Path) -> list[str]:
    """Write the unit files under `root`; returns their paths (relative)."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o644)
    return sorted(files)
