"""`python3 -m containerlock.preload exclude|write …`: the image build's two steps (run as root).

- `exclude ROOTFS POOL`: before the packages are installed, a dpkg drop-in in ROOTFS that keeps
  the archives of every loader package under POOL (the built .debs) out of the root file system.
- `write ROOTFS POOL WORK IMAGE`: after they are installed, the stores, the record; the drop-in
  removed (a later `dpkg -i` on the device installs its archives); the preload manifest on stdout.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..files import atomic_write
from . import PreloadError, debs, run


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["exclude"] and len(argv) == 3:
            rootfs, pool = Path(argv[1]), Path(argv[2])
            shares = [deb.share for deb in debs.loader_debs(pool)]
            atomic_write(rootfs / debs.DROP_IN, debs.drop_in(shares).encode())
            print(f"container-preload: archives of {len(shares)} loader package(s) kept out of {rootfs}")
            return 0
        if argv[:1] == ["write"] and len(argv) == 5:
            rootfs, pool, work, image = Path(argv[1]), Path(argv[2]), Path(argv[3]), argv[4]
            done = run.preload(rootfs, pool, work, int(os.environ.get("SOURCE_DATE_EPOCH") or 0))
            (rootfs / debs.DROP_IN).unlink(missing_ok=True)
            print(json.dumps(run.manifest(image, done), indent=2, sort_keys=True))
            return 0
    except PreloadError as err:
        print(f"container-preload: {err}", file=sys.stderr)
        return 1
    print(
        "usage: python3 -m containerlock.preload exclude ROOTFS POOL | write ROOTFS POOL WORK IMAGE",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
