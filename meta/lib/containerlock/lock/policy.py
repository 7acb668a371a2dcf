"""Policy files (TOML): which findings are errors, which images are allowed, who must sign,
what their provenance must say.

Standard library only: the layer (CONTAINER_POLICY) and the CLI share it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

from ..oci.reference import ImageReference
from .provenance import Rule as ProvenanceRule

SEVERITIES = ("error", "warning", "ignore")
# "deny"/"warn" read as "error"/"warning".
SEVERITY_ALIASES = {"deny": "error", "warn": "warning"}
RULES = (
    "unpinned",
    "no-tag",
    "lock-mismatch",
    "unused-lock-entry",
    "forbidden-tag",
    "registry-not-allowed",
    "unresolved",
    "invalid-url",
    "unsigned",
    "provenance",
)
BUILTIN = ("default", "strict")
# The built-in policies are the layer's own data: the fetcher enforces them with only meta/ present.
BUILTIN_DIR = Path(__file__).resolve().parent / "policies"


VULNERABILITY_LEVELS = ("low", "medium", "high", "critical")
_VULNERABILITY_KEYS = {"fail_on", "ignore_unfixed", "fail_on_unknown"}


class PolicyError(ValueError):
    """A policy file cannot be used; the text names the file and the problem."""


@dataclass(frozen=True)
class Signer:
    """Who must have signed the images matching `images` (globs on `host[:port]/path`)."""

    images: tuple[str, ...]
    issuer: str | None = None
    identity: str | None = None
    issuer_regex: str | None = None
    identity_regex: str | None = None
    key: str | None = None  # a public key file, for legacy `cosign sign --key` signatures

    def applies_to(self, name: str) -> bool:
        return any(fnmatch(name, pattern) for pattern in self.images)

    def accepts_issuer(self, issuer: str) -> bool:
        """Is a keyless certificate's OIDC issuer this signer's?"""
        if self.key:
            return False
        return issuer == self.issuer if self.issuer else bool(re.fullmatch(self.issuer_regex or ".*", issuer))

    def accepts(self, issuer: str, identity: str) -> bool:
        """Does a keyless certificate's issuer and identity satisfy this signer?"""
        if not self.accepts_issuer(issuer):
            return False
        if self.identity:
            return identity == self.identity
        return bool(re.fullmatch(self.identity_regex or ".*", identity))

    def describe(self) -> str:
        if self.key:
            return f"key {self.key}"
        issuer = self.issuer or f"/{self.issuer_regex}/"
        identity = self.identity or f"/{self.identity_regex}/"
        return f"{identity} (issuer {issuer})"


@dataclass(frozen=True)
class VulnerabilityGate:
    """`[vulnerabilities]`: fail an audit on findings at `fail_on` or above (none: report only);
    `ignore_unfixed`: not on findings without a fixed version; `fail_on_unknown`: also on
    findings of unknown severity."""

    fail_on: str | None = None
    ignore_unfixed: bool = False
    fail_on_unknown: bool = False


def _vulnerabilities(raw: object, where: str) -> VulnerabilityGate:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: [vulnerabilities] must be a table")
    unknown = set(raw) - _VULNERABILITY_KEYS
    if unknown:
        raise PolicyError(
            f"{where}: unknown key(s) in [vulnerabilities]: {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_VULNERABILITY_KEYS))}"
        )
    fail_on = raw.get("fail_on")
    if fail_on is not None and fail_on not in VULNERABILITY_LEVELS:
        raise PolicyError(
            f"{where}: vulnerabilities.fail_on = {fail_on!r}; use one of {', '.join(VULNERABILITY_LEVELS)}"
        )
    flags = {}
    for name in ("ignore_unfixed", "fail_on_unknown"):
        value = raw.get(name, False)
        if not isinstance(value, bool):
            raise PolicyError(f"{where}: vulnerabilities.{name} must be true or false")
        flags[name] = value
    return VulnerabilityGate(fail_on, **flags)


