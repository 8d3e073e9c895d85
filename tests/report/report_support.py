"""Helpers for the report tests: notebooks with known data, run headless by real processes,
and readers for what chromium shows (the static SVG's drawn points, a screenshot's pixels)."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from harness.servers import ROOT
from harness.tokens import token

BIN = Path(sys.executable).parent
KNOWN_CH = "test.known"


def known_values(n: int = 60) -> list[tuple[int, float]]:
    """(step, v) pairs; v has at most three significant digits, as the chart's legend prints them."""
    return [(i, round(20 + 10 * math.sin(i / 4), 1)) for i in range(n)]


def publish(url: str, items: list[dict[str, Any]]) -> None:
    req = urllib.request.Request(
        url + "/publish", data=json.dumps(items).encode(), method="POST",
        headers={"Authorization": f"Bearer {token('feeder')}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200



def kernel_env(server_url: str) -> dict[str, str]:
    """The environment for a headless run: the kernel finds the server through these."""
    env = dict(os.environ, PULSEBOARD_URL=server_url, PULSEBOARD_TOKEN=token("notebook", read=["*"], publish=["*"]))
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    return env


def run(cmd: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def nbconvert(*args: str, env: dict[str, str], cwd: Path) -> str:
    return run([str(BIN / "jupyter"), "nbconvert", *args], env, cwd)


def pulseboard(*args: str, env: dict[str, str], cwd: Path) -> str:
    return run([str(BIN / "pulseboard"), *args], env, cwd)


def report_data(html: str) -> list[dict[str, Any]]:
    m = re.search(r'<script type="application/json" id="pulseboard-report-data">(.*?)</script>', html, re.S)
    assert m, "the report holds no chart data"
    charts: list[dict[str, Any]] = json.loads(m.group(1))
    return charts


def drawn_lines(page: Any) -> list[dict[str, Any]]:
    """Every static SVG line on the page, its drawn points mapped back to data coordinates."""
    raw: list[dict[str, Any]] = page.evaluate(
        """() => [...document.querySelectorAll('svg.pulseboard-svg')].flatMap((svg) => {
            const g = svg.querySelector('g.pulseboard-plot');
            const box = svg.getBoundingClientRect();
            return [...g.querySelectorAll('path.pulseboard-line')].map((p) => ({
                series: p.dataset.series, d: p.getAttribute('d'), plot: g.dataset.plot,
                xd: g.dataset.xDomain, yd: g.dataset.yDomain, shown: box.width > 0 && box.height > 0,
            }));
        })"""
    )
    out = []
    for line in raw:
        left, top, w, h = map(float, line["plot"].split())
        x0, x1 = map(float, line["xd"].split())
        y0, y1 = map(float, line["yd"].split())
        segments: list[list[tuple[float, float]]] = []
        for cmd, px, py in re.findall(r"([ML])([-\d.]+),([-\d.]+)", line["d"]):
            if cmd == "M":
                segments.append([])
            segments[-1].append((x0 + (float(px) - left) / w * (x1 - x0),
                                 y0 + (1 - (float(py) - top) / h) * (y1 - y0)))
        out.append({"series": line["series"], "segments": segments, "shown": line["shown"],
                    "x_tol": (x1 - x0) / w * 0.01, "y_tol": (y1 - y0) / h * 0.01})
    return out


def inked_fraction(page: Any, png: bytes) -> float:
    """The share of a screenshot's pixels that are not the background (decoded by chromium)."""
    frac: float = page.evaluate(
        """async (b64) => {
            const img = new Image();
            img.src = 'data:image/png;base64,' + b64;
            await img.decode();
            const c = document.createElement('canvas');
            c.width = img.width; c.height = img.height;
            const ctx = c.getContext('2d');
            ctx.drawImage(img, 0, 0);
            const d = ctx.getImageData(0, 0, c.width, c.height).data;
            let inked = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i] < 200 || d[i + 1] < 200 || d[i + 2] < 200) inked++;
            return inked / (d.length / 4);
        }""",
        base64.b64encode(png).decode(),
    )
    return frac


__all__ = ["ROOT"]
