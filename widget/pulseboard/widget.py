"""`LiveChart`: a live chart in the notebook, fed straight from a pulseboard server.

The browser connects to the server itself (WebSocket, else SSE, else long-poll), so the
chart keeps moving while the kernel is busy. The browser writes a bounded `snapshot` of
what it shows back to the model every few seconds, so saved notebooks hold the data.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from .kernel_token import TokenKeeper, view_token

STATIC = Path(__file__).parent / "static"


class LiveChart(anywidget.AnyWidget):  # type: ignore[misc]
    """A live uPlot chart of one or more channels.

    `fields` picks data fields (default: every numeric one); `window` is in seconds;
    `x` plots against a data field (such as `step`) instead of time; `units` is one unit
    for the y axis or a {field: unit} dict; `max_points` bounds the browser's buffer.
    """

    _esm = STATIC / "widget.js"

    channels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    fields = traitlets.List(traitlets.Unicode(), allow_none=True, default_value=None).tag(sync=True)
    window = traitlets.Float(300.0).tag(sync=True)
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
    max_points = traitlets.Int(20_000).tag(sync=True)
    theme = traitlets.Enum(["auto", "light", "dark"], "auto").tag(sync=True)
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
        window: float = 300,
        url: str | None = None,
        token: str | None = None,
        title: str | None = None,
        height: int = 300,
        x: str | None = None,
        units: str | dict[str, str] | None = None,
        max_points: int = 20_000,
        theme: str = "auto",
        **kwargs: Any,
    ) -> None:
        chs = [channels] if isinstance(channels, str) else list(channels)
        if not chs:
            raise ValueError("LiveChart needs at least one channel")
        if window <= 0:
            raise ValueError("window must be a positive number of seconds")
        if max_points < 2:
            raise ValueError("max_points must be at least 2")
        flds = None if fields is None else ([fields] if isinstance(fields, str) else list(fields))
        # The token stays in the kernel and reaches the browser in messages (kernel_token.py).
        self._tokens = TokenKeeper(self._send_token, token)
        url, problem = self._tokens.first(url, chs)
        super().__init__(
            channels=chs,
            fields=flds,
            window=float(window),
            url=url or "",
            title=title,
            height=int(height),
            x=x,
            units=units,
            max_points=int(max_points),
            theme=theme,
            problem=problem,
            **kwargs,
        )
        self.on_msg(self._tokens.on_msg)
        self._tokens.begin()

    def refresh_token(self, token: str | None = None) -> None:
        """Hand the browser a new token now (a fresh Hub exchange when `token` is None)."""
        self._tokens.replace(token)

    def _send_token(self, msg: dict[str, Any]) -> None:
        self.send(msg)

    def close(self) -> None:
        tokens: TokenKeeper | None = getattr(self, "_tokens", None)
        if tokens is not None:
            tokens.close()
        super().close()


__all__ = ["LiveChart", "view_token"]
