"""Registry credentials never leak: not in logs, task files, DL_DIR, the lock, manifests or the SBOM."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import bb.fetch2
import pytest

from audit import registry_api
from containerlock.fetch.skopeo import RegistryError
from tests.harness.bitbake import PAYLOAD_TASKS, BuildDir
from tests.harness.containers_conf import write_registries_conf
from tests.harness.images import ImageFactory
from tests.harness.registry import Registry

SBOM_TASKS = (*PAYLOAD_TASKS, "do_deploy_container_manifest")

USER, PASSWORD = "builder", "s3cr3t-Pa55w0rd-xyz"


def test_credentials_stay_out_of_every_artifact(tmp_path, monkeypatch) -> None:
    with Registry(tmp_path / "private", credentials=(USER, PASSWORD)) as private:
        image = ImageFactory(tmp_path / "images", private.host, (USER, PASSWORD)).single_arch("secret/app")
        home = tmp_path / "home"
        write_registries_conf(home, insecure=[private.host])
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        (home / ".docker").mkdir()
        (home / ".docker" / "config.json").write_text(json.dumps({"auths": {private.host: {"auth": token}}}))
        monkeypatch.setenv("HOME", str(home))

        build = BuildDir(tmp_path / "build")
        lock = tmp_path / "container-lock.json"
        build.set(
            DL_DIR=str(tmp_path / "dl"), TMPDIR=str(tmp_path / "build" / "tmp"), CONTAINER_LOCKFILE=str(lock)
        )
        url = f"docker://{private.host}/secret/app;tag=1.0"
        d = build.run(
            build.write_recipe("secret_1.0", f'inherit podman-loader\nSRC_URI += "{url}"\n'), *SBOM_TASKS
        )
        build.finish_build(d)  # the resolved digest goes into the lock
        sbom = subprocess.run(
            [
                sys.executable,
                "-m",
                "audit",
                "sbom",
                "--deploy-dir",
                d.getVar("DEPLOY_DIR"),
                "--lockfile",
                str(lock),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        update = subprocess.run(
            [sys.executable, "-m", "audit", "update", str(build.recipes), "--lockfile", str(lock), "--check"],
            capture_output=True,
            text=True,
        )
        assert update.returncode == 0, update.stderr  # the CLI authenticates the same way

        # Without the credentials: a clear per-image 401 error, exit status 3.
        anonymous = tmp_path / "anonymous"
        write_registries_conf(anonymous, insecure=[private.host])
        denied = subprocess.run(
            [
                sys.executable,
                "-m",
                "audit",
                "update",
                str(build.recipes),
                "--lockfile",
                str(tmp_path / "other.json"),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "HOME": str(anonymous)},
        )
        assert (
            denied.returncode == 3
            and "(401)" in denied.stderr
            and f"{private.host}/secret/app:1.0" in denied.stderr
        )

        # `verify` logs in with the same auth files: the referrers API (this registry has none:
        # 404) and the sha256-<hex> tag fallback (404 once logged in); anonymous, it gets a 401.
        # The referrers client answers the registry's challenge like skopeo (tags/list needs a login).
        tags, _ = registry_api.Session(10).get(private.host, "secret/app", "tags/list", "application/json")
        assert json.loads(tags)["tags"] == ["1.0"]
        policy = tmp_path / "policy.toml"
        policy.write_text(
            f'version = 1\n[[signers]]\nimages = ["{private.host}/*"]\nissuer = "https://i.example"\n'
            'identity = "release@team.example"\n'
        )
        mark = private.mark()
        verify_args = [sys.executable, "-m", "audit", "verify", str(build.recipes), "--lockfile", str(lock)]
        verify_args += ["--policy", str(policy), "--json"]
        verified = subprocess.run(verify_args, capture_output=True, text=True)
        report = json.loads(verified.stdout)["images"][0]
        assert (report["status"], report["error"], report["evidence"]) == ("unsigned", None, []), (
            verified.stderr
        )
        logged = private.requests(mark)
        assert [r.status for r in logged if "/referrers/" in r.path] == [404]
        fallback = f"/manifests/{image.digest.replace(':', '-')}"
        assert [r.status for r in logged if r.path.endswith(fallback) and r.method == "GET"][-1] == 404
        anonymous_verify = subprocess.run(
            verify_args,
            capture_output=True,
            text=True,
            env={**os.environ, "HOME": str(tmp_path / "anonymous")},
        )
        assert "401" in json.loads(anonymous_verify.stdout)["images"][0]["error"]
        monkeypatch.setenv("HOME", str(tmp_path / "anonymous"))
        with pytest.raises(RegistryError, match="401"):
            registry_api.Session(10).get(private.host, "secret/app", "tags/list", "application/json")
        monkeypatch.setenv("HOME", str(home))
        texts_verify = [verified.stdout, verified.stderr, anonymous_verify.stdout, anonymous_verify.stderr]

        # Userinfo in a URL is refused, and the refusal does not repeat the password.
        bad = f"docker://{USER}:{PASSWORD}@{private.host}/secret/app;tag=1.0"
        with pytest.raises(bb.fetch2.MalformedUrl) as err:
            build.run(build.write_recipe("userinfo_1.0", f'SRC_URI = "{bad}"\n'), "do_fetch")
        assert "auth.json" in str(err.value) and PASSWORD not in str(err.value)

    texts = [
        *texts_verify,
        sbom,
        update.stdout,
        update.stderr,
        *(record.getMessage() for record in build.events.records),  # every level BitBake logged at
    ]
    assert lock.exists() and image.digest in lock.read_text()
    for root in (tmp_path / "build", tmp_path / "dl", lock):
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in (p for p in files if p.parent != build.recipes):  # the test's own recipe has it
            data = path.read_bytes()
            assert PASSWORD.encode() not in data and token.encode() not in data, path
    for text in texts:
        assert PASSWORD not in text and token not in text