@dataclass(frozen=True)
class Policy:
    """A loaded policy."""

    name: str
    severities: dict[str, str]
    forbidden_tags: tuple[str, ...] = ()
    allowed_registries: tuple[str, ...] = ()
    signers: tuple[Signer, ...] = field(default_factory=tuple)
    vulnerabilities: VulnerabilityGate | None = None  # [vulnerabilities]: the audit's gate
    provenance: tuple[ProvenanceRule, ...] = ()  # [[provenance]]: the first rule that applies counts

    def severity(self, rule: str) -> str:
        """The rule's severity; a required signature or provenance fails closed unless a policy
        relaxes it."""
        return self.severities.get(rule, "error" if rule in ("unsigned", "provenance") else "warning")

    def signers_for(self, name: str) -> tuple[Signer, ...]:
        """The signers required for the image `host[:port]/path`."""
        return tuple(s for s in self.signers if s.applies_to(name))

    def provenance_for(self, name: str) -> ProvenanceRule | None:
        """The provenance rule for the image `host[:port]/path` (the first that applies), if any."""
        return next((rule for rule in self.provenance if rule.applies_to(name)), None)

    def image_denials(self, registry: str, name: str, tag: str) -> list[tuple[str, str]]:
        """(rule, reason) for the image rules a reference breaks (forbidden tag, registry)."""
        found = []
        if tag in self.forbidden_tags:
            found.append(("forbidden-tag", f"tag '{tag}' is not allowed by policy '{self.name}'"))
        if self.allowed_registries and not any(fnmatch(registry, p) for p in self.allowed_registries):
            found.append(
                (
                    "registry-not-allowed",
                    f"registry '{registry}' is not in {', '.join(self.allowed_registries)}",
                )
            )
        return found

    def denials(self, registry: str, name: str, tag: str) -> list[str]:
        """Reasons to refuse the image: the image rules it breaks whose severity is `error`."""
        return [
            reason
            for rule, reason in self.image_denials(registry, name, tag)
            if self.severity(rule) == "error"
        ]


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
    rules = {rule: SEVERITY_ALIASES.get(severity, severity) for rule, severity in rules.items()}
    for rule, severity in rules.items():
        if rule not in RULES:
            raise PolicyError(f"{where}: unknown rule '{rule}'; known: {', '.join(RULES)}")
        if severity not in SEVERITIES:
            raise PolicyError(
                f"{where}: rule '{rule}' = '{severity}'; use one of {', '.join(SEVERITIES)} (or deny, warn)"
            )
    images = doc.get("images", {})
    if not isinstance(images, dict):
        raise PolicyError(f"{where}: [images] must be a table")
    unknown = set(images) - {"forbidden_tags", "allowed_registries"}
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) in [images]: {', '.join(sorted(unknown))}")
    inherited = base or Policy("none", {})
    signers = _signers(doc.get("signers"), where) if "signers" in doc else inherited.signers
    provenance = _provenance(doc["provenance"], where) if "provenance" in doc else inherited.provenance

    def strings(key: str, fallback: tuple[str, ...]) -> tuple[str, ...]:
        return _strings(images[key], f"{where}: images.{key}") if key in images else fallback

    return Policy(
        name=str(doc.get("name", Path(where).stem)),
        severities={**inherited.severities, **rules},
        forbidden_tags=strings("forbidden_tags", inherited.forbidden_tags),
        allowed_registries=strings("allowed_registries", inherited.allowed_registries),
        signers=signers,
        provenance=provenance,
        vulnerabilities=_vulnerabilities(doc["vulnerabilities"], where)
        if "vulnerabilities" in doc
        else inherited.vulnerabilities,
    )


_SIGNER_KEYS = {"images", "issuer", "identity", "issuer_regex", "identity_regex", "key"}


def _tables(raw: object, where: str, name: str, keys: set[str]) -> Iterator[tuple[str, dict]]:
    """(where, table) for each table of the array `[[name]]`, its keys checked against `keys`."""
    if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw):
        raise PolicyError(f"{where}: [[{name}]] must be an array of tables")
    for n, entry in enumerate(raw, 1):
        at = f"{where}: {name} #{n}"
        unknown = set(entry) - keys
        if unknown:
            known = ", ".join(sorted(keys))
            raise PolicyError(f"{at}: unknown key(s) {', '.join(sorted(unknown))}; known: {known}")
        yield at, entry


