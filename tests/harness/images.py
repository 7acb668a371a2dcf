"""Test images: OCI layouts written by code (deterministic digests), pushed with skopeo.

Same inputs give the same digests: tar entries sorted, mtime 0, uid/gid 0, no user/group
names, fixed modes; gzip without name, with mtime 0 and a fixed level; JSON with sorted keys
and compact separators; `created` is the epoch. Layers are gzip-compressed OCI layers.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import re
import struct
import subprocess
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
ALL_PLATFORMS = ("linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/arm/v6")
CREATED = "1970-01-01T00:00:00Z"
SKOPEO_TIMEOUT = 600

Files = Mapping[str, bytes]
Descriptor = dict[str, object]

# The distribution spec's grammar, restricted to lower case for tags too.
_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_TAG = re.compile(r"[a-z0-9_][a-z0-9_.-]{0,127}")
_PLATFORM = re.compile(r"[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?")


@dataclass(frozen=True)
class Layer:
    """A pushed layer: compressed digest and size, and the uncompressed diff ID."""

    digest: str
    size: int
    diff_id: str


@dataclass(frozen=True)
class PlatformImage:
    """One platform's image within a pushed reference."""

    platform: str
    manifest_digest: str
    config_digest: str
    layers: tuple[Layer, ...]


@dataclass(frozen=True)
class PushedImage:
    """What a test needs to know about an image in the registry."""

    host: str
    repository: str
    tag: str
    digest: str  # the top level: the index, or the manifest of a single-platform image
    platforms: dict[str, PlatformImage] = field(hash=False)
    is_index: bool = False

    @property
    def reference(self) -> str:
        return f"{self.host}/{self.repository}:{self.tag}"

    @property
    def ref_by_digest(self) -> str:
        return f"{self.host}/{self.repository}@{self.digest}"


class SkopeoError(RuntimeError):
    """skopeo failed; the message holds the command and its stderr."""


def check_names(repository: str, tag: str, platform: str | None = None) -> None:
    """Raise ValueError unless the repository and tag are valid lower-case reference names."""
    if not _REPOSITORY.fullmatch(repository):
        raise ValueError(f"invalid repository name {repository!r} (lower case, [a-z0-9._/-])")
    if not _TAG.fullmatch(tag):
        raise ValueError(f"invalid tag {tag!r} (lower case, [a-z0-9_.-], at most 128)")
    if platform is not None and not _PLATFORM.fullmatch(platform):
        raise ValueError(f"invalid platform {platform!r} (os/arch[/variant])")


def canonical_json(obj: object) -> bytes:
    """JSON with sorted keys and compact separators."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _directories(paths: list[str]) -> list[str]:
    # Only each file's own directory, not every ancestor: adding them would change every digest,
    # and meta/demo pins one (demo-docker-img_1.0.bb, checked by tests/test_harness.py).
    return sorted({str(PurePosixPath(p).parent) for p in paths} - {"."})


def tar_bytes(files: Files) -> bytes:
    """An uncompressed tar of `files` (and their directories), reproducible."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in _directories(list(files)):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(_owned_by_root(info))
        for name in sorted(files):
            data = files[name]
            info = tarfile.TarInfo(name)
            if isinstance(data, Link):
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, str(data), 0o777
                tar.addfile(_owned_by_root(info))
                continue
            info.size = len(data)
            info.mode = 0o755 if data.startswith((b"#!", b"\x7fELF")) else 0o644
            tar.addfile(_owned_by_root(info), io.BytesIO(data))
    return buf.getvalue()


class Link(bytes):
    """A symbolic link in `Files`: its bytes are the link target."""

    def __str__(self) -> str:
        return self.decode()


def _owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


def gzip_bytes(data: bytes, level: int = 6) -> bytes:
    """Deterministic gzip (no file name, mtime 0)."""
    out = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=out, mode="wb", compresslevel=level, mtime=0) as gz:
        gz.write(data)
    return out.getvalue()


