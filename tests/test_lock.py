"""The lockfile: format, layer side (pin at parse, record, strict), and `container-lock update/check`."""

from __future__ import annotations

import json
import logging
import multiprocessing
import subprocess
import sys
from pathlib import Path

import bb
import bb.event
import bb.fetch2
import pytest

from containerlock.lock import lockfile
from containerlock.lock.lockfile import Lock, LockEntry, LockfileError

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real console entry point, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "audit", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def url(image, digest: bool = False) -> str:
    return f"docker://{image.host}/{image.repository};tag={image.tag}" + (
        f";digest={image.digest}" if digest else ""
    )


# -- format ------------------------------------------------------------------------------------


def test_lock_bytes_are_deterministic_and_round_trip(tmp_path) -> None:
    lock = Lock(
        {
            "reg:5000/b:1": LockEntry(D2, {"linux/arm/v7": D1, "linux/amd64": D2}),
            "reg:5000/a:1": LockEntry(D1),
        }
    )
    text = lock.dumps()
    assert text == Lock(dict(reversed(lock.entries.items()))).dumps()
    assert lockfile.parse(text.decode(), "x").dumps() == text
    assert text.index(b"reg:5000/a:1") < text.index(b"reg:5000/b:1")
    assert text.endswith(b"}\n")


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ('{"version": 1, "images": {"reg:5000/a:1": {"digest": "sha256:', r"x\.json:1:\d+: not valid JSON"),
        ('{"version": 2, "images": {}}', "version 2 is not 1"),
        ('{"version": 1, "images": []}', '"images" must be an object'),
        ('{"version": 1, "images": {"reg:5000/a:1": {"digest": 5}}}', 'needs a "digest" string'),
        ('{"version": 1, "images": {"reg:5000/a:1": {"digest": "sha256:00"}}}', "malformed"),
        (
            '{"version": 1, "images": {"a:1": {"digest": "' + D1 + '"}}}',
            "not normalised; write 'docker.io/library/a:1'",
        ),
        (
            '{"version": 1, "images": {"reg:5000/a:1": {"digest": "'
            + D1
            + '"}, "reg:5000/a:1": {"digest": "'
            + D1
            + '"}}}',
            "appears twice",
        ),
        (
            '{"version": 1, "images": {"reg:5000/a:1": {"digest": "'
            + D1
            + '", "platforms": {"linux": "x"}}}}',
            "os/architecture",
        ),
        ("[]", "top level must be a JSON object"),
    ],
)
def test_bad_lockfiles_name_file_and_problem(tmp_path, content, complaint) -> None:
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(LockfileError, match=complaint):
        lockfile.load(path)


def _record_many(path: str, worker: int) -> None:
    for i in range(5):
        lockfile.record(Path(path), f"reg:5000/w{worker}:{i}", D1, "linux/amd64", D2)


def test_parallel_writers_lose_no_entry(tmp_path) -> None:
    path = tmp_path / "lock.json"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_record_many, args=(str(path), w)) for w in range(12)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(lockfile.load(path).entries) == 60


# -- layer side --------------------------------------------------------------------------------


def test_unpinned_build_records_the_lock_then_strict_offline_build_uses_it(
    build, registry, image_factory, tmp_path
) -> None:
    multi = image_factory.multi_arch("lock/record-multi", tag="1.0")
    single = image_factory.single_arch("lock/record-single", tag="2.0")
    lock_path = tmp_path / "layer" / "container-lock.json"
    build.set(CONTAINER_LOCKFILE=str(lock_path), DISTRO_ARCH="armhf")
    rec = build.write_recipe("record_1.0", f'SRC_URI = "{url(multi)} {url(single)}"\n')
    single_arm = image_factory.single_arch("lock/record-single", tag="2.0", platform="linux/arm/v7")
    assert single_arm.digest != single.digest  # the tag now names an arm/v7 image
    d = build.run(rec, "do_fetch")
    assert not lock_path.exists()  # not during the build: the lock is a parse dependency of its tasks
    build.finish_build(d)
    lock = lockfile.load(lock_path)
    assert lock.entries[multi.reference] == LockEntry(
        multi.digest, {"linux/arm/v7": multi.platforms["linux/arm/v7"].manifest_digest}
    )
    assert lock.entries[single.reference].digest == single_arm.digest

    build.set(BB_STRICT_CHECKSUM="1", BB_NO_NETWORK="1")
    mark = registry.mark()
    d = build.run(rec, "do_fetch", "do_unpack")
    assert registry.requests(mark) == []
    assert f"{url(multi)};digest={multi.digest}" in d.getVar("SRC_URI").split()
    assert len(build.events.of_type(bb.fetch2.MissingChecksumEvent)) == 2  # the first build's only


