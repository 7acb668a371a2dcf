"""Policy files: the shared model (containerlock.policy) and the built-in policies shipped here."""

from __future__ import annotations

from pathlib import Path

from containerlock.policy import BUILTIN, RULES, SEVERITIES, Policy, PolicyError, Signer, parse
from containerlock.policy import load as _load

BUILTIN_DIR = Path(__file__).resolve().parent

__all__ = [
    "BUILTIN",
    "BUILTIN_DIR",
    "RULES",
    "SEVERITIES",
    "Policy",
    "PolicyError",
    "Signer",
    "load",
    "parse",
]


def load(spec: str | None) -> Policy:
    """A built-in policy (`default`, `strict`) or a policy file (see containerlock.policy.load)."""
    return _load(spec, BUILTIN_DIR)
