"""Log redaction: tokens and tickets never reach a log line, however they are encoded."""

from __future__ import annotations

import re
from urllib.parse import unquote

SECRET_NAMES = ("token", "ticket", "access_token", "id_token")
_SECRET_PARAM = re.compile(
    r"([\w%.\-]+)(=|[\"']?\s*:\s*[\"']?)([^&\s\"',;}]+)"
)
_BEARER = re.compile(r"(\b[Bb]earer[ .+]|\bbearer%2[Ee])[A-Za-z0-9_\-.~+/=%]+")
_JWT_SHAPED = re.compile(
    r"eyJ[A-Za-z0-9_\-]*(?:\.|%2[Ee])[A-Za-z0-9_\-]+(?:\.|%2[Ee])[A-Za-z0-9_\-]*"
)


def _param(m: re.Match[str]) -> str:
    name = unquote_all(m.group(1)).lower().strip("\"'")
    if name.endswith(SECRET_NAMES):
        return m.group(1) + m.group(2) + "[redacted]"
    return m.group(0)


def _redact_plain(text: str) -> str:
    text = _SECRET_PARAM.sub(_param, text)
    text = _BEARER.sub(lambda m: m.group(1) + "[redacted]", text)
    return _JWT_SHAPED.sub("[redacted-jwt]", text)


def unquote_all(text: str, rounds: int = 3) -> str:
    """Percent-decode until nothing changes (so `%2565` hides nothing either)."""
    for _ in range(rounds):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    return text


def redact(text: str) -> str:
    """Hide tokens and tickets in a log line, however they are percent-encoded.

    Named parameters (`token=`, `?tok%65n=`, `"ticket": ...`), bearer values and anything
    shaped like a JWT are replaced. When only the decoded line shows a secret, the decoded
    line is returned, redacted.
    """
    plain = _redact_plain(text)
    decoded = unquote_all(text)
    if decoded == text:
        return plain
    clean = _redact_plain(decoded)
    return clean if clean != decoded else plain
