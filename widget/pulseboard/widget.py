"""`LiveChart`: a live chart in the notebook, fed straight from a pulseboard server.

The browser connects to the server itself (WebSocket, else SSE, else long-poll), so the
chart keeps moving while the kernel is busy. The chart's data goes into the widget state
(`_snapshot`): the kernel reads it from the server's history on display, after every cell
and on `snapshot()`, and the browser writes what it shows every few seconds. Displaying a
chart also writes a static SVG output of it for viewers that can't run widgets
(docs/reports.md).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anywidget
import traitlets
from IPython.core.getipython import get_ipython
from IPython.display import display, update_display

from . import snapshot as snapshot_mod
from .discovery import DiscoveryError, discover_for_kernel
from .kernel_token import TokenKeeper, view_token
from .snapshot import SnapshotError
from .svg import static_bundle

STATIC = Path(__file__).parent / "static"
SNAPSHOT_RETRY = 30.0  # seconds without automatic snapshots after one failed


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
    # The token is not a trait: it reaches the browser in a `token` message, on request.
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
    # Chart options: smoothing factor, log y axis, threshold lines per field.
    smoothing = traitlets.Float(0.0).tag(sync=True)
    log_y = traitlets.Bool(False).tag(sync=True)
    thresholds = traitlets.Dict(allow_none=True, default_value=None).tag(sync=True)
    # What the widget shows instead of a chart when it cannot connect (set by Python).
    problem = traitlets.Unicode("").tag(sync=True)
    # The chart's data for saved notebooks and reports: taken by the kernel from the server's
    # history (on display, after each cell, on `snapshot()`) and by the browser while it shows
    # the chart. `_static_id` names the chart's static SVG output (the browser hides it).
    _snapshot = traitlets.Dict(allow_none=True, default_value=None).tag(sync=True)
    _static_id = traitlets.Unicode("").tag(sync=True)
    # Written by the browser.
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
        # The token stays in the kernel and reaches the browser in messages (kernel_token.py).
        self._tokens = TokenKeeper(self._send_token, token)
        url, problem = self._tokens.first(url, chs)
        super().__init__(
            channels=chs,
            fields=flds,
            window=span,
            url=url or "",
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
        self.on_msg(self._tokens.on_msg)
        self._tokens.begin()
        self._reports_init()

    def refresh_token(self, token: str | None = None) -> None:
        """Hand the browser a new token now (a fresh Hub exchange when `token` is None)."""
        self._tokens.replace(token)

    def _send_token(self, msg: dict[str, Any]) -> None:
        self.send(msg)

    # --- snapshots and the static rendering (reports) ------------------------------------

    def _reports_init(self) -> None:
        self._static_id = "pulseboard-" + uuid.uuid4().hex[:16]
        self._shown = False  # snapshots follow the cells (displayed, or rendered inside a container)
        self._static_shown = False  # this chart has a static output to refresh
        self._shell: Any = None  # the IPython shell whose post_run_cell hook this chart registered
        self._retry_at = 0.0  # after a failed automatic snapshot, the next is skipped until then
        self.observe(self._refresh_static, names=["_snapshot"])
        # A chart rendered inside a container (HBox...) is never displayed itself: its first
        # status from a browser says it is shown.
        self.observe(lambda _c: self._hook(), names=["status"])

    def _hook(self) -> None:
        if not self._shown:
            self._shown = True
            ip = get_ipython()  # type: ignore[no-untyped-call]
            if ip is not None:
                ip.events.register("post_run_cell", self._after_cell)
                self._shell = ip  # close() unregisters from this one, with no import at exit

    def snapshot(self) -> dict[str, Any]:
        """Read the chart's range from the server's history into the widget state now.

        Saved notebooks, exported HTML and `pulseboard report` show this data. Raises
        `SnapshotError` (one line: why) when the server can't be read.
        """
        url, token = self._reader()
        snap = snapshot_mod.take(url, token, self.channels, self.fields, self.x, self.window)
        self._snapshot = snap
        return snap

    def _reader(self) -> tuple[str, str]:
        """The URL the kernel reaches the server at, and the token it reads history with."""
        if not self.url or not self._tokens.token:
            raise SnapshotError(self.problem or "no server configured")
        try:
            return discover_for_kernel(self.url, self._tokens.token or None)
        except DiscoveryError as e:
            raise SnapshotError(e.detail) from None

    def _try_snapshot(self, if_changed: bool = False) -> None:
        """The automatic snapshot (display, after a cell): a server that can't be read costs at
        most one request timeout (5 s) per `SNAPSHOT_RETRY` seconds, never an error in the cell.
        `if_changed`: first ask each channel's newest seq (one small request each) and keep the
        snapshot if nothing was published since it was taken."""
        if time.monotonic() < self._retry_at:
            return
        try:
            if if_changed and self._snapshot and self._snapshot.get("tops"):
                url, token = self._reader()
                if snapshot_mod.tops(url, token, self.channels) == self._snapshot["tops"]:
                    return
            self.snapshot()
        except SnapshotError:
            self._retry_at = time.monotonic() + SNAPSHOT_RETRY  # keep the last snapshot meanwhile

    def _static_bundle(self) -> dict[str, Any]:
        return static_bundle(self._static_id, self._snapshot, self._report_options())

    def _report_options(self) -> dict[str, Any]:
        title = self.title or ", ".join(self.channels)
        return {"channels": list(self.channels), "fields": self.fields, "title": title, "x": self.x,
                "units": self.units, "height": self.height, "window": self.window}

    def _refresh_static(self, _change: Any = None) -> None:
        if self._static_shown:
            update_display(self._static_bundle(), raw=True, display_id=self._static_id)  # type: ignore[no-untyped-call]

    def _after_cell(self, _result: Any = None) -> None:
        if self._shown and self.comm is not None:
            self._try_snapshot(if_changed=True)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The live chart's output, preceded by its static SVG output (see docs/reports.md)."""
        self._try_snapshot(if_changed=True)
        self._hook()
        self._static_shown = True
        display(self._static_bundle(), raw=True, display_id=self._static_id)  # type: ignore[no-untyped-call]
        return super()._repr_mimebundle_(**kwargs)

    def close(self) -> None:
        tokens: TokenKeeper | None = getattr(self, "_tokens", None)
        if tokens is not None:
            tokens.close()
        # close() also runs from Widget.__del__, even at interpreter exit, when get_ipython()
        # can no longer import anything: use the shell the hook was registered with, if any.
        ip = getattr(self, "_shell", None)
        if ip is not None:
            with contextlib.suppress(ValueError):
                ip.events.unregister("post_run_cell", self._after_cell)
            self._shell = None
        self._shown = self._static_shown = False
        super().close()


__all__ = ["LiveChart", "view_token"]
