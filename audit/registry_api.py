"""OCI distribution API requests that skopeo cannot make (the referrers API), with skopeo's settings.

Credentials come from the same auth files skopeo reads (`REGISTRY_AUTH_FILE`,
`$XDG_RUNTIME_DIR/containers/auth.json`, `~/.config/containers/auth.json`,
`~/.docker/config.json`); plain-HTTP registries from the `insecure` entries of
containers-registries.conf(5). Bearer-token (and Basic) challenges are answered
as a registry client does. Credentials never appear in errors.
"""

from __future__ import annotations

import base64
import json
import os
import re
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from containerlock.skopeo import RegistryError

INDEX = "application/vnd.oci.image.index.v1+json"
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


def auth_files() -> list[Path]:
    """Where skopeo looks for credentials, in its order."""
    files = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    home = Path.home()
    return [*files, home / ".config" / "containers" / "auth.json", home / ".docker" / "config.json"]


def credentials(host: str) -> tuple[str, str] | None:
    """(user, password) for `host` from the first auth file that has it."""
    for path in auth_files():
        try:
            auths = json.loads(path.read_text()).get("auths", {})
        except (OSError, ValueError, AttributeError):
            continue
        entry = auths.get(host) or auths.get(f"https://{host}") or auths.get(f"http://{host}")
        if isinstance(entry, dict) and entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, password
    return None


def insecure_registries() -> set[str]:
    """Registries that containers-registries.conf marks `insecure` (plain HTTP allowed)."""
    found: set[str] = set()
    for path in (Path.home() / ".config/containers/registries.conf", Path("/etc/containers/registries.conf")):
        try:
            doc = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError):
            continue
        found |= {r.get("location", "") for r in doc.get("registry", []) if r.get("insecure")}
    return found


def _basic(login: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()


def _token(challenge: str, login: tuple[str, str] | None, timeout: float) -> str:
    """A bearer token for a `WWW-Authenticate: Bearer realm=…,service=…,scope=…` challenge."""
    params = dict(_CHALLENGE.findall(challenge))
    query = urllib.parse.urlencode({k: v for k, v in params.items() if k in ("service", "scope")})
    request = urllib.request.Request(f"{params.get('realm', '')}?{query}")
    if login:
        request.add_header("Authorization", _basic(login))
    with urllib.request.urlopen(request, timeout=timeout) as response:
        doc = json.loads(response.read())
    return "Bearer " + str(doc.get("token") or doc.get("access_token") or "")


def get_json(host: str, path: str, accept: str, timeout: float) -> dict | None:
    """GET `/v2/<path>` as JSON, logging in if asked; None when the registry has no such resource."""
    scheme = "http" if host in insecure_registries() else "https"
    url = f"{scheme}://{host}/v2/{path}"
    login, authorization = credentials(host), None
    for _ in range(2):
        request = urllib.request.Request(url, headers={"Accept": accept})
        if authorization:
            request.add_header("Authorization", authorization)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            challenge = err.headers.get("WWW-Authenticate", "")
            if err.code == 401 and authorization is None and challenge:
                is_bearer = challenge.lower().startswith("bearer")
                authorization = _token(challenge, login, timeout) if is_bearer else (login and _basic(login))
                if authorization:
                    continue
            if err.code in (404, 405):
                return None
            raise RegistryError(f"{host}: GET /v2/{path}: HTTP {err.code} {err.reason}") from None
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise RegistryError(f"{host}: GET /v2/{path}: {err}") from None
    raise RegistryError(f"{host}: GET /v2/{path}: unauthorized (401); run `skopeo login {host}`")


def referrers(name: str, digest: str, timeout: float) -> list[dict] | None:
    """Descriptors referring to `digest` (OCI 1.1 referrers API), or None if the registry lacks the API."""
    host, repository = name.split("/", 1)
    doc = get_json(host, f"{repository}/referrers/{digest}", INDEX, timeout)
    return None if doc is None else list(doc.get("manifests") or [])
