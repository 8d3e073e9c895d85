"""`Runs(project, metrics=None)`: the live runs table widget, and its static table for reports.

The browser reads `GET runs?project=` every few seconds and follows the runs' channels for
the metrics' last/min/max; clicking rows selects runs. `Runs.link(chart)` makes a
`LiveChart` draw only the selected runs (every run when none is selected): the link lives in
the browser (`ipywidgets.jsdlink` on `selected_channels` -> `channels`), so it works while
the kernel is busy. The table's content goes into `_snapshot` (from the kernel on display
and after each cell, from the browser while it shows), and a displayed table also writes a
static HTML table output, which exported notebooks and `pulseboard report` show.
"""

from __future__ import annotations

import contextlib
import html
import json
import time
import urllib.parse
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anywidget
import traitlets
from IPython.core.getipython import get_ipython
from IPython.display import display, update_display

from .kernel_token import TokenKeeper
from .publish import PublishError
from .svg import STATIC_CLASS
from .tracking import Api, check_name

STATIC = Path(__file__).parent / "static"
SNAPSHOT_RUNS = 2000  # rows a snapshot keeps
HISTORY_RUNS = 200  # runs whose metrics the kernel's snapshot reads from history (one request each)


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in (config or {}).items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(flat_config(v, key))
        elif v is None or isinstance(v, (int, float, str, bool)):
            out[key] = v
        else:
            out[key] = json.dumps(v)
    return out


def differing_keys(configs: list[dict[str, Any]]) -> list[str]:
    if len(configs) < 2:
        return sorted(configs[0]) if configs else []
    keys = {k for c in configs for k in c}
    missing = object()
    return sorted(k for k in keys if any(c.get(k, missing) != configs[0].get(k, missing) for c in configs))


def fmt_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        if v.is_integer():
            return str(int(v))
        a = abs(v)
        return f"{v:.3e}" if a < 1e-3 or a >= 1e6 else f"{float(f'{v:.5g}')!r}"
    return str(v)


def fmt_duration(s: float) -> str:
    if s < 60:
        return f"{round(s)}s"
    if s < 3600:
        return f"{int(s // 60)}m {round(s % 60)}s"
    return f"{int(s // 3600)}h {round((s % 3600) / 60)}m"


def table_snapshot(runs: list[dict[str, Any]], stats: dict[str, dict[str, dict[str, float]]],
                   metrics: list[str]) -> dict[str, Any]:
    """The table's columns and rows (newest run first) as text, like the browser's."""
    now = time.time()
    configs = {r["name"]: flat_config(r.get("config") or {}) for r in runs}
    keys = differing_keys(list(configs.values()))
    figures = [f"{m} {w}" for m in metrics for w in ("last", "min", "max")]
    columns = ["run", "status", "start", "duration", *keys, *figures]
    rows = []
    for r in sorted(runs, key=lambda r: -(r.get("start") or 0))[:SNAPSHOT_RUNS]:
        start = float(r.get("start") or 0)
        end = r.get("end") or (now if r.get("status") == "running" else r.get("updated") or start)
        cells = [r["name"], r["status"], time.strftime("%Y-%m-%d %H:%M", time.localtime(start)),
                 fmt_duration(max(0.0, float(end) - start)), *(fmt_value(configs[r["name"]].get(k)) for k in keys)]
        for m in metrics:
            st = stats.get(r["channel"], {}).get(m)
            cells += [fmt_value(st[w]) if st else "" for w in ("last", "min", "max")]
        rows.append({"name": r["name"], "status": r["status"], "cells": cells})
    return {"columns": columns, "rows": rows, "selected": [], "source": "kernel", "taken": now}


def static_html(static_id: str, project: str, snap: dict[str, Any] | None) -> dict[str, Any]:
    """The table's static output (plain HTML: no token, no URL)."""
    e = html.escape
    snap = snap or {"columns": [], "rows": []}
    head = "".join(f"<th>{e(c)}</th>" for c in snap["columns"])
    body = "".join(
        f'<tr data-run="{e(r["name"])}" data-status="{e(r["status"])}">'
        + "".join(f"<td>{e(str(c))}</td>" for c in r["cells"]) + "</tr>"
        for r in snap["rows"]
    )
    n = len(snap["rows"])
    table = (f'<div class="{STATIC_CLASS} pulseboard-runs-static" data-pulseboard-static="{e(static_id)}">'
             f'<div style="font:600 12px sans-serif;margin:2px 0">runs of {e(project)} ({n})</div>'
             '<table style="border-collapse:collapse;font:12px sans-serif">'
             f'<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')
    return {"text/html": table, "text/plain": f"[pulseboard runs: {project}, {n} runs]"}


