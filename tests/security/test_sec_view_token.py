"""`view_token` fails closed: the browser gets the narrowed token or none, never the caller's
full token (issue: one string must not stop the server, finding "view_token falls back to
handing the browser the caller's full token"). The browser side is in
tests/hub/test_widget_token.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import pytest
from sec_support import Keys, claims

from harness.servers import ServerProcess, free_port
from harness.tokens import token
from pulseboard import LiveChart
from pulseboard.discovery import DiscoveryError
from pulseboard.kernel_token import view_token

FULL = token(sub="caller", read=["*"], publish=["*"])


def test_a_server_that_cannot_narrow_gets_no_full_token(server_factory: Any, tmp_path: Path) -> None:
    keys = Keys()  # key mode: the server verifies RS256 tokens but has no secret to sign a narrower one
    key_mode: ServerProcess = server_factory("--public-key", str(keys.write_rsa_public(tmp_path)), secret=None)
    full = jwt.encode(claims(aud=None, iss=None), keys.rsa, "RS256")
    with pytest.raises(DiscoveryError) as err:
        view_token(key_mode.url, full, ["run.loss"])
    assert "would not get a read-only token for the browser (400" in err.value.detail
    assert "does not fall back to your full token" in err.value.detail


def test_an_unreachable_server_gets_no_full_token() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DiscoveryError) as err:
        view_token(dead, FULL, ["run.loss"])
    assert "cannot get a read-only token for the browser" in err.value.detail
    chart = LiveChart("run.loss", url=dead, token=FULL)
    try:
        assert "does not fall back to your full token" in chart.problem
        assert chart._tokens.token == ""  # nothing to hand the browser
        assert FULL not in str(chart.get_state())
    finally:
        chart.close()


def test_a_server_that_narrows_still_works(server: ServerProcess) -> None:
    narrowed = view_token(server.url, FULL, ["run.loss"])
    assert narrowed != FULL
