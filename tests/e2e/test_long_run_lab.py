"""A chart in JupyterLab outlives three lifetimes of its token: the kernel reads
PULSEBOARD_TOKEN_FILE (kept fresh by the real `pulseboard token --out FILE --renew`) and
hands the browser each new token; meanwhile `log()` in another process (reading the same
file) publishes one message at a time, and the chart shows every one, exactly once.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import jupyterlab  # noqa: F401  (the test extra installs it: scripts/setup)
import pytest

from harness.browsers import HOOK, chromium
from harness.jupyter import JupyterLabProcess, run_all
from harness.notebooks import notebook
from harness.servers import TOKEN_TTL, ServerProcess, TokenRotator, wait_until
from pulseboard.sender import Sender
from pulseboard.tokenfile import ENV

pytestmark = [pytest.mark.jupyter, pytest.mark.browser]
CH = "long.chart"


@pytest.fixture
def lab(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[JupyterLabProcess, TokenRotator]]:
    root = Path(tempfile.mkdtemp(prefix="pb-long-"))
    notebook(root / "long.ipynb", [f"from pulseboard import LiveChart\nLiveChart({CH!r}, fields=['v'], x='i')"])
    rotator = TokenRotator(root / "pulseboard.token").start()
    wait_until(rotator.exp, timeout=30, what="the rotator's first token")
    monkeypatch.setenv(ENV, str(rotator.path))  # the test's own log() reads it too
    monkeypatch.delenv("PULSEBOARD_TOKEN", raising=False)
    jlab = JupyterLabProcess(root, env={"PULSEBOARD_URL": server.url, ENV: str(rotator.path)})
    jlab.env.pop("PULSEBOARD_TOKEN", None)
    try:
        jlab.start()
        yield jlab, rotator
    finally:
        jlab.stop()
        rotator.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_notebook_chart_keeps_updating_across_three_token_lifetimes(
    lab: tuple[JupyterLabProcess, TokenRotator], server: ServerProcess,
) -> None:
    jlab, rotator = lab
    sender = Sender(server.url, None, exit_timeout=0.0)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            run_all(page, jlab, "long.ipynb")
            page.wait_for_selector(".pulseboard-chart[data-status=live]", timeout=60_000)
            live_exp = rotator.exp()  # the browser's first token expires no later than this
            n, done = 0, False
            while not done:
                done = time.time() > live_exp + 2 * TOKEN_TTL  # three lifetimes since that token was made
                sender.log(CH, {"i": n, "v": n % 7})
                n += 1
                assert sender.flush(30), sender.status()
                # The chart shows it (awaited: each message, as it comes).
                wait_until(lambda n=n: len((page.evaluate(HOOK, CH) or {}).get("seqs", [])) >= n, timeout=30,
                           what=f"message {n} on the chart")
            state = page.evaluate(HOOK, CH)
            assert state["seqs"] == list(range(1, n + 1))  # every message, exactly once, in order
            assert state["status"] == "live"
            assert "token expired" not in page.locator(".pulseboard-status").inner_text()
        finally:
            browser.close()
