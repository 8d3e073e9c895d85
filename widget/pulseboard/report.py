"""Reports: a notebook as one self-contained HTML file whose charts stay interactive offline.

`pulseboard report NOTEBOOK [-o OUT.html] [--execute]` and `jupyter nbconvert --to pulseboard`
both run `ReportExporter`: nbconvert's HTML export, where every chart's output becomes a
placeholder (holding its static SVG until the script runs), the charts' data is inlined
as JSON, our report bundle is inlined as a script, and the notebook's widget state (which
may hold a token) and every script loaded from the network are left out.

Where a chart's data comes from: its static output (`application/vnd.pulseboard.chart+json`,
written by `LiveChart` on display and refreshed with every snapshot), else the `_snapshot`
of its saved widget state.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from nbconvert.exporters import HTMLExporter
from nbformat import NotebookNode

from .svg import CHART_MIME, is_static_html, render, view_options

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
BUNDLE = Path(__file__).parent / "static" / "report.js"
EXECUTE_TIMEOUT = 1800  # seconds per cell with --execute
PAGE_CSS = """
.pulseboard-report-chart{margin:4px 0 12px}
.pulseboard-report-chart .pulseboard-status{display:none}
.pulseboard-report-bar{display:flex;gap:12px;align-items:center;font:12px sans-serif;color:#555;margin-top:4px}
.pulseboard-report-bar button{font:12px sans-serif;padding:2px 8px;cursor:pointer}
"""


class ReportError(Exception):
    """The report can't be made; `str(e)` says why in one line."""


def _chart_models(nb: NotebookNode) -> dict[str, dict[str, Any]]:
    """Saved widget state of every LiveChart, by model id."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    out = {}
    for model_id, entry in state.items():
        s = entry.get("state", {}) if isinstance(entry, dict) else {}
        # A LiveChart; notebooks saved before reports existed have `snapshot` and no `_static_id`.
        if isinstance(s, dict) and "channels" in s and ("_static_id" in s or "snapshot" in s):
            out[model_id] = s
    return out


def _spec_from_state(s: dict[str, Any]) -> dict[str, Any]:
    title = s.get("title") or ", ".join(s.get("channels") or [])
    keys = ("channels", "fields", "x", "units", "height", "window")
    snap = s.get("_snapshot") or s.get("snapshot")
    view = view_options(s.get("smoothing"), s.get("log_y"), s.get("zoom"), s.get("hidden"))
    return {"options": {"title": title, **{k: s.get(k) for k in keys}, **view}, "snapshot": snap}


def _placeholder(n: int, spec: dict[str, Any]) -> NotebookNode:
    o = spec["options"]
    svg = render(spec.get("snapshot"), str(o.get("title") or ""), o.get("x"), o.get("units"),
                 int(o.get("height") or 300), view=o)
    html = f'<div class="pulseboard-report-chart" data-pulseboard-chart="{n}">{svg}</div>'
    return NotebookNode({"output_type": "display_data", "metadata": {}, "data": {"text/html": html}})  # type: ignore[no-untyped-call]


def prepare(nb: NotebookNode) -> tuple[NotebookNode, list[dict[str, Any]]]:
    """A copy of `nb` with every chart output replaced by a placeholder, and the charts' data."""
    nb = copy.deepcopy(nb)
    models = _chart_models(nb)
    by_static = {s["_static_id"]: s for s in models.values() if s.get("_static_id")}
    has_static = {
        out["data"][CHART_MIME].get("id")
        for cell in nb.cells for out in cell.get("outputs", [])
        if CHART_MIME in out.get("data", {})
    }
    charts: list[dict[str, Any]] = []
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        outputs = []
        after_static = False
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            # A chart's or a runs table's static output: the widget output right after it is the
            # same thing live, and without saved state would show only its object repr.
            runs_static = is_static_html(data.get("text/html"))
            after_static, was_static = CHART_MIME in data or runs_static, after_static
            if CHART_MIME in data:
                spec = {"options": data[CHART_MIME].get("options", {}), "snapshot": data[CHART_MIME].get("snapshot")}
                saved = by_static.get(data[CHART_MIME].get("id"), {})
                if not spec["snapshot"] and saved.get("_snapshot"):
                    spec["snapshot"] = saved["_snapshot"]
                if saved:  # the saved widget state is the later word on the view set in the browser
                    view = [saved.get(k) for k in ("smoothing", "log_y", "zoom", "hidden")]
                    spec["options"] = {**spec["options"], **view_options(*view)}
            elif WIDGET_VIEW in data and data[WIDGET_VIEW].get("model_id") in models:
                s = models[data[WIDGET_VIEW]["model_id"]]
                if s.get("_static_id") and s["_static_id"] in has_static:
                    continue  # the chart's static output stands for it
                spec = _spec_from_state(s)
            elif WIDGET_VIEW in data and was_static:
                continue  # a widget output saved without its state: its static output is just before
            else:
                outputs.append(out)
                continue
            outputs.append(_placeholder(len(charts), spec))
            charts.append(spec)
        cell["outputs"] = outputs
    nb.metadata.pop("widgets", None)  # widget state may hold a token; charts are inlined instead
    return nb, charts


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else type(e).__name__


def _script_safe(text: str) -> str:
    """Our own bundle inside <script>: `</` can't end the element early."""
    return text.replace("</", "<\\/")


def json_in_html(obj: Any) -> str:
    """JSON to inline in a <script> element: no `<`, `>` or `&` at all (as \\u003c, ...), so no
    string in it (a field named `<!--<script>`, `</script>`) can switch the HTML parser's
    script state and take every chart on the page with it. JSON.parse reads it unchanged."""
    return json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class ReportExporter(HTMLExporter):  # type: ignore[misc]
    """`jupyter nbconvert --to pulseboard`: the notebook as an offline report."""

    export_from_notebook = "Pulseboard report"

    def from_notebook_node(  # type: ignore[override]
        self, nb: NotebookNode, resources: dict[str, Any] | None = None, **kw: Any
    ) -> tuple[str, dict[str, Any]]:
        nb, charts = prepare(nb)
        html, resources = super().from_notebook_node(nb, resources, **kw)
        if not BUNDLE.exists():
            raise ReportError(f"the report bundle is missing ({BUNDLE}); build it with `cd js && npm run build`")
        # Scripts from the network (require.js, MathJax) would not load offline: leave them out.
        html = re.sub(r'<script[^>]*\ssrc="https?://[^"]*"[^>]*>\s*</script>', "", html)
        tail = (
            f"<style>{PAGE_CSS}</style>\n"
            f'<script type="application/json" id="pulseboard-report-data">{json_in_html(charts)}</script>\n'
            f"<script>{_script_safe(BUNDLE.read_text())}</script>\n"
        )
        at = html.rfind("</body>")
        html = html[:at] + tail + html[at:] if at >= 0 else html + tail
        return html, resources


def make_report(notebook: Path, out: Path | None = None, execute: bool = False) -> Path:
    """Write `notebook`'s report (default: next to it, `.html`); return its path."""
    import nbformat

    try:
        nb = nbformat.read(notebook, as_version=4)  # type: ignore[no-untyped-call]
        nbformat.validate(nb)  # type: ignore[no-untyped-call]
    except OSError as e:
        raise ReportError(f"cannot read {notebook}: {e.strerror or e}") from None
    except Exception as e:  # nbformat raises many kinds for a file that isn't a notebook
        raise ReportError(f"{notebook} is not a valid notebook: {_first_line(e)}") from None
    if execute:
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError

        try:
            where = {"metadata": {"path": str(notebook.parent)}}
            NotebookClient(nb, timeout=EXECUTE_TIMEOUT, resources=where).execute()
        except CellExecutionError as e:
            lines = ANSI.sub("", str(e)).strip().splitlines()
            raise ReportError(f"executing {notebook} failed: {lines[-1] if lines else 'a cell failed'}") from None
    exporter = ReportExporter()  # type: ignore[no-untyped-call]
    html, _ = exporter.from_notebook_node(nb, {"metadata": {"name": notebook.stem}})
    target = out or notebook.with_suffix(".html")
    target.write_text(html, encoding="utf-8")
    return target
