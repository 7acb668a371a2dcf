"""Vulnerability audit benchmark (one run): import N generated OSV records, audit M images × P packages.

Records: 70 % Debian:12 (by source package), 15 % PyPI, 15 % Alpine:v3.19, each with one to three
ECOSYSTEM ranges (introduced / fixed / last_affected), a third with aliases, 1 % withdrawn, CVSS
vectors on most; written as osv.dev does (one all.zip per ecosystem). Images: Debian bookworm
bases of P packages drawn from the same source-package names (so many packages have records),
a tenth of them with Python packages, distinct digests. Measures, each as a subprocess:
`vulndb import` (wall), the index size, `audit --json` (wall, and the audit alone in-process
after the index is opened), `sbom` vs `sbom --db`.
The audit's cost per package is printed at 1, 10 and 100 images (`--scaling`), so a step that
grows faster than the number of packages would show.
First it prints what one Debian version comparison costs: python-debian's pure-Python `<`
against the tuple key the audit compares instead (vulns/versions.py); `--comparisons` prints
only that (a second).
Run: `.venv/bin/python -m benchmarks.vulns [--records 100000] [--images 100] [--packages 150]
[--distinct] [--scaling 1,10,100] [--comparisons]`.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from benchmarks.common import machine
from tests.harness.osv import CVSS_CRITICAL, CVSS_HIGH, CVSS_LOW, CVSS_MEDIUM, image, record, write_manifest

DEB12 = {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"}
SOURCES = 3000  # distinct source package names the records and the images share
CVSS = (CVSS_CRITICAL, CVSS_HIGH, CVSS_MEDIUM, CVSS_LOW, None)


def current(source: int) -> str:
    """The version of source package `source` that the images carry."""
    return f"{source % 7}.{source % 13}.{source % 5}-{1 + source % 3}"


def version(rng: random.Random) -> str:
    return f"{rng.randint(0, 6)}.{rng.randint(0, 12)}.{rng.randint(0, 4)}-{rng.randint(1, 3)}"


def generated_records(n: int, seed: int = 21) -> dict[str, list[dict]]:
    """`n` records by export file name, shaped like the exports: mostly one range `introduced 0, fixed X`,
    most fixes below what the images carry (old vulnerabilities), some above, some unfixed; a tenth
    with two ranges (introduced later, fixed, reintroduced)."""
    rng = random.Random(seed)
    exports: dict[str, list[dict]] = {"Debian": [], "PyPI": [], "Alpine": []}
    for i in range(n):
        pick = rng.random()
        source = rng.randrange(SOURCES)
        if pick < 0.70:
            ecosystem, name, export = "Debian:12", f"src{source}", "Debian"
        elif pick < 0.85:
            ecosystem, name, export = "PyPI", f"py-lib{rng.randrange(500)}", "PyPI"
        else:
            ecosystem, name, export = "Alpine:v3.19", f"src{source}", "Alpine"
        odds = rng.random()
        if ecosystem == "PyPI":
            fixed = f"{rng.randint(1, 9)}.{rng.randint(0, 9)}"
        elif odds < 0.90:
            fixed = (
                f"{source % 7}.{source % 13}.{source % 5}-{1 + source % 3}~old{rng.randint(1, 9)}"  # below
            )
        elif odds < 0.95:
            fixed = (
                f"{source % 7}.{source % 13}.{source % 5}-{1 + source % 3}+deb12u{rng.randint(1, 9)}"  # above
            )
        else:
            fixed = None
        events = [{"introduced": "0"}] + ([{"fixed": fixed}] if fixed else [])
        ranges = [{"type": "ECOSYSTEM", "events": events}]
        if rng.random() < 0.1:
            low, high = sorted((version(rng), version(rng)))
            ranges.append({"type": "ECOSYSTEM", "events": [{"introduced": low}, {"fixed": high}]})
        vuln_id = f"CVE-2026-{i:06d}" if export != "PyPI" else f"PYSEC-2026-{i}"
        aliases = [f"DSA-{i}-1"] if export == "Debian" and rng.random() < 0.33 else []
        exports[export].append(
            record(
                vuln_id,
                ecosystem,
                name,
                ranges,
                aliases=aliases,
                cvss=rng.choice(CVSS),
                withdrawn="2026-06-01T00:00:00Z" if rng.random() < 0.01 else None,
            )
        )
    return exports


def write_exports(directory: Path, exports: dict[str, list[dict]]) -> list[Path]:
    paths = []
    for name, docs in exports.items():
        path = directory / f"{name}-all.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for doc in docs:
                info = zipfile.ZipInfo(f"{doc['id']}.json", date_time=(2026, 1, 1, 0, 0, 0))
                archive.writestr(info, json.dumps(doc), zipfile.ZIP_DEFLATED)
        paths.append(path)
    return paths


def _deb(rng: random.Random, k: int) -> dict:
    source = rng.randrange(SOURCES)
    own = current(source) + ("+b1" if source % 10 == 0 else "")  # a binNMU now and then
    return {
        "type": "deb",
        "name": f"lib{source}-{k}",
        "version": own,
        "arch": "amd64",
        "source": f"src{source}",
    }


def write_images(directory: Path, images: int, packages: int, distinct: bool = False, seed: int = 7) -> Path:
    """Loader manifests of `images` images of `packages` packages: by default five bases of
    `packages` - 20 Debian packages shared by the images, plus 20 of each image's own (a tenth with
    10 Python packages among them); `distinct`: every package of every image drawn anew."""
    rng = random.Random(seed)
    bases = [[_deb(rng, k) for k in range(packages - 20)] for _ in range(5)]
    deploy = directory / "deploy"
    deploy.mkdir()
    for m in range(0, images, 10):
        entries = []
        for i in range(m, min(m + 10, images)):
            if distinct:
                found = [_deb(rng, k) for k in range(packages - 10)]
            else:
                found = list(bases[i % 5]) + [_deb(rng, 1000 + k) for k in range(10)]
            pypi = [
                {
                    "type": "pypi",
                    "name": f"py-lib{rng.randrange(500)}",
                    "version": f"{rng.randint(1, 9)}.{rng.randint(0, 9)}",
                    "database": f"usr/lib/python3/dist-packages/p{k}.dist-info/METADATA",
                }
                for k in range(10)
            ]
            found += pypi if i % 10 == 0 else [_deb(rng, 2000 + k) for k in range(10)]
            entries.append(image(f"app{i:03d}", DEB12, found))
        write_manifest(deploy / f"loader-{m:03d}.json", entries, name=f"loader-{m:03d}")
    return deploy


def timed(*args: object) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "audit", *map(str, args)], capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if result.returncode not in (0, 1):
        raise SystemExit(f"{args[0]} failed ({result.returncode}): {result.stderr[-2000:]}")
    return elapsed, result


def in_process_audit(db: Path, deploy: Path, runs: int = 3) -> tuple[float, float, int, int]:
    """(seconds to read the targets, seconds for the audit alone, findings, packages): the fastest of `runs`,
    each from a newly opened index with the version caches emptied (the machine is shared: the
    minimum is the least disturbed)."""
    from vulns import db as vulndb
    from vulns import findings, matching, targets, versions

    best_read = best_audit = float("inf")
    count = packages = 0
    for _ in range(runs):
        for cached in (
            versions.key,
            versions._part_key,
            versions._segment_key,
            matching._less,
            matching._ordered,
            vulndb.parse_entry,
        ):
            cached.cache_clear()
        start = time.perf_counter()
        found, _ = targets.load(sorted(deploy.glob("*.json")))
        best_read = min(best_read, time.perf_counter() - start)
        index = vulndb.Index(db)
        start = time.perf_counter()
        result, _ = findings.audit(index, found)
        best_audit = min(best_audit, time.perf_counter() - start)
        index.close()
        count, packages = len(result), len(found)
    return best_read, best_audit, count, packages


def per_package(db: Path, work: Path, counts: list[int], packages: int, distinct: bool) -> None:
    """The audit's cost per package at `counts` images of the same shape: flat or falling (shared
    packages looked up once) is linear; rising would be a step that grows faster than the images."""
    for images in counts:
        directory = work / f"scale-{images}"
        directory.mkdir()
        deploy = write_images(directory, images, packages, distinct)
        _, alone, count, targets = in_process_audit(db, deploy)
        print(
            f"  {images} image(s), {targets} packages: audit {alone * 1000:.1f} ms, "
            f"{alone / targets * 1e6:.1f} µs per package ({count} findings)"
        )


def comparison_cost(pairs: int = 20_000, seed: int = 5) -> None:
    """µs per comparison of two Debian versions: python-debian's `<` vs the audit's tuple keys."""
    from debian.debian_support import Version

    from vulns import versions

    rng = random.Random(seed)

    def debian_like() -> str:  # e.g. 1:2.36.1~rc2-9+deb12u4: an epoch, ~, + and revisions
        epoch = rng.choice(["", "", "1:", "2:"])
        upstream = ".".join(str(rng.randint(0, 40)) for _ in range(rng.randint(2, 4)))
        upstream += rng.choice(["", "", "~rc2", "+dfsg", "+ds1"])
        return f"{epoch}{upstream}-{rng.randint(1, 12)}{rng.choice(['', '+deb12u4', '+b1'])}"

    texts = [(debian_like(), debian_like()) for _ in range(pairs)]
    objects = [(Version(a), Version(b)) for a, b in texts]
    keys = [(versions.key("deb", a), versions.key("deb", b)) for a, b in texts]
    costs = {}
    for name, operands in (("python-debian", objects), ("tuple key", keys)):
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for a, b in operands:
                _ = a < b
            best = min(best, time.perf_counter() - start)
        costs[name] = best / pairs * 1e6
    print(
        f"Debian version comparison, {pairs} generated pairs (epochs, ~, +), fastest of 3: python-debian "
        f"({Version.__mro__[1].__name__}) {costs['python-debian']:.1f} µs, "
        f"tuple key {costs['tuple key']:.2f} µs per comparison"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--packages", type=int, default=150)
    parser.add_argument("--distinct", action="store_true", help="No package shared between images.")
    parser.add_argument(
        "--scaling",
        default="1,10,100",
        help="Image counts for the audit's cost per package (comma-separated; default 1,10,100).",
    )
    parser.add_argument("--comparisons", action="store_true", help="Only the comparison cost.")
    args = parser.parse_args()
    print(machine())
    comparison_cost()
    if args.comparisons:
        return
    with tempfile.TemporaryDirectory(prefix="cl-bench-vulns.") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        exports = write_exports(work, generated_records(args.records))
        print(
            f"generated {args.records} records in {time.perf_counter() - start:.1f} s: "
            + ", ".join(f"{p.name} {p.stat().st_size / 1e6:.1f} MB" for p in exports)
        )
        db = work / "osv.db"
        seconds, _ = timed("vulndb", "import", *exports, "--db", db)
        print(
            f"vulndb import: {seconds:.1f} s wall ({args.records / seconds:,.0f} records/s); "
            f"index {db.stat().st_size / 1e6:.1f} MB"
        )
        again, _ = timed("vulndb", "import", *exports, "--db", work / "again.db")
        same = (work / "again.db").read_bytes() == db.read_bytes()
        print(f"re-import: {again:.1f} s, byte-identical index: {same}")
        deploy = write_images(work, args.images, args.packages, args.distinct)
        manifests = sorted(deploy.glob("*.json"))
        seconds, result = timed("audit", *manifests, "--db", db, "--json")
        report = json.loads(result.stdout)
        shape = "no package shared" if args.distinct else "five shared bases + 20 own packages each"
        print(
            f"audit {args.images} images x {args.packages} packages ({shape}): {seconds:.2f} s wall "
            f"(process, imports, targets, audit, JSON); {len(report['findings'])} findings"
        )
        read, alone, count, packages = in_process_audit(db, deploy)
        print(
            f"  in-process (fastest of 3): reading the manifests {read:.2f} s, the audit against the index "
            f"{alone:.2f} s ({alone / packages * 1e6:.1f} µs per package; {count} findings)"
        )
        print("audit cost per package (in-process, fastest of 3):")
        per_package(db, work, [int(n) for n in args.scaling.split(",")], args.packages, args.distinct)
        plain, _ = timed("sbom", "--deploy-dir", deploy, "-o", work / "plain.cdx.json")
        with_db, _ = timed("sbom", "--deploy-dir", deploy, "--db", db, "-o", work / "db.cdx.json")
        print(
            f"sbom: {plain:.2f} s; sbom --db: {with_db:.2f} s ({with_db / plain:.2f}x); "
            f"sizes {(work / 'plain.cdx.json').stat().st_size / 1e6:.1f} MB, "
            f"{(work / 'db.cdx.json').stat().st_size / 1e6:.1f} MB"
        )


if __name__ == "__main__":
    main()
