"""Stand-in for BitBake's `hashserv` (not shipped by bitbake-setup).

Only hash equivalence needs it; the tests use `basichash`, which never calls it.
"""

import re

_UNIHASH = re.compile(r"^[0-9a-f]{64}$")


def is_valid_unihash(unihash: str) -> bool:
    """Same rule as the real module: a sha256 hex digest."""
    return bool(_UNIHASH.match(unihash))


def create_client(*args: object, **kwargs: object) -> None:
    raise RuntimeError("hash equivalence (BB_HASHSERVE) is not available in the test harness")
