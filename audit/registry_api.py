"""OCI distribution API requests made in Python, with the settings skopeo uses.

`container-lock update` resolves tags with one HTTP request each (plus a token per
repository) instead of one skopeo process each, and `verify` asks the referrers API,
which skopeo cannot. Both honour the containers configuration skopeo reads:

- credentials: `REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
  `~/.config/containers/auth.json`, `~/.docker/config.json` — `auths` entries and
  credential helpers (`credHelpers`, `credsStore`: `docker-credential-<name> get`);
- containers-registries.conf(5) (`~/.config/containers/registries.conf`, else
  `/etc/containers/registries.conf`, plus `registries.conf.d/*.conf`): `insecure`
  (plain HTTP) and `[[registry.mirror]]` entries (tried in order before the primary,
  for tags unless `mirror-by-digest-only` / `pull-from-mirror = "digest-only"`).
A configuration this client does not implement (`blocked`, wildcard prefixes,
`location` rewrites) raises Unsupported, and callers use skopeo for that image.
Bearer-token and Basic challenges are answered; credentials never appear in errors.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import threading
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from containerlock.fetch.registry_errors import explain, is_transient
from containerlock.fetch.skopeo import RegistryError

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = ", ".join(
    (
        INDEX,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class Unsupported(RuntimeError):
    """The containers configuration for this registry needs skopeo's full implementation."""


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def auth_files() -> list[Path]:
    """Where skopeo looks for credentials, in its order."""
    files = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    return [*files, _home() / ".config" / "containers" / "auth.json", _home() / ".docker" / "config.json"]


