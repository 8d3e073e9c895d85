"""The kernel's side of the widget's token: kept here, handed to the browser in messages.

The token is never a synced trait, so saved notebooks (widget state) never hold one. The
browser sends `{"type": "token-request", "exp": <exp of the token it holds>}` on start
and before expiry; the kernel answers `{"type": "token", "token": ...}` (or `"error"`).
Because a busy kernel answers comm messages only between cells, a daemon timer also
pushes a token a moment after the chart is made (for views rendered while the cell runs)
and a fresh one before each expires (re-exchanging the Hub token, or re-reading
`PULSEBOARD_TOKEN_FILE`), so the chart keeps going through a long training cell.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable
from typing import Any

from .credhttp import open_request
from .discovery import DiscoveryError, discover, discover_for_kernel, token_expiry
from .protocol import FORBIDDEN, UNAVAILABLE
from .tokenfile import ENV as TOKEN_FILE_ENV

EARLY_PUSHES = (1.0, 4.0, 10.0, 30.0)  # seconds after the chart is made
RENEW_SHARE = 0.7  # push a fresh token when this share of the current one's life has passed
MIN_RENEW_WAIT = 5.0


def view_token(url: str, token: str, channels: list[str]) -> str:
    """Trade `token` for a read-only one limited to `channels` (`POST view-token`).

    The browser holds what it is given, so it gets the narrowed token or nothing: on any
    failure (server down, key mode, a refused or odd answer, a redirect to another origin)
    `DiscoveryError` says why, and the chart shows that in its status line. When the server
    says the token may not read one of `channels`, the reason starts "not allowed".
    """
    why = "get a read-only token for the browser"
    closed = "the chart does not fall back to your full token"
    try:
        kernel_url, _ = discover_for_kernel(url, token)
        req = urllib.request.Request(
            kernel_url.rstrip("/") + "/view-token",
            data=json.dumps({"ch": channels}).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with open_request(req, timeout=5) as resp:
            narrowed = json.loads(resp.read())["token"]
        if not isinstance(narrowed, str) or not narrowed:
            raise ValueError("no token in the answer")
        return narrowed
    except urllib.error.HTTPError as e:
        try:
            detail = str(json.loads(e.read()).get("detail") or e.reason)
        except (ValueError, AttributeError, OSError):
            detail = str(e.reason)
        if e.code == 403:
            raise DiscoveryError(FORBIDDEN, f"not allowed: {detail} (channels: {', '.join(channels)})") from None
        if e.code == 401:  # the user's own token: say which setting holds it and how to make one
            raise DiscoveryError(
                UNAVAILABLE, f"the server refused your token (401: {detail}): check PULSEBOARD_TOKEN "
                f"(`pulseboard token --sub NAME` makes one), so it would not {why}; {closed}"
            ) from None
        raise DiscoveryError(
            UNAVAILABLE, f"the server would not {why} ({e.code}: {detail}): {closed}"
        ) from None
    except OSError as e:  # nothing answered: the usual cause is no server there, or a wrong URL
        reason = getattr(e, "reason", e)
        raise DiscoveryError(
            UNAVAILABLE, f"cannot reach a pulseboard server at {url}: {reason}; is `pulseboard serve` "
            f"running there, and is PULSEBOARD_URL right? (so cannot {why}; {closed})"
        ) from None
    except (ValueError, KeyError, TypeError) as e:
        raise DiscoveryError(
            UNAVAILABLE, f"cannot {why} from {url}: {e}; {closed}"
        ) from None


def _not_newer(token: str, held: Any) -> bool:
    """True when `token` expires no later than the browser's current one (`held`: its exp)."""
    if not isinstance(held, (int, float)):
        return False
    exp = token_expiry(token)
    return exp is not None and exp <= held


class TokenKeeper:
    """One chart's token, in the kernel only."""

    def __init__(self, send: Callable[[dict[str, Any]], None], token_arg: str | None) -> None:
        self._send = weakref.WeakMethod(send) if hasattr(send, "__self__") else lambda: send
        self.token_arg = token_arg
        self.url = ""
        self.channels: list[str] = []
        self.token = ""
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._closed = False

    def first(self, url: str | None, channels: list[str]) -> tuple[str, str]:
        """Discover url and token: `(url, problem)`, problem "" when all is well."""
        self.channels = channels
        try:
            url, token = discover(url, self.token_arg)
        except DiscoveryError as e:
            return url or "", e.detail
        self.url = url
        try:
            self.token = view_token(url, token, channels)
        except DiscoveryError as e:
            return url, e.detail
        return url, ""

    def fresh(self, held: Any = None) -> str:
        """A token newer than `held` (the exp the browser has) when one can be had."""
        with self._lock:
            if self.token and not _not_newer(self.token, held):
                return self.token
            _, token = discover(self.url or None, self.token_arg)
            if _not_newer(token, held):
                _, token = discover(self.url or None, self.token_arg, refresh=True)
            self.token = view_token(self.url, token, self.channels)
            return self.token

    def replace(self, token: str | None) -> None:
        """`LiveChart.refresh_token`: a given token, or a fresh Hub exchange."""
        if token is None:
            _, token = discover(self.url or None, self.token_arg, refresh=True)
        with self._lock:
            self.token = view_token(self.url, token, self.channels)
        self._deliver({"type": "token", "token": self.token})

    def on_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "token-request":
            self._answer(content.get("exp"))

    def _answer(self, held: Any) -> None:
        try:
            self._deliver({"type": "token", "token": self.fresh(held)})
        except DiscoveryError as e:
            self._deliver({"type": "token", "error": e.detail})

    def _deliver(self, msg: dict[str, Any]) -> None:
        send = self._send()
        if send is None:
            self.close()  # the widget is gone
        elif not self._closed:
            send(msg)

    # --- pushes from a daemon timer ------------------------------------------------------

    def begin(self) -> None:
        if self.url and self.token:
            self._schedule(EARLY_PUSHES[0], 0)

    def _schedule(self, delay: float, step: int) -> None:
        if self._closed:
            return
        timer = threading.Timer(delay, self._push, args=(step,))
        timer.daemon = True
        self._timer = timer
        timer.start()

    def _push(self, step: int) -> None:
        held = token_expiry(self.token)
        if step < len(EARLY_PUSHES):
            self._answer(None)  # the token held, for views that rendered while the cell ran
        else:
            self._answer(held)  # a newer one: exchanges the Hub token again
        if step + 1 < len(EARLY_PUSHES):
            self._schedule(EARLY_PUSHES[step + 1] - EARLY_PUSHES[step], step + 1)
            return
        exp = token_expiry(self.token)
        if exp is None:
            return
        if step >= len(EARLY_PUSHES) and held is not None and exp <= held:
            if not (self.token_arg is None and os.environ.get(TOKEN_FILE_ENV)):
                return  # a token that can't be renewed (given as is): the browser asks when it needs one
            # The file's rotator has not written a new one yet: look again soon.
            self._schedule(MIN_RENEW_WAIT, step + 1)
            return
        self._schedule(max(MIN_RENEW_WAIT, (exp - time.time()) * RENEW_SHARE), step + 1)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
