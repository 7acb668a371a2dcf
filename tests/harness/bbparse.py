"""How many recipes a `bitbake -p` (or any bitbake command) parsed, from knotty's output."""

from __future__ import annotations

import re
from dataclasses import dataclass

_PARSED = re.compile(r"Parsing of (\d+) \.bb files complete \((\d+) cached, (\d+) parsed\)")
_LOADED = re.compile(r"Loaded (\d+) entries from dependency cache")


@dataclass(frozen=True)
class ParseCounts:
    """Recipes parsed (not served from the parse cache); `recipes` is None when none was parsed."""

    parsed: int
    recipes: int | None


def parse_counts(output: str) -> ParseCounts:
    """The counts of the first parse in `output`.

    BitBake prints `Parsing of N .bb files complete (C cached, P parsed)` when it parsed any
    recipe, and only `Loaded E entries from dependency cache` when every recipe came from the cache.
    """
    m = _PARSED.search(output)
    if m:
        return ParseCounts(int(m[3]), int(m[1]))
    if _LOADED.search(output):
        return ParseCounts(0, None)
    raise ValueError(f"no parse summary in bitbake's output:\n{output[-3000:]}")