def test_lock_pins_src_uri_and_fetch_signature_follows_it(build, tmp_path) -> None:
    lock_path = tmp_path / "lock.json"
    build.set(CONTAINER_LOCKFILE=str(lock_path))
    rec = build.write_recipe("follow_1.0", 'SRC_URI = "docker://reg.example:5000/app;tag=1"\n')
    lock_path.write_bytes(Lock({"reg.example:5000/app:1": LockEntry(D1)}).dumps())
    d = build.parse(rec)
    assert d.getVar("SRC_URI") == f"docker://reg.example:5000/app;tag=1;digest={D1}"
    assert str(lock_path) in [dep[0] for dep in d.getVar("__depends", False)]
    first = build.basehashes(rec)["do_fetch"]
    lock_path.write_bytes(Lock({"reg.example:5000/app:1": LockEntry(D2)}).dumps())
    assert build.basehashes(rec)["do_fetch"] != first
    lock_path.unlink()  # a deleted lock: the URL is simply unpinned again
    assert build.parse(rec).getVar("SRC_URI") == "docker://reg.example:5000/app;tag=1"


def test_recipe_digest_wins_over_the_lock_with_a_warning(build, tmp_path) -> None:
    lock_path = tmp_path / "lock.json"
    lock_path.write_bytes(Lock({"reg.example:5000/app:1": LockEntry(D1)}).dumps())
    build.set(CONTAINER_LOCKFILE=str(lock_path))
    rec = build.write_recipe("wins_1.0", f'SRC_URI = "docker://reg.example:5000/app;tag=1;digest={D2}"\n')
    assert build.parse(rec).getVar("SRC_URI").endswith(D2)
    assert any(D1 in m and D2 in m for m in build.events.messages(logging.WARNING))


def test_broken_lockfile_fails_the_parse_naming_it(build, tmp_path) -> None:
    lock_path = tmp_path / "lock.json"
    lock_path.write_text('{"version": 1,\n "images": {,}}')
    build.set(CONTAINER_LOCKFILE=str(lock_path))
    rec = build.write_recipe("broken_1.0", 'SRC_URI = "docker://reg.example:5000/app;tag=1"\n')
    with pytest.raises(Exception):  # noqa: B017 - BitBake wraps bb.fatal at parse time
        build.parse(rec)
    assert any(f"{lock_path}:2:" in m for m in build.events.messages(logging.CRITICAL))


def test_strict_build_lists_every_unpinned_url_before_any_request(build, registry, image_factory) -> None:
    pinned = image_factory.single_arch("lock/strict-ok", tag="1.0")
    build.set(BB_STRICT_CHECKSUM="1")
    recipes = [
        build.write_recipe("strict-a_1.0", 'SRC_URI = "docker://reg.example:5000/a;tag=1"\n'),
        build.write_recipe("strict-b_1.0", f'SRC_URI = "docker://reg.example:5000/b;digest={D1}"\n'),
        build.write_recipe("strict-ok_1.0", f'SRC_URI = "{url(pinned, digest=True)}"\n'),
    ]
    mark = registry.mark()
    for rec in recipes:
        d = build.parse(rec)  # parsing is fine; the build stops as it starts
    with pytest.raises(bb.BBHandledException):
        build.start_build(d, *recipes)
    message = build.events.messages(logging.CRITICAL)[-1]
    assert "strict-a_1.0.bb: docker://reg.example:5000/a;tag=1" in message
    assert f"strict-b_1.0.bb: docker://reg.example:5000/b;digest={D1}" in message
    assert "strict-ok" not in message and "container-lock update" in message
    assert registry.requests(mark) == []

    # Once pinned (here: in the recipe), the next parse clears the recipe's note.
    build.write_recipe("strict-a_1.0", f'SRC_URI = "docker://reg.example:5000/a;tag=1;digest={D1}"\n')
    build.write_recipe("strict-b_1.0", f'SRC_URI = "docker://reg.example:5000/b;tag=1;digest={D1}"\n')
    for rec in recipes:
        d = build.parse(rec)
    build.start_build(d, *recipes)