def _helper(name: str, host: str) -> tuple[str, str] | None:
    try:
        out = subprocess.run(
            [f"docker-credential-{name}", "get"], input=host, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise RegistryError(f"{host}: credential helper docker-credential-{name}: {err}") from None
    if out.returncode:
        return None  # the helper has no credentials for this host
    doc = json.loads(out.stdout)
    return str(doc.get("Username", "")), str(doc.get("Secret", ""))


def credentials(host: str) -> tuple[str, str] | None:
    """(user, password) for `host` from the first auth file (or its credential helper) that has it."""
    for path in auth_files():
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        auths = doc.get("auths") or {}
        entry = auths.get(host) or auths.get(f"https://{host}") or auths.get(f"http://{host}")
        if isinstance(entry, dict) and entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, password
        helper = (doc.get("credHelpers") or {}).get(host) or doc.get("credsStore")
        if helper:
            found = _helper(str(helper), host)
            if found:
                return found
    return None


@dataclass(frozen=True)
class RegistrySettings:
    """What registries.conf says about one registry host."""

    insecure: bool = False
    mirrors: tuple[str, ...] = ()  # hosts, in order
    mirrors_for_tags: bool = True


def _conf_files() -> list[Path]:
    user = _home() / ".config" / "containers" / "registries.conf"
    main = user if user.exists() else Path("/etc/containers/registries.conf")
    drop_ins = []
    for directory in (
        Path("/etc/containers/registries.conf.d"),
        _home() / ".config/containers/registries.conf.d",
    ):
        drop_ins += sorted(directory.glob("*.conf")) if directory.is_dir() else []
    return [main, *drop_ins]


def settings(host: str) -> RegistrySettings:
    """registries.conf for `host`; Unsupported where skopeo's own handling is needed."""
    found = RegistrySettings()
    for path in _conf_files():
        try:
            doc = tomllib.loads(path.read_text())
        except OSError:
            continue
        except tomllib.TOMLDecodeError as err:
            raise RegistryError(f"{path}: {err}") from None
        for entry in doc.get("registry", []):
            prefix = entry.get("prefix") or entry.get("location", "")
            if prefix != host and not prefix.startswith(f"{host}/"):
                continue
            if prefix != host or "*" in prefix or entry.get("blocked") or entry.get("location", host) != host:
                raise Unsupported(f"{path}: the entry for {prefix} (prefix, blocked or a location rewrite)")
            mirrors = tuple(str(m["location"]) for m in entry.get("mirror", []) if m.get("location"))
            if any("/" in m for m in mirrors):
                raise Unsupported(f"{path}: a mirror of {host} with a path")
            found = RegistrySettings(
                bool(entry.get("insecure")),
                mirrors,
                not entry.get("mirror-by-digest-only")
                and entry.get("pull-from-mirror", "all") != "digest-only",
            )
    return found


def _basic(login: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()


@dataclass
class Session:
    """Requests to registries, reusing tokens per host and repository (thread-safe)."""

    timeout: float = 60.0
    retries: int = 2
    retry_delay: float = 0.5
    _tokens: dict[tuple[str, str], str] = field(default_factory=dict)
    _settings: dict[str, RegistrySettings] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def settings(self, host: str) -> RegistrySettings:
        """registries.conf for `host`, read once per session (not per request)."""
        with self._lock:
            found = self._settings.get(host)
        if found is None:
            found = settings(host)
            with self._lock:
                self._settings[host] = found
        return found

    def _token(self, challenge: str, login: tuple[str, str] | None) -> str:
        params = dict(_CHALLENGE.findall(challenge))
        query = urllib.parse.urlencode({k: v for k, v in params.items() if k in ("service", "scope")})
        request = urllib.request.Request(f"{params.get('realm', '')}?{query}")
        if login:
            request.add_header("Authorization", _basic(login))
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            doc = json.loads(response.read())
        return "Bearer " + str(doc.get("token") or doc.get("access_token") or "")

    def get(self, host: str, repository: str, path: str, accept: str) -> tuple[bytes, dict[str, str]] | None:
        """GET `/v2/<repository>/<path>`: (body, headers), or None if the registry has no such thing."""
        scheme = "http" if self.settings(host).insecure else "https"
        url = f"{scheme}://{host}/v2/{repository}/{path}"
        key = (host, repository)
        with self._lock:
            authorization = self._tokens.get(key)
        for _ in range(2):
            request = urllib.request.Request(url, headers={"Accept": accept})
            if authorization:
                request.add_header("Authorization", authorization)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return response.read(), dict(response.headers.items())
            except urllib.error.HTTPError as err:
                challenge = err.headers.get("WWW-Authenticate", "")
                if err.code == 401 and challenge:
                    login = credentials(host)
                    is_bearer = challenge.lower().startswith("bearer")
                    fresh = self._token(challenge, login) if is_bearer else (login and _basic(login))
                    if fresh and fresh != authorization:
                        authorization = fresh
                        with self._lock:
                            self._tokens[key] = fresh
                        continue
                    raise RegistryError(explain("unauthorized")) from None
                if err.code in (404, 405):
                    return None
                raise RegistryError(explain(f"{err.code} {err.reason}")) from None
            except (urllib.error.URLError, OSError, ValueError) as err:
                raise RegistryError(explain(str(getattr(err, "reason", err)))) from None
        raise RegistryError(explain("unauthorized"))

    def manifest(self, host: str, repository: str, reference: str) -> bytes:
        """The raw manifest bytes for a tag or digest: mirrors first (as configured), then the registry.

        Transient failures (5xx, resets, refused connections) are retried with backoff.
        """
        config = self.settings(host)
        by_digest = reference.startswith("sha256:")
        hosts = [*config.mirrors] if config.mirrors_for_tags or by_digest else []
        errors = []
        for candidate in [*hosts, host]:
            try:
                body = self._manifest_from(candidate, repository, reference)
            except RegistryError as err:
                errors.append(f"{candidate}: {err}" if hosts else str(err))
                continue
            return body
        raise RegistryError("; ".join(errors))

    def _manifest_from(self, host: str, repository: str, reference: str) -> bytes:
        for attempt in range(self.retries + 1):
            try:
                found = self.get(host, repository, f"manifests/{reference}", MANIFEST_TYPES)
                break
            except RegistryError as err:
                if attempt == self.retries or not is_transient(str(err)):
                    raise
                time.sleep(self.retry_delay * 2**attempt)
        if found is None:
            raise RegistryError(explain("manifest unknown"))
        body, headers = found
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        claimed = headers.get("Docker-Content-Digest")
        if (reference.startswith("sha256:") and digest != reference) or (claimed and claimed != digest):
            raise RegistryError(f"the registry sent a manifest that hashes to {digest}")
        return body

    def blob(self, host: str, repository: str, digest: str) -> bytes:
        """A blob (e.g. an image config), verified against its digest."""
        config = self.settings(host)
        for candidate in [*config.mirrors, host]:
            try:
                found = self.get(candidate, repository, f"blobs/{digest}", "*/*")
            except RegistryError:
                continue
            if found is not None and "sha256:" + hashlib.sha256(found[0]).hexdigest() == digest:
                return found[0]
        raise RegistryError(f"{host}/{repository}: blob {digest} could not be read")


def referrers(name: str, digest: str, timeout: float) -> list[dict] | None:
    """Descriptors referring to `digest` (OCI 1.1 referrers API), or None if the registry lacks the API."""
    host, repository = name.split("/", 1)
    try:
        found = Session(timeout).get(host, repository, f"referrers/{digest}", INDEX)
    except Unsupported:
        return None  # the caller falls back to the tag schema, read with skopeo
    return None if found is None else list(json.loads(found[0]).get("manifests") or [])
