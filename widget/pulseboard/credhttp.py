"""One urllib opener for every request that carries a credential (a pulseboard JWT, a
JupyterHub token, a Jupyter server token).

urllib's default redirect handler copies every header, `Authorization` included, to
wherever a 301/302/303/307/308 points, so a server (or anyone who can make it answer a
redirect) would receive the caller's token at another host. This opener follows a
redirect only within the same origin (scheme, host and port); any other is refused with
`RedirectRefused`, an `URLError`, so callers report it as a server they can't use.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from typing import IO, Any
from urllib.parse import urlsplit

__all__ = ["RedirectRefused", "open_request", "same_origin"]


class RedirectRefused(urllib.error.URLError):
    """A redirect to another origin: not followed, so the credential stays where it was sent."""


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        port = -1
    return scheme, (parts.hostname or "").lower(), port


def same_origin(a: str, b: str) -> bool:
    return _origin(a) == _origin(b)


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
        headers: http.client.HTTPMessage, newurl: str,
    ) -> urllib.request.Request | None:
        if not same_origin(req.full_url, newurl):
            raise RedirectRefused(
                f"it answered {code} to {newurl[:200]}, another origin: not followed, so as not to send "
                "your credentials there (use that URL directly if you trust it)"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameOriginRedirects)


def open_request(req: urllib.request.Request, timeout: float) -> Any:
    """`urllib.request.urlopen(req, timeout)`, but a redirect leaves the origin never."""
    return _OPENER.open(req, timeout=timeout)