def test_strict_judges_only_the_recipes_this_build_fetches(build, registry, image_factory) -> None:
    """An unpinned recipe that is parsed but not built (meta-isar's prebuilt-podman-img) stops nothing."""
    pinned = image_factory.single_arch("lock/strict-ok", tag="1.0")
    build.set(BB_STRICT_CHECKSUM="1")
    unbuilt = build.write_recipe(
        "unbuilt_1.0", 'SRC_URI = "docker://quay.example/libpod/alpine;tag=latest"\n'
    )
    wanted = build.write_recipe("wanted_1.0", f'SRC_URI = "{url(pinned, digest=True)}"\n')
    build.parse(unbuilt)
    d = build.parse(wanted)
    build.start_build(d, wanted)  # no exception: the unpinned recipe is not part of this build
    assert not build.events.messages(logging.CRITICAL)
    with pytest.raises(bb.BBHandledException):
        build.start_build(d, wanted, unbuilt)
    assert (
        "unbuilt_1.0.bb: docker://quay.example/libpod/alpine;tag=latest"
        in build.events.messages(logging.CRITICAL)[-1]
    )


def _fetch_unpinned(topdir: str, dl_dir: str, lock: str, url: str, queue) -> None:
    from tests.harness.bitbake import BuildDir

    build = BuildDir(Path(topdir))
    build.set(DL_DIR=dl_dir, TMPDIR=f"{topdir}/tmp", CONTAINER_LOCKFILE=lock)
    try:
        d = build.run(build.write_recipe("parallel_1.0", f'SRC_URI = "{url}"\n'), "do_fetch")
        build.finish_build(d)
        queue.put("ok")
    except Exception as err:  # reported to the parent
        queue.put(repr(err))