class Runs(anywidget.AnyWidget):  # type: ignore[misc]
    """A live table of a project's runs: status, start, duration, the config keys that differ
    between runs, and last/min/max of `metrics` (default: every numeric field seen).

    Click rows to select runs; `link(chart)` makes a LiveChart draw the selected ones.
    """

    _esm = STATIC / "runs.js"

    project = traitlets.Unicode().tag(sync=True)
    metrics = traitlets.List(traitlets.Unicode(), allow_none=True, default_value=None).tag(sync=True)
    url = traitlets.Unicode("").tag(sync=True)
    problem = traitlets.Unicode("").tag(sync=True)
    # Written by the browser (and by Python: `runs.selected = [...]`).
    selected = traitlets.List(traitlets.Unicode()).tag(sync=True)
    selected_channels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    _snapshot = traitlets.Dict(allow_none=True, default_value=None).tag(sync=True)
    _static_id = traitlets.Unicode("").tag(sync=True)

    def __init__(self, project: str, metrics: str | Iterable[str] | None = None, url: str | None = None,
                 token: str | None = None, **kwargs: Any) -> None:
        try:
            check_name(project, "project")
        except PublishError as e:
            raise ValueError(e.detail) from None
        mets = None if metrics is None else ([metrics] if isinstance(metrics, str) else list(metrics))
        self._tokens = TokenKeeper(self._send_token, token)
        found, problem = self._tokens.first(url, [f"{project}.*"])
        super().__init__(project=project, metrics=mets, url=found or "", problem=problem,
                         selected_channels=[f"{project}.*"], _static_id="pulseboard-" + uuid.uuid4().hex[:16],
                         **kwargs)
        self.on_msg(self._tokens.on_msg)
        self._tokens.begin()
        self._shown = self._static_shown = False
        self._token_arg = token
        self.observe(self._refresh_static, names=["_snapshot"])
        self.observe(self._selection_changed, names=["selected"])

    def _send_token(self, msg: dict[str, Any]) -> None:
        self.send(msg)

    def _selection_changed(self, change: Any) -> None:
        names = list(change["new"])
        chans = [f"{self.project}.{n}" for n in names] if names else [f"{self.project}.*"]
        if chans != self.selected_channels:
            self.selected_channels = chans

    def link(self, chart: Any) -> Any:
        """Make `chart` (a LiveChart) draw the runs selected in this table, every run when none is.
        The link runs in the browser; returns it (`.unlink()` undoes it)."""
        import ipywidgets

        chart.channels = list(self.selected_channels)
        return ipywidgets.jsdlink((self, "selected_channels"), (chart, "channels"))

    def records(self) -> list[dict[str, Any]]:
        """The project's run records the token may read, as `GET runs` answers them."""
        api = Api(self.url or None, self._token_arg)
        out: list[dict[str, Any]] = api.call("runs?" + urllib.parse.urlencode({"project": self.project}))["runs"]
        return out

    def snapshot(self) -> dict[str, Any]:
        """Read the table from the server now into the widget state (saved notebooks and reports show it)."""
        api = Api(self.url or None, self._token_arg)
        runs = api.call("runs?" + urllib.parse.urlencode({"project": self.project}))["runs"]
        metrics = list(self.metrics or [])
        stats: dict[str, dict[str, dict[str, float]]] = {}
        if metrics:
            for r in sorted(runs, key=lambda r: -(r.get("start") or 0))[:HISTORY_RUNS]:
                with contextlib.suppress(PublishError):  # a run that logged nothing yet: 404
                    hist = api.call("history?" + urllib.parse.urlencode({"ch": r["channel"], "limit": 1000}))
                    stats[r["channel"]] = _stats(hist["msgs"], metrics)
        snap = table_snapshot(runs, stats, metrics)
        self._snapshot = snap
        return snap

    def _try_snapshot(self) -> None:
        with contextlib.suppress(PublishError):
            self.snapshot()

    def _refresh_static(self, _change: Any = None) -> None:
        if self._static_shown:
            update_display(static_html(self._static_id, self.project, self._snapshot), raw=True,  # type: ignore[no-untyped-call]
                           display_id=self._static_id)

    def _after_cell(self, _result: Any = None) -> None:
        if self._shown and self.comm is not None and (self._snapshot or {}).get("source") != "browser":
            self._try_snapshot()

    def __repr__(self) -> str:
        """What a console, and an export whose viewer can't run widgets, show for the table."""
        return f"Runs({self.project!r}" + (f", metrics={list(self.metrics)!r})" if self.metrics else ")")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The live table's output, preceded by its static HTML table (for viewers without widgets)."""
        self._try_snapshot()
        if not self._shown:
            self._shown = True
            ip = get_ipython()  # type: ignore[no-untyped-call]
            if ip is not None:
                ip.events.register("post_run_cell", self._after_cell)
        self._static_shown = True
        display(static_html(self._static_id, self.project, self._snapshot), raw=True,  # type: ignore[no-untyped-call]
                display_id=self._static_id)
        return super()._repr_mimebundle_(**kwargs)

    def close(self) -> None:
        tokens: TokenKeeper | None = getattr(self, "_tokens", None)
        if tokens is not None:
            tokens.close()
        ip = get_ipython()  # type: ignore[no-untyped-call]
        if getattr(self, "_shown", False) and ip is not None:
            with contextlib.suppress(ValueError):
                ip.events.unregister("post_run_cell", self._after_cell)
        self._shown = self._static_shown = False
        super().close()


def _stats(msgs: list[dict[str, Any]], metrics: list[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for m in msgs:
        for f in metrics:
            v = m["data"].get(f)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                s = out.get(f)
                if s is None:
                    out[f] = {"last": v, "min": v, "max": v}
                else:
                    s["last"], s["min"], s["max"] = v, min(s["min"], v), max(s["max"], v)
    return out


__all__ = ["Runs"]
