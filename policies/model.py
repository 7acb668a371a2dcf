"""Policy files (TOML): which findings are errors, which tags and registries are allowed."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

SEVERITIES = ("error", "warning", "ignore")
RULES = (
    "unpinned",
    "no-tag",
    "lock-mismatch",
    "unused-lock-entry",
    "forbidden-tag",
    "registry-not-allowed",
    "unresolved",
    "invalid-url",
)
BUILTIN = ("default", "strict")


class PolicyError(ValueError):
    """A policy file cannot be used; the text names the file and the problem."""


@dataclass(frozen=True)
class Policy:
    """A loaded policy."""

    name: str
    severities: dict[str, str]
    forbidden_tags: tuple[str, ...] = ()
    allowed_registries: tuple[str, ...] = ()
    signers: tuple[dict[str, str], ...] = field(default_factory=tuple)

    def severity(self, rule: str) -> str:
        return self.severities.get(rule, "warning")


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{where} must be a list of strings")
    return tuple(value)


def parse(text: str, where: str, base: Policy | None = None) -> Policy:
    """Parse policy TOML; `where` names the file in errors.

    Rules and image settings the file leaves out come from `base` (the policy it extends).
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise PolicyError(f"{where}: not valid TOML: {err}") from None
    if doc.get("version") != 1:
        raise PolicyError(f"{where}: 'version = 1' is required")
    rules = doc.get("rules", {})
    if not isinstance(rules, dict):
        raise PolicyError(f"{where}: [rules] must be a table")
    for rule, severity in rules.items():
        if rule not in RULES:
            raise PolicyError(f"{where}: unknown rule '{rule}'; known: {', '.join(RULES)}")
        if severity not in SEVERITIES:
            raise PolicyError(f"{where}: rule '{rule}' = '{severity}'; use one of {', '.join(SEVERITIES)}")
    images = doc.get("images", {})
    if not isinstance(images, dict):
        raise PolicyError(f"{where}: [images] must be a table")
    unknown = set(images) - {"forbidden_tags", "allowed_registries"}
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) in [images]: {', '.join(sorted(unknown))}")
    inherited = base or Policy("none", {})

    def strings(key: str, fallback: tuple[str, ...]) -> tuple[str, ...]:
        return _strings(images[key], f"{where}: images.{key}") if key in images else fallback

    return Policy(
        name=str(doc.get("name", Path(where).stem)),
        severities={**inherited.severities, **rules},
        forbidden_tags=strings("forbidden_tags", inherited.forbidden_tags),
        allowed_registries=strings("allowed_registries", inherited.allowed_registries),
    )


def load(spec: str | None) -> Policy:
    """A built-in policy by name (`default`, `strict`) or a TOML file by path.

    A file extends a built-in policy (`extends = "strict"`; `default` if not given).
    """
    name = spec or "default"
    if name in BUILTIN:
        text = resources.files("policies").joinpath(f"{name}.toml").read_text()
        return parse(text, f"policies/{name}.toml")
    path = Path(name)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise PolicyError(f"{path}: no such policy file; built-in policies: {', '.join(BUILTIN)}") from None
    try:
        extends = tomllib.loads(text).get("extends", "default")
    except tomllib.TOMLDecodeError:
        extends = "default"  # parse() reports the syntax error
    if extends not in BUILTIN:
        raise PolicyError(f"{path}: extends = '{extends}'; use one of {', '.join(BUILTIN)}")
    return parse(text, str(path), load(extends))
