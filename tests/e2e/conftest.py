"""Browser fixtures: Debian's chromium through Playwright (one per module), and publishers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, Feeder, PageServer, bundle_built


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run scripts/setup (apt-get install chromium)")
    if not bundle_built():
        pytest.fail("the JS bundle is not built: run `npm ci && npm run build` in js/")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: Any) -> Any:
    p = context.new_page()
    p.on("pageerror", lambda e: print("pageerror:", e))
    return p


@pytest.fixture
def feeder() -> Iterator[Callable[..., Feeder]]:
    started: list[Feeder] = []

    def make(url: str, channels: list[str], hz: float = 20.0, **kwargs: Any) -> Feeder:
        f = Feeder(url, channels, hz, **kwargs).start()
        started.append(f)
        return f

    yield make
    for f in started:
        f.stop()


@pytest.fixture(scope="module")
def page_server() -> Iterator[PageServer]:
    """A second origin for widget pages, like a JupyterLab next to the pulseboard server."""
    srv = PageServer()
    try:
        yield srv
    finally:
        srv.close()
