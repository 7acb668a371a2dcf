"""`container-lock update` resolves tags in Python with skopeo's configuration: registries.conf
mirrors and insecure entries, auth.json credentials and credential helpers; skopeo where the
configuration needs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from containerlock.lock import lockfile
from tests.harness.containers_conf import registries_conf_text, write_registries_conf
from tests.harness.images import ImageFactory
from tests.harness.registry import Registry

USER, PASSWORD = "helper-user", "helper-Pa55"


def update(layer: Path, lock: Path, home: Path, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), **({"PATH": path} if path else {})}
    return subprocess.run(
        [sys.executable, "-m", "audit", "update", str(layer), "--lockfile", str(lock)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def recipe(tmp_path: Path, name: str, url: str) -> Path:
    layer = tmp_path / f"layer-{name}"
    layer.mkdir()
    (layer / f"{name}_1.0.bb").write_text(f'SRC_URI = "{url}"\n')
    return layer


def test_tag_lookup_goes_to_the_registries_conf_mirror_when_the_primary_is_down(tmp_path) -> None:
    with Registry(tmp_path / "primary") as primary, Registry(tmp_path / "mirror") as mirror:
        image = ImageFactory(tmp_path / "images", primary.host).multi_arch("api/app", tag="1.0")
        ImageFactory(tmp_path / "images-m", mirror.host).multi_arch("api/app", tag="1.0")
        home = tmp_path / "home"
        write_registries_conf(home, insecure=[mirror.host], mirrors={primary.host: [mirror.host]})
        primary.stop()
        mark = mirror.mark()
        lock = tmp_path / "lock.json"
        result = update(recipe(tmp_path, "mirrored", f"docker://{image.host}/api/app;tag=1.0"), lock, home)
        assert result.returncode == 0, result.stderr
        assert lockfile.load(lock).entries[image.reference].digest == image.digest
        assert [r.path for r in mirror.requests(mark) if "/manifests/" in r.path] == [
            "/v2/api/app/manifests/1.0"
        ]


def test_credential_helper_and_skopeo_fallback(tmp_path) -> None:
    with Registry(tmp_path / "private", credentials=(USER, PASSWORD)) as private:
        image = ImageFactory(tmp_path / "images", private.host, (USER, PASSWORD)).single_arch("api/secret")
        home, bin_dir = tmp_path / "home", tmp_path / "bin"
        write_registries_conf(home, insecure=[private.host])
        (home / ".docker").mkdir()
        (home / ".docker" / "config.json").write_text(json.dumps({"credHelpers": {private.host: "cltest"}}))
        bin_dir.mkdir()
        helper = bin_dir / "docker-credential-cltest"
        helper.write_text(
            f'#!/bin/sh\nread host\n[ "$host" = "{private.host}" ] || exit 1\n'
            f'echo \'{{"ServerURL": "{private.host}", "Username": "{USER}", "Secret": "{PASSWORD}"}}\'\n'
        )
        helper.chmod(0o755)
        path = f"{bin_dir}:{os.environ['PATH']}"
        layer = recipe(tmp_path, "helped", f"docker://{private.host}/api/secret;tag=1.0")
        mark = private.mark()
        lock = tmp_path / "lock.json"
        result = update(layer, lock, home, path)
        assert result.returncode == 0, result.stderr
        assert lockfile.load(lock).entries[image.reference].digest == image.digest
        agents = {r.user_agent for r in private.requests(mark)}
        assert agents and not any("skopeo" in a for a in agents)  # resolved in Python
        # The configured helper is missing: the error names it (exit 3), as skopeo would.
        denied = update(layer, tmp_path / "other.json", home)
        assert denied.returncode == 3 and "credential helper docker-credential-cltest" in denied.stderr

        # A registries.conf this client does not implement (a prefix entry): skopeo resolves it.
        conf = home / ".config" / "containers" / "registries.conf"
        conf.write_text(
            registries_conf_text(insecure=[private.host])
            + f'\n[[registry]]\nprefix = "{private.host}/api"\nlocation = "{private.host}/api"\n'
            + "insecure = true\n"
        )
        mark = private.mark()
        fallback = update(layer, tmp_path / "fallback.json", home, path)
        assert fallback.returncode == 0, fallback.stderr
        assert lockfile.load(tmp_path / "fallback.json").entries[image.reference].digest == image.digest
        assert any("skopeo" in r.user_agent for r in private.requests(mark))