def platform_fields(platform: str) -> dict[str, str]:
    """`linux/arm/v7` → {"os": "linux", "architecture": "arm", "variant": "v7"}."""
    os_, arch, *variant = platform.split("/")
    return {"os": os_, "architecture": arch, **({"variant": variant[0]} if variant else {})}


class Layout:
    """An OCI image layout being written: blobs, then index.json."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))

    def blob(self, data: bytes, media_type: str) -> Descriptor:
        """Store a blob; its descriptor."""
        digest = sha256_digest(data)
        (self.root / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def layer(self, files: Files, level: int = 6, compression: str = "gzip") -> tuple[Descriptor, Layer]:
        """A tar layer of `files`: gzip-compressed (default), zstd-compressed or plain (`none`)."""
        return self.tar_layer(tar_bytes(files), level, compression)

    def tar_layer(self, raw: bytes, level: int = 6, compression: str = "gzip") -> tuple[Descriptor, Layer]:
        """A layer of an existing tar (e.g. a root file system made by mmdebstrap)."""
        if compression == "zstd":
            zstd = subprocess.run(
                ["zstd", "-q", f"-{level}", "-c"], input=raw, capture_output=True, check=True
            )
            compressed, media_type = zstd.stdout, OCI_LAYER_ZSTD
        elif compression == "none":
            compressed, media_type = raw, OCI_LAYER_TAR
        else:
            compressed, media_type = gzip_bytes(raw, level), OCI_LAYER_GZIP
        desc = self.blob(compressed, media_type)
        return desc, Layer(str(desc["digest"]), len(compressed), sha256_digest(raw))

    def image(
        self, platform: str, layers: list[tuple[Descriptor, Layer]], cmd: tuple[str, ...] = ("/bin/hello",)
    ) -> tuple[Descriptor, PlatformImage]:
        """Config and manifest for `layers` (the container's command `cmd`); the manifest's
        descriptor (with platform) for an index."""
        plat = platform_fields(platform)
        config = {
            **plat,
            "created": CREATED,
            "config": {"Cmd": list(cmd), "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [lay.diff_id for _, lay in layers]},
        }
        cdesc = self.blob(canonical_json(config), OCI_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": cdesc,
            "layers": [desc for desc, _ in layers],
        }
        mdesc = self.blob(canonical_json(manifest), OCI_MANIFEST)
        image = PlatformImage(
            platform, str(mdesc["digest"]), str(cdesc["digest"]), tuple(lay for _, lay in layers)
        )
        return {**mdesc, "platform": plat}, image

    def index(self, manifests: list[Descriptor]) -> Descriptor:
        """An OCI image index of platform manifests."""
        return self.blob(
            canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}), OCI_INDEX
        )

    def finish(self, tag: str, top: Descriptor) -> None:
        """Write index.json naming `top` as `tag`."""
        entry = {k: v for k, v in top.items() if k != "platform"}
        entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
        (self.root / "index.json").write_bytes(canonical_json({"schemaVersion": 2, "manifests": [entry]}))


def skopeo(*args: str) -> str:
    """Run skopeo; its stdout, or SkopeoError with its stderr."""
    cmd = ["skopeo", *args]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=SKOPEO_TIMEOUT)
    except subprocess.TimeoutExpired as err:
        raise SkopeoError(f"{' '.join(cmd)} timed out after {SKOPEO_TIMEOUT} s:\n{err.stderr}") from None
    if result.returncode:
        raise SkopeoError(f"{' '.join(cmd)} failed (exit {result.returncode}):\n{result.stderr}")
    return result.stdout


def push_layout(
    root: Path, tag: str, destination: str, *, is_index: bool, credentials: tuple[str, str] | None = None
) -> None:
    """Copy `oci:root:tag` to `docker://destination` byte for byte (`--preserve-digests`)."""
    args = ["copy", "--preserve-digests", "--dest-tls-verify=false"]
    if credentials:
        args.append("--dest-creds=" + ":".join(credentials))
    if is_index:
        args.append("--all")  # without it, skopeo copies only the host's platform
    skopeo(*args, f"oci:{root}:{tag}", f"docker://{destination}")


def _elf(code: bytes, message: bytes) -> bytes:
    """A static x86-64 ELF of one loadable segment: `code`, then `message` (which the code's
    rip-relative lea 16 bytes in points at)."""
    base, headers = 0x400000, 64 + 56
    size = headers + len(code) + len(message)
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)
    ehdr = struct.pack("<16sHHIQQQIHHHHHH", ident, 2, 0x3E, 1, base + headers, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return ehdr + phdr + code + message


def serving_binary(message: bytes) -> bytes:
    """Like hello_binary, but the process stays (pause() in a loop) as a service does."""
    code = (
        b"\xb8\x01\x00\x00\x00"  # mov eax, 1 (write)
        b"\xbf\x01\x00\x00\x00"  # mov edi, 1 (stdout)
        b"\x48\x8d\x35\x10\x00\x00\x00"  # lea rsi, [rip + 16] (the message)
        + b"\xba"
        + struct.pack("<I", len(message))  # mov edx, len
        + b"\x0f\x05"  # syscall
        b"\xb8\x22\x00\x00\x00"  # mov eax, 34 (pause)
        b"\x0f\x05"  # syscall
        b"\xeb\xf7"  # jmp back to the pause
    )
    return _elf(code, message)


def hello_binary(message: bytes = b"hello from the container-lock test image\n") -> bytes:
    """A static x86-64 Linux ELF that writes `message` and exits 0 (no libc, no shell needed)."""
    code = (
        b"\xb8\x01\x00\x00\x00"  # mov eax, 1 (write)
        b"\xbf\x01\x00\x00\x00"  # mov edi, 1 (stdout)
        b"\x48\x8d\x35\x10\x00\x00\x00"  # lea rsi, [rip + 16] (the message)
        + b"\xba"
        + struct.pack("<I", len(message))  # mov edx, len
        + b"\x0f\x05"  # syscall
        b"\xb8\x3c\x00\x00\x00"  # mov eax, 60 (exit)
        b"\x31\xff"  # xor edi, edi
        b"\x0f\x05"  # syscall
    )
    return _elf(code, message)


def base_files(name: str) -> dict[str, bytes]:
    """A small, real-looking root file system with a runnable /bin/hello."""
    return {
        "etc/os-release": f'NAME="container-lock test"\nID=cltest\nVERSION_ID="{name}"\n'.encode(),
        "bin/hello": hello_binary(),
        "usr/share/doc/README": b"Generated by tests/harness/images.py.\n" * 8,
    }


def _log_text(rng: random.Random, words: list[str], size: int) -> bytes:
    lines = [
        f"2026-01-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00Z host{rng.randint(1, 9)} "
        f"svc[{rng.randint(100, 999)}]: " + " ".join(rng.choices(words, k=10))
        for n in range(size // 90 + 1)
    ]
    return ("\n".join(lines) + "\n").encode()[:size]


_RECORD = struct.Struct("<I12x16s")


def _records(rng: random.Random, words: list[str], size: int) -> bytes:
    padded = [w.encode() for w in words]
    count = size // _RECORD.size + 1
    names = rng.choices(padded, k=count)
    return b"".join(_RECORD.pack(rng.getrandbits(16), w) for w in names)[:size]


def compressible_files(size_mb: int, seed: int = 1) -> dict[str, bytes]:
    """Exactly `size_mb` MiB of pseudo-log text and structured records from a seeded RNG.

    Compresses to about a third with gzip; no random bytes.
    """
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choices(alphabet, k=rng.randint(2, 9))) for _ in range(2000)]
    files: dict[str, bytes] = {}
    total, chunk = size_mb << 20, 4 << 20
    for i, start in enumerate(range(0, total, chunk)):
        size = min(chunk, total - start)
        if i % 2:
            files[f"usr/share/data/part{i:03d}.log"] = _log_text(rng, words, size)
        else:
            files[f"usr/share/data/part{i:03d}.bin"] = _records(rng, words, size)
    return files


_SHARED_BASE: Files = {**base_files("shared-base"), "usr/lib/base.txt": b"shared base layer\n" * 512}


@dataclass
class _Built:
    image: PushedImage
    layout: Path


class ImageFactory:
    """Writes OCI layouts under `workdir` and pushes them to `registry_host`.

    Asking twice for the same image returns the first result without pushing again, unless
    this factory has since pushed something else to that tag: then it is pushed back. The
    factory knows only of its own pushes.
    """

    def __init__(self, workdir: Path, registry_host: str, credentials: tuple[str, str] | None = None) -> None:
        self.workdir = workdir
        self.host = registry_host
        self.credentials = credentials
        self._built: dict[tuple[object, ...], _Built] = {}
        self._tags: dict[tuple[str, str], str] = {}  # (repository, tag) -> digest this factory pushed
        self._generations: dict[tuple[str, str], int] = {}
        self._counter = 0

    def _layout(self) -> Layout:
        self._counter += 1
        return Layout(self.workdir / f"layout-{self._counter}")

    def _publish(
        self, key: tuple[object, ...], build: Callable[[], tuple[Layout, PushedImage]]
    ) -> PushedImage:
        """Build once per key; push when the tag does not hold this image (as far as we know)."""
        built = self._built.get(key)
        if built is None:
            layout, image = build()
            built = self._built[key] = _Built(image, layout.root)
        image = built.image
        if self._tags.get((image.repository, image.tag)) != image.digest:
            push_layout(
                built.layout,
                image.tag,
                f"{self.host}/{image.repository}:{image.tag}",
                is_index=image.is_index,
                credentials=self.credentials,
            )
            self._tags[(image.repository, image.tag)] = image.digest
        return image

    def _single(
        self, repository: str, tag: str, platform: str, layers: list[Files], levels: tuple[int, ...] = ()
    ) -> tuple[Layout, PushedImage]:
        """A one-platform layout; `levels` are gzip levels per layer (default 6)."""
        layout = self._layout()
        descs = [layout.layer(f, levels[i] if i < len(levels) else 6) for i, f in enumerate(layers)]
        desc, image = layout.image(platform, descs)
        layout.finish(tag, desc)
        return layout, PushedImage(self.host, repository, tag, image.manifest_digest, {platform: image})

    def layered(
        self,
        repository: str,
        layers: list[Files],
        tag: str = "1.0",
        platform: str = "linux/amd64",
        compressions: tuple[str, ...] = (),
        cmd: tuple[str, ...] = ("/bin/hello",),
    ) -> PushedImage:
        """A one-platform image of these layers, bottom first; `compressions` per layer
        (`gzip`, the default, `zstd` or `none`); `cmd` is the container's command."""
        check_names(repository, tag, platform)

        def build() -> tuple[Layout, PushedImage]:
            layout = self._layout()
            kinds = [compressions[i] if i < len(compressions) else "gzip" for i in range(len(layers))]
            descs = [layout.layer(files, 3, kind) for files, kind in zip(layers, kinds, strict=True)]
            desc, image = layout.image(platform, descs, cmd)
            layout.finish(tag, desc)
            return layout, PushedImage(self.host, repository, tag, image.manifest_digest, {platform: image})

        key = ("layered", repository, tag, platform, tuple(_freeze(files) for files in layers), compressions)
        if cmd != ("/bin/hello",):
            key += (cmd,)
        return self._publish(key, build)

    def rootfs(
        self, repository: str, tar: Path, tag: str = "1.0", platform: str = "linux/amd64"
    ) -> PushedImage:
        """A one-layer image of a root file system tar (gzip level 1)."""
        check_names(repository, tag, platform)

        def build() -> tuple[Layout, PushedImage]:
            layout = self._layout()
            desc, image = layout.image(platform, [layout.tar_layer(tar.read_bytes(), 1)])
            layout.finish(tag, desc)
            return layout, PushedImage(self.host, repository, tag, image.manifest_digest, {platform: image})

        return self._publish(("rootfs", repository, tag, platform, str(tar), tar.stat().st_mtime_ns), build)

    def single_arch(
        self,
        repository: str,
        tag: str = "1.0",
        platform: str = "linux/amd64",
        files: Files | None = None,
        base: Files | None = None,
    ) -> PushedImage:
        """A one-platform image: an optional `base` layer, then a layer of `files`
        (by default a small root file system naming the repository)."""
        check_names(repository, tag, platform)
        own = dict(files) if files is not None else base_files(repository)
        layers = [base, own] if base else [own]
        key = ("single", repository, tag, platform, _freeze(files), _freeze(base))
        return self._publish(key, lambda: self._single(repository, tag, platform, layers))

    def push_new_content(
        self, repository: str, tag: str = "1.0", platform: str = "linux/amd64"
    ) -> PushedImage:
        """Move `tag` to content it has not had from this factory before (generation 1, 2, …)."""
        generation = self._generations[(repository, tag)] = self._generations.get((repository, tag), 0) + 1
        files = {**base_files(repository), "etc/generation": f"{generation}\n".encode()}
        return self.single_arch(repository, tag, platform, files=files)

    def multi_arch(
        self, repository: str, tag: str = "1.0", platforms: tuple[str, ...] = ALL_PLATFORMS
    ) -> PushedImage:
        """An OCI image index; each platform's content differs (it names its platform)."""
        check_names(repository, tag)
        for platform in platforms:
            check_names(repository, tag, platform)

        def build() -> tuple[Layout, PushedImage]:
            layout = self._layout()
            entries, images = [], {}
            for platform in platforms:
                files = {**base_files(repository), "etc/platform": platform.encode()}
                entry, images[platform] = layout.image(platform, [layout.layer(files)])
                entries.append(entry)
            top = layout.index(entries)
            layout.finish(tag, top)
            return layout, PushedImage(self.host, repository, tag, str(top["digest"]), images, is_index=True)

        return self._publish(("multi", repository, tag, tuple(platforms)), build)

    def shared_base_family(self, prefix: str, n: int, tag: str = "1.0") -> list[PushedImage]:
        """`n` images `<prefix>-0` … with one identical base layer and one layer of their own."""
        return [
            self.single_arch(
                f"{prefix}-{i}", tag, files={"app/name": f"{prefix}-{i}".encode()}, base=_SHARED_BASE
            )
            for i in range(n)
        ]

    def sharing_base(
        self, repositories: tuple[str, str], tag: str = "1.0"
    ) -> tuple[PushedImage, PushedImage]:
        """Two images that share their base layer (same digest) and have one own layer each."""
        first, second = (
            self.single_arch(repo, tag, files={"app/name": repo.encode()}, base=_SHARED_BASE)
            for repo in repositories
        )
        return first, second

    def large_compressible(self, repository: str, tag: str = "1.0", size_mb: int = 100) -> PushedImage:
        """A small base layer plus `size_mb` MiB of compressible content in two layers (gzip level 1)."""
        check_names(repository, tag)

        def build() -> tuple[Layout, PushedImage]:
            files = compressible_files(size_mb)
            names = sorted(files)
            half = (len(names) + 1) // 2
            parts = [{k: files[k] for k in names[:half]}, {k: files[k] for k in names[half:]}]
            layers = [base_files(repository), *(p for p in parts if p)]
            return self._single(repository, tag, "linux/amd64", layers, levels=(6, 1, 1))

        return self._publish(("large", repository, tag, size_mb), build)

    def retag(self, image: PushedImage, repository: str, tag: str) -> PushedImage:
        """Copy the same content to another repository/tag (same digest) within the registry."""
        check_names(repository, tag)
        args = ["copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false"]
        if self.credentials:
            creds = ":".join(self.credentials)
            args += [f"--src-creds={creds}", f"--dest-creds={creds}"]
        skopeo(*args, f"docker://{image.ref_by_digest}", f"docker://{self.host}/{repository}:{tag}")
        self._tags[(repository, tag)] = image.digest
        return PushedImage(self.host, repository, tag, image.digest, image.platforms, image.is_index)


def _freeze(files: Files | None) -> tuple[tuple[str, bytes], ...] | None:
    return None if files is None else tuple(sorted(files.items()))