def test_parallel_fetch_tasks_record_every_entry(tmp_path, image_factory) -> None:
    images = [image_factory.single_arch(f"lock/parallel-{i}", tag="1.0") for i in range(8)]
    lock_path = tmp_path / "lock.json"
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [
        ctx.Process(
            target=_fetch_unpinned,
            args=(str(tmp_path / f"b{i}"), str(tmp_path / "dl"), str(lock_path), url(img), queue),
        )
        for i, img in enumerate(images)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert sorted(queue.get(timeout=5) for _ in procs) == ["ok"] * 8
    lock = lockfile.load(lock_path)
    assert {k: e.digest for k, e in lock.entries.items()} == {i.reference: i.digest for i in images}


# -- CLI ---------------------------------------------------------------------------------------


def test_update_pins_then_follows_a_moved_tag(build, registry, image_factory, tmp_path) -> None:
    v1 = image_factory.single_arch("lock/moving", tag="stable", files={"etc/v": b"1\n"})
    lock_path = tmp_path / "container-lock.json"
    build.set(CONTAINER_LOCKFILE=str(lock_path))
    rec = build.write_recipe("moving_1.0", f'SRC_URI = "{url(v1)}"\n')

    result = cli("update", str(build.recipes), "--lockfile", str(lock_path))
    assert result.returncode == 0, result.stderr
    assert lockfile.load(lock_path).entries[v1.reference].digest == v1.digest
    first_bytes, first_mtime = lock_path.read_bytes(), lock_path.stat().st_mtime_ns
    d = build.run(rec, "do_fetch", "do_unpack")
    assert v1.digest in d.getVar("SRC_URI")
    sig_v1 = build.basehashes(rec)["do_fetch"]

    # Unchanged registry: second run writes nothing.
    assert cli("update", str(build.recipes), "--lockfile", str(lock_path)).returncode == 0
    assert (lock_path.read_bytes(), lock_path.stat().st_mtime_ns) == (first_bytes, first_mtime)

    v2 = image_factory.single_arch("lock/moving", tag="stable", files={"etc/v": b"2\n"})
    assert build.basehashes(rec)["do_fetch"] == sig_v1  # without update, v1 keeps building
    check = cli("update", str(build.recipes), "--lockfile", str(lock_path), "--check")
    assert check.returncode == 1 and "out of date" in check.stdout
    assert lock_path.read_bytes() == first_bytes

    result = cli("update", str(build.recipes), "--lockfile", str(lock_path))
    assert result.returncode == 0 and "updated" in result.stdout
    assert lockfile.load(lock_path).entries[v1.reference].digest == v2.digest
    assert build.basehashes(rec)["do_fetch"] != sig_v1
    mark = registry.mark()
    build.run(rec, "do_fetch")
    assert v2.platforms["linux/amd64"].layers[-1].digest in [g.digest for g in registry.blob_gets(mark)]
    assert cli("update", str(build.recipes), "--lockfile", str(lock_path), "--check").returncode == 0


def test_update_keeps_going_past_registry_errors(build, image_factory, tmp_path) -> None:
    good = image_factory.single_arch("lock/good", tag="1.0")
    build.write_recipe(
        "mixed_1.0",
        f'SRC_URI = "{url(good)} docker://{good.host}/lock/good;tag=nope '
        'docker://127.0.0.1:9/lock/down;tag=1"\n',
    )
    lock_path = tmp_path / "lock.json"
    result = cli("update", str(build.recipes), "--lockfile", str(lock_path), "--timeout", "20")
    assert result.returncode == 3
    assert (
        f"{good.host}/lock/good:nope: manifest lookup from registry {good.host} failed: "
        "the tag or digest does not exist" in result.stderr
    )
    assert "127.0.0.1:9/lock/down:1:" in result.stderr
    assert set(lockfile.load(lock_path).entries) == {good.reference}


def test_update_only_named_images_and_reports_unresolvable_urls(build, image_factory, tmp_path) -> None:
    a = image_factory.single_arch("lock/only-a", tag="1.0")
    b = image_factory.single_arch("lock/only-b", tag="1.0")
    build.write_recipe(
        "only_1.0", f'SRC_URI = "{url(a)} {url(b)}"\nSRC_URI += "docker://${{MY_REG}}/x;tag=1"\n'
    )
    lock_path = tmp_path / "lock.json"
    result = cli("update", str(build.recipes), "--lockfile", str(lock_path), "--image", b.reference, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [c["reference"] for c in report["changes"]] == [b.reference]
    assert report["unresolved"][0]["where"].endswith("only_1.0.bb:2")
    assert set(lockfile.load(lock_path).entries) == {b.reference}
    bad = cli("update", str(build.recipes), "--lockfile", str(lock_path), "--image", "reg.example/zzz:1")
    assert bad.returncode == 2 and "reg.example/zzz:1" in bad.stderr


def test_check_reports_findings_with_file_and_line(tmp_path) -> None:
    layer = tmp_path / "layer" / "recipes-x" / "x"
    layer.mkdir(parents=True)
    (layer / "x_1.0.bb").write_text(
        "inherit docker-loader\n"
        'SRC_URI += "docker://reg.example:5000/unpinned;tag=1 \\\n'
        "    docker://reg.example:5000/notag \\\n"
        f"    docker://reg.example:5000/mismatch;tag=1;digest={D1} \\\n"
        f'    docker://other.example/app;tag=latest;digest={D2}"\n'
    )
    lock_path = tmp_path / "lock.json"
    lock_path.write_bytes(
        Lock(
            {"reg.example:5000/mismatch:1": LockEntry(D2), "reg.example:5000/unused:1": LockEntry(D1)}
        ).dumps()
    )
    policy = tmp_path / "policy.toml"
    policy.write_text(
        'version = 1\n[rules]\nunpinned = "error"\n[images]\nallowed_registries = ["reg.example:*"]\n'
    )
    result = cli(
        "check", str(tmp_path / "layer"), "--lockfile", str(lock_path), "--policy", str(policy), "--json"
    )
    assert result.returncode == 1
    findings = {
        (f["rule"], f["where"].rsplit("/", 1)[-1], f["severity"])
        for f in json.loads(result.stdout)["findings"]
    }
    assert findings == {
        ("unpinned", "x_1.0.bb:2", "error"),
        ("unpinned", "x_1.0.bb:3", "error"),
        ("no-tag", "x_1.0.bb:3", "warning"),
        ("forbidden-tag", "x_1.0.bb:3", "warning"),  # no tag: latest
        ("lock-mismatch", "x_1.0.bb:4", "warning"),
        ("forbidden-tag", "x_1.0.bb:5", "warning"),
        ("registry-not-allowed", "x_1.0.bb:5", "error"),
        ("unused-lock-entry", "lock.json", "warning"),
    }
    default = cli("check", str(tmp_path / "layer"), "--lockfile", str(lock_path))
    assert default.returncode == 0 and "x_1.0.bb:4: warning [lock-mismatch]" in default.stdout
    assert cli("check", str(tmp_path / "layer"), "--lockfile", str(lock_path), "-p", "strict").returncode == 1


@pytest.mark.parametrize(
    ("policy_text", "complaint"),
    [
        ("version = 1\n[rules]\nunpinned = 'fatal'\n", "use one of error, warning, ignore"),
        ("version = 1\n[rules]\nnope = 'error'\n", "unknown rule 'nope'"),
        ("[rules]\n", "'version = 1' is required"),
        ("version = 1\n[images]\nforbidden_tags = 'latest'\n", "must be a list of strings"),
        ("version = ", "not valid TOML"),
    ],
)
def test_bad_policy_file_is_input_error(tmp_path, policy_text, complaint) -> None:
    (tmp_path / "r.bb").write_text('SRC_URI = "docker://reg.example/a;tag=1"\n')
    policy = tmp_path / "p.toml"
    policy.write_text(policy_text)
    result = cli("check", str(tmp_path / "r.bb"), "--policy", str(policy))
    assert result.returncode == 2
    assert complaint in result.stderr and "p.toml" in result.stderr
