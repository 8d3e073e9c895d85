"""Browser fixtures: Debian's chromium through Playwright (one per module), and publishers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness.browsers import Feeder, chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


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