def _signers(raw: object, where: str) -> tuple[Signer, ...]:
    signers = []
    for at, entry in _tables(raw, where, "signers", _SIGNER_KEYS):
        for key in sorted((_SIGNER_KEYS - {"images"}) & set(entry)):
            if not isinstance(entry[key], str) or not entry[key]:
                # An empty issuer, identity or key would read as "any" (fail open).
                raise PolicyError(f"{at}: {key} must be a non-empty string; write who must have signed")
        for key in ("issuer_regex", "identity_regex"):
            if key in entry:
                try:
                    re.compile(entry[key])
                except (re.error, TypeError) as err:
                    raise PolicyError(f"{at}: {key} is not a valid regular expression ({err})") from None
        keyless = any(k in entry for k in ("issuer", "identity", "issuer_regex", "identity_regex"))
        if "key" in entry and keyless:
            raise PolicyError(f"{at}: give either key = … (key-based) or issuer/identity (keyless), not both")
        if not keyless and "key" not in entry:
            raise PolicyError(
                f"{at}: needs issuer (or issuer_regex) and identity (or identity_regex), or key"
            )
        if keyless and not (
            ("issuer" in entry or "issuer_regex" in entry)
            and ("identity" in entry or "identity_regex" in entry)
        ):
            raise PolicyError(
                f"{at}: a keyless signer needs both an issuer and an identity (exact or _regex)"
            )
        images = entry.get("images", ["*"])
        signers.append(
            Signer(
                images=_strings(images, f"{at}: images"),
                **{k: str(entry[k]) for k in _SIGNER_KEYS - {"images"} if k in entry},
            )
        )
    return tuple(signers)


_PROVENANCE_KEYS = {"images", "required", "builder_id", "source_uri", "build_type"}


def _provenance(raw: object, where: str) -> tuple[ProvenanceRule, ...]:
    rules = []
    for at, entry in _tables(raw, where, "provenance", _PROVENANCE_KEYS):
        required = entry.get("required", True)
        if not isinstance(required, bool):
            raise PolicyError(f"{at}: required must be true or false")
        lists = {}
        for key in ("images", "builder_id", "source_uri", "build_type"):
            value = entry.get(key, ["*"] if key == "images" else [])
            lists[key] = _strings([value] if isinstance(value, str) else value, f"{at}: {key}")
        rules.append(ProvenanceRule(required=required, **lists))
    return tuple(rules)


def load(spec: str | None, builtin_dir: Path = BUILTIN_DIR) -> Policy:
    """A built-in policy by name (`default`, `strict`, shipped in the layer) or a TOML file by path.

    A file extends a built-in policy (`extends = "strict"`; `default` if not given).
    """
    name = spec or "default"
    if name in BUILTIN:
        path = builtin_dir / f"{name}.toml"
        return parse(path.read_text(), f"built-in policy '{name}' ({path})")
    path = Path(name)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise PolicyError(f"{path}: no such policy file; built-in policies: {', '.join(BUILTIN)}") from None
    except IsADirectoryError:
        raise PolicyError(
            f"{path}: is a directory; give a policy file (TOML) or {', '.join(BUILTIN)}"
        ) from None
    except UnicodeDecodeError:
        raise PolicyError(f"{path}: not UTF-8 text; a policy is a TOML file") from None
    except OSError as err:
        raise PolicyError(f"{path}: cannot read the policy file ({err.strerror or err})") from None
    try:
        extends = tomllib.loads(text).get("extends", "default")
    except tomllib.TOMLDecodeError:
        extends = "default"  # parse() reports the syntax error
    if extends not in BUILTIN:
        raise PolicyError(f"{path}: extends = '{extends}'; use one of {', '.join(BUILTIN)}")
    return parse(text, str(path), load(extends, builtin_dir))


_loaded: dict[tuple[str, int], Policy] = {}


def load_cached(spec: str) -> Policy:
    """`load(spec)`, once per process while a policy file is unchanged (the fetcher asks per URL)."""
    try:
        stamp = Path(spec).stat().st_mtime_ns if spec not in BUILTIN else 0
    except OSError:
        return load(spec)  # load() names the missing file
    if (spec, stamp) not in _loaded:
        _loaded[(spec, stamp)] = load(spec)
    return _loaded[(spec, stamp)]


def denial(spec: str | None, image: ImageReference) -> str | None:
    """Why the policy `spec` (CONTAINER_POLICY) refuses `image` (registry, tag), or None."""
    spec = (spec or "").strip()
    if not spec:
        return None
    try:
        reasons = load_cached(spec).denials(image.registry, image.name, image.tag)
    except PolicyError as err:
        return f"CONTAINER_POLICY: {err}"
    return f"{image.tagged} is denied by CONTAINER_POLICY ({spec}): {'; '.join(reasons)}" if reasons else None
