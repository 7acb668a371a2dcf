"""What skopeo's error output means, and whether trying again can help (standard library only)."""

from __future__ import annotations

import re

_PLAIN_HTTP = (
    "the registry speaks plain HTTP, not HTTPS: mark it insecure in registries.conf "
    '([[registry]] location = "host:port" insecure = true)'
)
_MEANINGS = (
    (
        "skopeo: not found",
        "skopeo is not installed or not in the task's PATH: install it (Debian: apt install skopeo); "
        "on OpenEmbedded it must be in HOSTTOOLS (this layer adds it to HOSTTOOLS_NONFATAL)",
    ),
    ("manifest unknown", "the tag or digest does not exist in the repository"),
    ("name unknown", "the repository does not exist"),
    ("unauthorized", "the registry refused the credentials (401); run `skopeo login`"),
    ("authentication required", "the registry wants credentials (401); run `skopeo login`"),
    ("denied", "access denied (403)"),
    ("toomanyrequests", "rate-limited by the registry (429)"),
    ("too many requests", "rate-limited by the registry (429)"),
    ("connection refused", "connection refused: is the registry up?"),
    ("no such host", "unknown host"),
    ("connection reset", "the connection was reset"),
    ("unexpected eof", "the connection closed in the middle of a transfer"),
    ("timeout", "timed out"),
    ("deadline exceeded", "timed out (CONTAINER_FETCH_TIMEOUT / --timeout)"),
    ("500 internal server error", "server error (500)"),
    ("502 bad gateway", "bad gateway (502)"),
    ("503 service unavailable", "server unavailable (503)"),
    ("504 gateway", "gateway timeout (504)"),
    ("digest did not match", "the registry sent bytes that do not match their digest"),
    ("http response to https client", _PLAIN_HTTP),
    ("wrong_version_number", _PLAIN_HTTP),  # Python's ssl module, talking TLS to a plain-HTTP registry
    ("name or service not known", "unknown host"),
    ("operation now in progress", "timed out (--timeout)"),
)
_TRANSIENT = re.compile(
    r"toomanyrequests|too many requests|\b429\b|\b50[0234]\b|connection reset|unexpected eof|timeout"
    r"|connection refused|broken pipe|temporarily unavailable|digest did not match|deadline exceeded",
    re.IGNORECASE,
)


_STATUS = {
    "429": "rate-limited by the registry (429)",
    "500": "server error (500)",
    "502": "bad gateway (502)",
    "503": "server unavailable (503)",
    "504": "gateway timeout (504)",
    "401": "unauthorized (401)",
    "403": "access denied (403)",
    "404": "not found (404)",
}


def explain(stderr: str) -> str:
    """A short cause for skopeo's error output (its last line when nothing better is known)."""
    text = stderr.lower().replace("command not found", "not found")  # bash / dash
    for needle, meaning in _MEANINGS:
        if needle in text:
            return meaning
    status = re.search(r"status code from registry (\d{3})|\b(\d{3}) \(", stderr)
    if status and (code := status.group(1) or status.group(2)) in _STATUS:
        return _STATUS[code]
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "skopeo failed"


def is_transient(stderr: str) -> bool:
    """Could the same request succeed if tried again (5xx, 429, resets, timeouts, bad bytes)?"""
    return bool(_TRANSIENT.search(stderr))
