"""Log redaction: tokens and tickets never reach a log line, however they are encoded.

Every pattern here runs in time linear in the line (a client chooses the path it asks
for, and a regex that backtracks over a long one would freeze the event loop), and what
is redacted is bounded: `MAX_LINE` characters of a line, `MAX_FIELD` of one logged value
(a request path with its query, say).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

SECRET_NAMES = ("token", "ticket", "access_token", "id_token")
MAX_LINE = 16_384  # characters of one log line kept (tracebacks included)
MAX_FIELD = 1_000  # characters of one logged value kept (a path and query)

# The name must be a whole run of name characters (the lookbehind): each run is then tried
# once, from its start, instead of from every character in it.
_SECRET_PARAM = re.compile(
    r"(?<![\w%.\-])([\w%.\-]+)(=|[\"']?\s*:\s*[\"']?)([^&\s\"',;}]+)"
)
_BEARER = re.compile(r"(\b[Bb]earer[ .+]|\bbearer%2[Ee])[A-Za-z0-9_\-.~+/=%]+")
# A JWT: `eyJ...` then two separators. Found in two steps, so each run of segment characters
# is scanned once: the first `eyJ` of a run reaches the run's end, and only there can the
# separators follow (a later `eyJ` in the same run has the same continuation).
_JWT_HEAD = re.compile(r"eyJ[A-Za-z0-9_\-]*")
_JWT_TAIL = re.compile(r"(?:\.|%2[Ee])[A-Za-z0-9_\-]+(?:\.|%2[Ee])[A-Za-z0-9_\-]*")


def cap(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters and saying how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more characters]"


def _param(m: re.Match[str]) -> str:
    name = unquote_all(m.group(1)).lower().strip("\"'")
    if name.endswith(SECRET_NAMES):
        return m.group(1) + m.group(2) + "[redacted]"
    return m.group(0)


def _redact_jwts(text: str) -> str:
    out: list[str] = []
    done = pos = 0
    while (head := _JWT_HEAD.search(text, pos)) is not None:
        tail = _JWT_TAIL.match(text, head.end())
        if tail is None:
            pos = head.end()
            continue
        out += (text[done:head.start()], "[redacted-jwt]")
        done = pos = tail.end()
    return "".join(out) + text[done:] if out else text


def _redact_plain(text: str) -> str:
    text = _SECRET_PARAM.sub(_param, text)
    text = _BEARER.sub(lambda m: m.group(1) + "[redacted]", text)
    return _redact_jwts(text)


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
    line is returned, redacted. A line over `MAX_LINE` characters is cut first (what is cut
    is never logged, so a secret cut in two shows no more than its first part, redacted).
    """
    text = cap(text, MAX_LINE)
    plain = _redact_plain(text)
    decoded = unquote_all(text)
    if decoded == text:
        return plain
    clean = _redact_plain(decoded)
    return clean if clean != decoded else plain
