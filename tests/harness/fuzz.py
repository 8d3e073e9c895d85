"""Hypothesis settings shared by the fuzz tests: few examples in CI, many in the long mode."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, settings

LONG = os.environ.get("PULSEBOARD_LONG") == "1"  # the long mode: many more examples

# pytest-timeout's 300 s is for one test; a fuzz test draws all its examples inside one test,
# and in the long mode 500 of them against a live server take longer than that on 2 busy cores
FUZZ_TIMEOUT = pytest.mark.timeout(2400 if LONG else 300)


def fuzz_settings(short: int, long: int) -> settings:
    """Hypothesis settings for the fuzz tests: `short` examples in CI, `long` with PULSEBOARD_LONG=1."""
    # no shrinking: each example costs real requests, and the failing one is printed as drawn
    # CI draws the same examples every run (derandomize), so a red run is a finding to reproduce, not
    # luck; the long mode draws new ones each time.
    return settings(max_examples=long if LONG else short, deadline=None, database=None, derandomize=not LONG,
                    phases=[Phase.explicit, Phase.generate], print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])
