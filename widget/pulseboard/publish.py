"""Publishing from Python code, over the server's HTTP API (standard library only)."""

from __future__ import annotations

import json
import math
import numbers
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from .protocol import PulseboardError, check_text, field_name, plain_numbers


class PublishError(PulseboardError):
    """Publishing failed; the message says why and what to do."""


def coerce_data(data: Any) -> dict[str, Any]:
    """`data` as plain JSON values: numpy scalars and 0-d arrays, `Decimal` and bools become
    numbers (arrays become lists), NaN and infinities become null (a gap in a chart).

    Raises `PublishError` for what JSON can't carry.
    """
    if not isinstance(data, Mapping):
        raise PublishError("bad_request", f"data must be a dict of fields, not {type(data).__name__}")
    if type(data) is dict and plain_numbers(data):  # the usual metrics: nothing to change, checked in C
        return dict(data)
    return _coerce_map(data, 0)


def _coerce_map(data: Mapping[Any, Any], depth: int) -> dict[str, Any]:
    out = {}
    for k, v in data.items():
        if not isinstance(k, str):
            raise PublishError("bad_request", f"field names must be strings, not {k!r}")
        out[_text(k, "a field name")] = _coerce(v, depth + 1, k)
    return out


def _text(s: str, where: str) -> str:
    """`s` if UTF-8 can carry it; a file name from `os.fsdecode` of non-UTF-8 bytes can't."""
    try:
        return check_text(s, where)
    except PulseboardError as e:
        raise PublishError(e.code, e.detail + " (a path? use os.fsencode(p).decode('utf-8', 'replace'))") from None


def _coerce(v: Any, depth: int, key: str = "") -> Any:
    t = type(v)
    if t is float:
        return v if math.isfinite(v) else None
    if t is str:
        return _text(v, field_name(key))
    if t is int or v is None:
        return v
    if t is bool:
        return int(v)
    if depth > 32:
        raise PublishError("bad_request", "data is nested too deeply (over 32 levels)")
    if isinstance(v, Mapping):
        return _coerce_map(v, depth)
    if isinstance(v, (list, tuple)):
        return [_coerce(x, depth + 1, key) for x in v]
    if isinstance(v, Decimal):
        return _coerce(float(v), depth)
    if hasattr(v, "ndim") and hasattr(v, "tolist"):  # numpy scalars and arrays, without importing numpy
        return _coerce(v.tolist(), depth, key)
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return _coerce(float(v), depth)
    if isinstance(v, str):
        return _text(str(v), field_name(key))
    raise PublishError("bad_request", f"data holds a {t.__name__}, which JSON can't carry: use numbers or strings")


def rows(data: Any) -> Iterator[dict[str, Any]]:
    """The messages in `data`: a dict is one, a list of dicts or a pandas DataFrame one per row."""
    if isinstance(data, Mapping):
        yield dict(data)
    elif isinstance(data, (list, tuple)):
        for row in data:
            if not isinstance(row, Mapping):
                raise PublishError("bad_request", f"a list of rows must hold dicts, not {type(row).__name__}")
            yield dict(row)
    elif hasattr(data, "to_dict") and hasattr(data, "columns"):  # a DataFrame, without importing pandas
        yield from data.to_dict("records")
    else:
        raise PublishError("bad_request", f"data must be a dict, a list of dicts or a DataFrame, "
                           f"not {type(data).__name__}")


def server_url(url: str | None = None) -> str:
    url = url or os.environ.get("PULSEBOARD_URL")
    if not url:
        raise PublishError("bad_request", "no server URL: pass url= or set PULSEBOARD_URL")
    return url.rstrip("/")


def server_token(token: str | None = None) -> str:
    from .tokenfile import file_token

    token = token or file_token(os.environ) or os.environ.get("PULSEBOARD_TOKEN")
    if not token:
        raise PublishError("unauthorized", "no token: pass token= or set PULSEBOARD_TOKEN (or PULSEBOARD_TOKEN_FILE)")
    return token


class Publisher:
    """Posts messages to `POST publish`; reuse one for many messages."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 10.0) -> None:
        from .discovery import DiscoveryError, discover_for_kernel

        try:  # arguments, then PULSEBOARD_URL/PULSEBOARD_TOKEN, then the JupyterHub exchange
            found_url, found_token = discover_for_kernel(url, token)
        except DiscoveryError as e:
            raise PublishError(e.code, e.detail) from None
        self.url = found_url.rstrip("/")
        self.token = found_token
        self.timeout = timeout
        self._url_arg, self._token_arg = url, token

    def publish(self, channel: str, data: Mapping[str, Any], ts: float | None = None) -> int:
        """Publish one message; return its seq."""
        return self.publish_many([(channel, data, ts)])[0]

    def publish_many(self, items: list[tuple[str, Mapping[str, Any], float | None]]) -> list[int]:
        body = [
            {"ch": ch, "data": coerce_data(data), **({"ts": ts} if ts is not None else {})}
            for ch, data, ts in items
        ]
        try:
            return self._post(body)
        except PublishError as e:
            if e.code != "unauthorized" or self._token_arg is not None:
                raise
            # Expired: a rotated PULSEBOARD_TOKEN_FILE (or a fresh Hub exchange) may hold a new one.
            from .discovery import DiscoveryError, discover_for_kernel

            try:
                _, token = discover_for_kernel(self._url_arg, None)
            except DiscoveryError:
                raise e from None
            if token == self.token:
                raise
            self.token = token
            return self._post(body)

    def _post(self, body: list[dict[str, Any]]) -> list[int]:
        seqs: list[int] = request_json(self.url, self.token, "publish", body, self.timeout, "the publish")["seqs"]
        return seqs


def request_json(url: str, token: str, path: str, body: Any, timeout: float, what: str) -> Any:
    """GET (`body` None) or POST JSON to the server's `path`; the answer's JSON, or a `PublishError`
    saying why (the server's error code and detail, or that it can't be reached)."""
    req = urllib.request.Request(
        url + "/" + path,
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    from .credhttp import open_request  # here: the server imports this module, and loads only wire code

    try:
        with open_request(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            err = json.loads(e.read())
            code, detail = err.get("error", "error"), err.get("detail", e.reason)
        except ValueError:
            code, detail = "error", str(e.reason)
        raise PublishError(code, f"server refused {what} ({e.code} {code}): {detail}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise PublishError("unavailable", f"cannot reach {url}: {reason}; is the server running?") from None


_default: Publisher | None = None


def publish(
    channel: str,
    data: Mapping[str, Any],
    *,
    step: Any = None,
    ts: float | None = None,
    url: str | None = None,
    token: str | None = None,
) -> int:
    """Publish `data` (a dict of fields) on `channel` and wait for its seq; raise `PublishError`.

    `step`, when given, becomes the field `step`. `url`/`token` default to PULSEBOARD_URL /
    PULSEBOARD_TOKEN (or JupyterHub discovery). For training loops use `pulseboard.log`.
    """
    global _default
    if step is not None:
        data = {**data, "step": step}
    if url is not None or token is not None:
        return Publisher(url, token).publish(channel, data, ts)
    if _default is None or (
        os.environ.get("PULSEBOARD_TOKEN") and _default.token != os.environ["PULSEBOARD_TOKEN"]
    ) or (os.environ.get("PULSEBOARD_URL", "").startswith("http") and _default.url != server_url()):
        _default = Publisher()
    return _default.publish(channel, data, ts if ts is not None else time.time())
