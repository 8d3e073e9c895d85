"""Fixtures for the Hub tests: one headless chromium per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.browser_support import CHROMIUM, CHROMIUM_ARGS, bundle_built


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
