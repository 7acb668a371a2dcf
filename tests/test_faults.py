"""Faults between skopeo and the registry: transient ones are retried, permanent ones are named,
wrong bytes are never stored or used."""

from __future__ import annotations

import logging
import time

import bb.fetch2
import pytest

from containerlock.files import file_digest
from tests.harness.containers_conf import write_registries_conf
from tests.harness.faultproxy import Fault, FaultProxy


@pytest.fixture
def proxy(registry, tmp_path, monkeypatch):
    """A fault proxy in front of the session registry, trusted (plain HTTP) in the user's registries.conf."""
    fault_proxy = FaultProxy(registry.host)
    home = tmp_path / "home"
    write_registries_conf(home, insecure=[registry.host, fault_proxy.host])
    monkeypatch.setenv("HOME", str(home))
    yield fault_proxy
    fault_proxy.close()


def via(proxy, image) -> str:
    return f"docker://{proxy.host}/{image.repository};tag={image.tag};digest={image.digest}"


def fetch(build, name, url):
    build.set(CONTAINER_FETCH_RETRY_DELAY="0.1")
    return build.run(build.write_recipe(f"{name}_1.0", f'SRC_URI = "{url}"\n'), "do_fetch", "do_unpack")


def stored_blobs_verify(build) -> None:
    root = build.topdir.parent / "downloads" / "containers" / "blobs" / "sha256"
    for blob in root.iterdir():
        assert file_digest(blob) == f"sha256:{blob.name}"


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", status=500, times=2),
        Fault("status", status=503, times=1),
        Fault("status", status=429, retry_after=1, times=1),
        Fault("reset", times=1),
        Fault("truncate", times=1),
        Fault("corrupt", times=1),
        Fault("slow", delay=1.0, times=2),
        Fault("status", path="/manifests/", status=503, times=1),
    ],
    ids=lambda f: f"{f.kind}-{f.status if f.kind == 'status' else ''}{f.path.strip('/')}",
)
def test_transient_faults_are_survived(build, image_factory, proxy, fault) -> None:
    image = image_factory.single_arch(f"faults/{fault.kind}{fault.status}{fault.path.strip('/')}", tag="1.0")
    proxy.faults.append(fault)
    fetch(build, "transient", via(proxy, image))
    assert fault.fired == fault.times
    retries = [m for m in build.events.messages(logging.WARNING) if "retrying in" in m]
    if fault.kind == "slow" or fault.status == 429:
        # slow is no failure; a 429 with Retry-After is waited out by skopeo itself (containers/image).
        assert retries == []
    else:  # container-lock's own retry ran (skopeo's internal ones alone would not warn)
        assert retries and f"from {proxy.host}:" in retries[0] and "(1 of 3)" in retries[0], retries
    stored_blobs_verify(build)


def test_persistent_wrong_bytes_fail_and_are_never_stored(build, image_factory, proxy) -> None:
    image = image_factory.single_arch("faults/wrongbytes", tag="1.0")
    layer = image.platforms["linux/amd64"].layers[-1].digest
    proxy.faults.append(Fault("corrupt", path=layer, times=100))
    start = time.monotonic()
    with pytest.raises(bb.fetch2.FetchError):
        fetch(build, "wrong", via(proxy, image))
    message = "\n".join(build.events.messages(logging.ERROR))
    assert f"{proxy.host}/faults/wrongbytes:1.0" in message and f"registry {proxy.host}" in message
    assert "do not match their digest" in message and "after 4 attempts" in message
    assert time.monotonic() - start < 30  # bounded: 3 retries, 0.1 s base delay
    blobs = build.topdir.parent / "downloads" / "containers" / "blobs" / "sha256"
    assert not (blobs / layer.split(":")[1]).exists()
    stored_blobs_verify(build)
    proxy.faults.clear()
    fetch(build, "wrong", via(proxy, image))  # the next build succeeds and trusts nothing partial
    stored_blobs_verify(build)


def test_permanent_errors_fail_fast_with_the_cause(build, image_factory, proxy) -> None:
    image = image_factory.single_arch("faults/permanent", tag="1.0")
    url = f"docker://{proxy.host}/faults/permanent;tag=nope"
    with pytest.raises(bb.fetch2.FetchError):
        fetch(build, "permanent", url)
    message = "\n".join(build.events.messages(logging.ERROR))
    assert f"{proxy.host}/faults/permanent:nope: manifest lookup from registry {proxy.host} failed" in message
    assert "does not exist" in message and "attempts" not in message
    assert not [m for m in build.events.messages(logging.WARNING) if "retrying in" in m]  # not retried
    # The repository exists (only the tag is wrong): its pinned digest fetches through the same proxy.
    fetch(build, "permanent-ok", via(proxy, image))


def test_retries_are_configurable(build, image_factory, proxy) -> None:
    image = image_factory.single_arch("faults/noretry", tag="1.0")
    proxy.faults.append(Fault("status", status=503, times=1))
    build.set(CONTAINER_FETCH_RETRIES="0")
    with pytest.raises(bb.fetch2.FetchError):
        fetch(build, "noretry", via(proxy, image))
    assert any("server unavailable (503)" in m for m in build.events.messages(logging.ERROR))
