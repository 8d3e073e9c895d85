"""Fixtures for the Hub tests: one headless chromium per module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.browsers import chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b
