"""Fixtures for the report tests: a chromium page with every network request blocked."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.browsers import chromium


@pytest.fixture
def offline_page() -> Iterator[Any]:
    """A page that may load file:// URLs only; `page.blocked` lists every other request it made."""
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1100, "height": 900}, accept_downloads=True)
        blocked: list[str] = []

        def guard(route: Any) -> None:
            if route.request.url.startswith("file:"):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        context.route("**/*", guard)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.blocked = blocked
        try:
            yield page
        finally:
            browser.close()
