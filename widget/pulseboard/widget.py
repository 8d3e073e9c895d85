"""`LiveChart`: a live chart in the notebook, fed straight from a pulseboard server.

The browser connects to the server itself (WebSocket, else SSE, else long-poll), so the
chart keeps moving while the kernel is busy. The browser writes a bounded `snapshot` of
what it shows back to the model every few seconds, so saved notebooks hold the data.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from .discovery import DiscoveryError, discover, discover_for_kernel

STATIC = Path(__file__).parent / "static"


def view_token(url: str, token: str, channels: list[str]) -> str:
    """Trade `token` for a read-only one limited to `channels` (`POST view-token`).

    The widget's token is saved with the notebook's widget state, so it should be
    able to do as little as possible. If the server can't be asked (down, key mode),
    the caller's token is used as it is.
    """
    try:
        kernel_url, _ = discover_for_kernel(url, token)
        req = urllib.request.Request(
            kernel_url.rstrip("/") + "/view-token",
            data=json.dumps({"ch": channels}).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            narrowed: str = json.loads(resp.read())["token"]
            return narrowed
    except (OSError, ValueError, KeyError, DiscoveryError):
        return token


def chart_window(window: float | str | None) -> float | None:
    """Seconds shown, or None for everything kept (`window=None` or `"all"`)."""
    if window is None or window == "all":
        return None
    if isinstance(window, str) or not window > 0:
        raise ValueError('window must be a positive number of seconds, None or "all"')
    return float(window)


def chart_smoothing(smoothing: float) -> float:
    if not 0 <= smoothing < 1:
        raise ValueError("smoothing must be in [0, 1): 0 is off, 0.6 is a good start")
    return float(smoothing)


def chart_thresholds(
    thresholds: dict[str, float | dict[str, float]] | None,
) -> dict[str, float | dict[str, float]] | None:
    """Check `{field: value}` or `{field: {"above": v, "below": w}}`."""
    if thresholds is None:
        return None
    out: dict[str, float | dict[str, float]] = {}
    for field, th in dict(thresholds).items():
        if isinstance(th, dict) and th and set(th) <= {"above", "below"}:
            out[str(field)] = {k: float(v) for k, v in th.items()}
        elif isinstance(th, (int, float)) and not isinstance(th, bool):
            out[str(field)] = float(th)
        else:
            raise ValueError(f'threshold for {field!r}: a number or {{"above": v, "below": w}}')
    return out


class LiveChart(anywidget.AnyWidget):  # type: ignore[misc]
    """A live uPlot chart of one or more channels.

    `channels` may hold glob patterns (`"train.*"`: every readable matching channel,
    including ones that appear while the chart is open). `fields` picks data fields
    (default: every numeric one); `window` is in seconds (None or "all": everything kept);
    `x` plots against a data field (such as `step`) instead of time; `units` is one unit
    for the y axis or a {field: unit} dict; `max_points` bounds the browser's buffer per
    channel. `smoothing` in [0, 1) draws a debiased EMA over the faint raw line; `log_y`
    starts on a log scale; `thresholds={"loss": 0.1}` draws the line and marks the chart
    while the latest value is above it (`{"acc": {"below": 0.9}}` for the other way).
    """

    _esm = STATIC / "widget.js"

    channels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    fields = traitlets.List(traitlets.Unicode(), allow_none=True, default_value=None).tag(sync=True)
    window = traitlets.Float(300.0, allow_none=True).tag(sync=True)
    url = traitlets.Unicode("").tag(sync=True)
    token = traitlets.Unicode("").tag(sync=True)
    title = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    height = traitlets.Int(300).tag(sync=True)
    x = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    units = traitlets.Union(
        [traitlets.Unicode(), traitlets.Dict(value_trait=traitlets.Unicode())],
        allow_none=True,
        default_value=None,
    ).tag(sync=True)
    max_points = traitlets.Int(200_000).tag(sync=True)
    theme = traitlets.Enum(["auto", "light", "dark"], "auto").tag(sync=True)
    # Chart options (issue 11): smoothing factor, log y axis, threshold lines per field.
    smoothing = traitlets.Float(0.0).tag(sync=True)
    log_y = traitlets.Bool(False).tag(sync=True)
    thresholds = traitlets.Dict(allow_none=True, default_value=None).tag(sync=True)
    # What the widget shows instead of a chart when it cannot connect (set by Python).
    problem = traitlets.Unicode("").tag(sync=True)
    # Written by the browser.
    snapshot = traitlets.Dict(allow_none=True, default_value=None).tag(sync=True)
    status = traitlets.Unicode("connecting").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)

    def __init__(
        self,
        channels: str | Iterable[str],
        fields: str | Iterable[str] | None = None,
        window: float | str | None = 300,
        url: str | None = None,
        token: str | None = None,
        title: str | None = None,
        height: int = 300,
        x: str | None = None,
        units: str | dict[str, str] | None = None,
        max_points: int = 200_000,
        theme: str = "auto",
        smoothing: float = 0.0,
        log_y: bool = False,
        thresholds: dict[str, float | dict[str, float]] | None = None,
        **kwargs: Any,
    ) -> None:
        chs = [channels] if isinstance(channels, str) else list(channels)
        if not chs:
            raise ValueError("LiveChart needs at least one channel")
        span = chart_window(window)
        if max_points < 2:
            raise ValueError("max_points must be at least 2")
        flds = None if fields is None else ([fields] if isinstance(fields, str) else list(fields))
        problem = ""
        try:
            url, token = discover(url, token)
            token = view_token(url, token, chs)
        except DiscoveryError as e:
            problem = e.detail
        super().__init__(
            channels=chs,
            fields=flds,
            window=span,
            url=url or "",
            token=token or "",
            title=title,
            height=int(height),
            x=x,
            units=units,
            max_points=int(max_points),
            theme=theme,
            smoothing=chart_smoothing(smoothing),
            log_y=bool(log_y),
            thresholds=chart_thresholds(thresholds),
            problem=problem,
            **kwargs,
        )

    def refresh_token(self, token: str | None = None) -> None:
        """Hand the browser a new token (it is read at each reconnect and refresh)."""
        if token is None:
            _, token = discover(self.url or None, None, refresh=True)
        self.token = view_token(self.url, token, self.channels)


__all__ = ["LiveChart"]
