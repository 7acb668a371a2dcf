"""Test images: OCI layouts written by code (deterministic digests), pushed with skopeo."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import struct
import subprocess
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ALL_PLATFORMS = ("linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/arm/v6")

Files = Mapping[str, bytes]


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
    digest: str
    platforms: dict[str, PlatformImage] = field(hash=False)
    is_index: bool = False

    @property
    def reference(self) -> str:
        return f"{self.host}/{self.repository}:{self.tag}"

    @property
    def ref_by_digest(self) -> str:
        return f"{self.host}/{self.repository}@{self.digest}"


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_bytes(files: Files) -> bytes:
    """An uncompressed tar of `files`, reproducible (sorted, mtime 0, root-owned)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({str(Path(p).parent) for p in files} - {"."})
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name in sorted(files):
            data = files[name]
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            info.mode = 0o755 if data.startswith((b"#!", b"\x7fELF")) else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gzip_bytes(data: bytes, level: int = 6) -> bytes:
    """Deterministic gzip (no name, mtime 0)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=level, mtime=0) as gz:
        gz.write(data)
    return out.getvalue()


class Layout:
    """An OCI image layout being written: blobs, then index.json."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def blob(self, data: bytes, media_type: str) -> dict[str, object]:
        digest = _sha(data)
        (self.root / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def layer(self, files: Files, level: int = 6) -> tuple[dict[str, object], Layer]:
        raw = tar_bytes(files)
        desc = self.blob(gzip_bytes(raw, level), OCI_LAYER_GZIP)
        return desc, Layer(str(desc["digest"]), int(desc["size"]), _sha(raw))

    def image(
        self, platform: str, layers: list[tuple[dict[str, object], Layer]]
    ) -> tuple[dict, PlatformImage]:
        os_, arch, *variant = platform.split("/")
        config = {
            "architecture": arch,
            "os": os_,
            "created": "1970-01-01T00:00:00Z",
            "config": {"Cmd": ["/bin/hello"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [lay.diff_id for _, lay in layers]},
        }
        if variant:
            config["variant"] = variant[0]
        cdesc = self.blob(_json(config), OCI_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": cdesc,
            "layers": [desc for desc, _ in layers],
        }
        mdesc = self.blob(_json(manifest), OCI_MANIFEST)
        plat = {"os": os_, "architecture": arch, **({"variant": variant[0]} if variant else {})}
        return {**mdesc, "platform": plat}, PlatformImage(
            platform, str(mdesc["digest"]), str(cdesc["digest"]), tuple(lay for _, lay in layers)
        )

    def finish(self, tag: str, top: dict[str, object]) -> None:
        entry = {k: v for k, v in top.items() if k != "platform"}
        entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
        (self.root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))


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
    base, headers = 0x400000, 64 + 56
    size = headers + len(code) + len(message)
    ehdr = struct.pack(
        "<16sHHIQQQIHHHHHH",
        b"\x7fELF\x02\x01\x01" + bytes(9),
        2,
        0x3E,
        1,
        base + headers,
        64,
        0,
        0,
        64,
        56,
        1,
        0,
        0,
        0,
    )
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return ehdr + phdr + code + message


def base_files(name: str) -> dict[str, bytes]:
    """A small, real-looking root file system with a runnable /bin/hello."""
    return {
        "etc/os-release": f'NAME="container-lock test"\nID=cltest\nVERSION_ID="{name}"\n'.encode(),
        "bin/hello": hello_binary(),
        "usr/share/doc/README": b"Generated by tests/harness/images.py.\n" * 8,
    }


def compressible_files(size_mb: int, seed: int = 1) -> dict[str, bytes]:
    """~size_mb MB of text and structured records that compress well, from a seeded RNG."""
    rng = random.Random(seed)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(2000)
    ]
    files: dict[str, bytes] = {}
    chunk = 4 << 20
    for i in range(max(1, size_mb * (1 << 20) // chunk)):
        if i % 2:
            lines = [
                f"2026-01-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00Z host{rng.randint(1, 9)} "
                f"svc[{rng.randint(100, 999)}]: " + " ".join(rng.choices(words, k=10))
                for n in range(chunk // 90)
            ]
            data = ("\n".join(lines) + "\n").encode()
        else:
            records = bytearray()
            while len(records) < chunk:
                n = rng.randint(0, 1 << 16)
                records += n.to_bytes(4, "little") + bytes(12) + rng.choice(words).encode().ljust(16, b"\0")
            data = bytes(records)
        files[f"usr/share/data/part{i:03d}.{'log' if i % 2 else 'bin'}"] = data[:chunk]
    return files


class ImageFactory:
    """Writes OCI layouts under `workdir` and pushes them to `registry_host`."""

    def __init__(self, workdir: Path, registry_host: str, credentials: tuple[str, str] | None = None) -> None:
        self.workdir = workdir
        self.host = registry_host
        self.credentials = credentials
        self._cache: dict[tuple, PushedImage] = {}
        self._counter = 0

    def _layout(self) -> Layout:
        self._counter += 1
        return Layout(self.workdir / f"layout-{self._counter}")

    def _push(self, layout: Layout, repository: str, tag: str, all_platforms: bool) -> None:
        cmd = ["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false"]
        if self.credentials:
            cmd.append("--dest-creds=" + ":".join(self.credentials))
        if all_platforms:
            cmd.append("--all")
        cmd += [f"oci:{layout.root}:{tag}", f"docker://{self.host}/{repository}:{tag}"]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr}")

    def _cached(self, key: tuple, build) -> PushedImage:
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def single_arch(
        self,
        repository: str,
        tag: str = "1.0",
        platform: str = "linux/amd64",
        files: Files | None = None,
        base: Files | None = None,
    ) -> PushedImage:
        """A one-platform image: an optional base layer, then a layer of `files`."""
        key = ("single", repository, tag, platform, _freeze(files), _freeze(base))

        def build() -> PushedImage:
            layout = self._layout()
            own = dict(files) if files is not None else base_files(repository)
            layers = ([layout.layer(base)] if base else []) + [layout.layer(own)]
            desc, image = layout.image(platform, layers)
            layout.finish(tag, desc)
            self._push(layout, repository, tag, all_platforms=False)
            return PushedImage(self.host, repository, tag, image.manifest_digest, {platform: image})

        return self._cached(key, build)

    def multi_arch(
        self, repository: str, tag: str = "1.0", platforms: tuple[str, ...] = ALL_PLATFORMS
    ) -> PushedImage:
        """An OCI image index; each platform's content differs (it names its platform)."""

        def build() -> PushedImage:
            layout = self._layout()
            entries, images = [], {}
            for platform in platforms:
                files = {**base_files(repository), "etc/platform": platform.encode()}
                entry, image = layout.image(platform, [layout.layer(files)])
                entries.append(entry)
                images[platform] = image
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
            top = layout.blob(_json(index), OCI_INDEX)
            layout.finish(tag, top)
            self._push(layout, repository, tag, all_platforms=True)
            return PushedImage(self.host, repository, tag, str(top["digest"]), images, is_index=True)

        return self._cached(("multi", repository, tag, platforms), build)

    def shared_base_family(self, prefix: str, n: int, tag: str = "1.0") -> list[PushedImage]:
        """`n` images with one identical base layer and one layer of their own."""
        base = {**base_files("shared-base"), "usr/lib/base.txt": b"shared base layer\n" * 512}
        return [
            self.single_arch(f"{prefix}-{i}", tag, files={"app/name": f"{prefix}-{i}".encode()}, base=base)
            for i in range(n)
        ]

    def sharing_base(
        self, repositories: tuple[str, str], tag: str = "1.0"
    ) -> tuple[PushedImage, PushedImage]:
        """Two images that share their base layer."""
        base = {**base_files("shared-base"), "usr/lib/base.txt": b"shared base layer\n" * 512}
        first, second = (
            self.single_arch(repo, tag, files={"app/name": repo.encode()}, base=base) for repo in repositories
        )
        return first, second

    def large_compressible(self, repository: str, tag: str = "1.0", size_mb: int = 100) -> PushedImage:
        """~size_mb MB of compressible content (layers gzip level 1, for speed)."""

        def build() -> PushedImage:
            layout = self._layout()
            files = compressible_files(size_mb)
            names = sorted(files)
            half = len(names) // 2
            layers = [
                layout.layer(base_files(repository)),
                layout.layer({k: files[k] for k in names[:half]}, level=1),
                layout.layer({k: files[k] for k in names[half:]}, level=1),
            ]
            desc, image = layout.image("linux/amd64", layers)
            layout.finish(tag, desc)
            self._push(layout, repository, tag, all_platforms=False)
            return PushedImage(self.host, repository, tag, image.manifest_digest, {"linux/amd64": image})

        return self._cached(("large", repository, tag, size_mb), build)

    def retag(self, image: PushedImage, repository: str, tag: str) -> PushedImage:
        """Push the same content under another repository/tag (same digest)."""
        cmd = [
            "skopeo",
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"docker://{image.ref_by_digest}",
            f"docker://{self.host}/{repository}:{tag}",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr}")
        return PushedImage(self.host, repository, tag, image.digest, image.platforms, image.is_index)


def _freeze(files: Files | None) -> tuple | None:
    return None if files is None else tuple(sorted(files.items()))
