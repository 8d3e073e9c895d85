"""Long runs outlive their token: `log()` reading PULSEBOARD_TOKEN_FILE, kept fresh by the real
`pulseboard token --out FILE --renew` rotator, delivers a run that spans several token
lifetimes, every message exactly once, including across a rotator outage (401s meanwhile).

Tokens live TOKEN_TTL seconds here (an hour by default) so three lifetimes pass in seconds; the
loop waits on events (each message delivered, the file rewritten), not on sleeps.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.channels import read_all
from harness.servers import PULSEBOARD, TOKEN_TTL, ServerProcess, TokenRotator, wait_until
from harness.tokens import SECRET
from pulseboard.discovery import token_expiry
from pulseboard.sender import Sender
from pulseboard.tokenfile import ENV

CH = "long.run"


@pytest.fixture
def rotator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TokenRotator]:
    path = tmp_path / "pulseboard.token"
    monkeypatch.setenv(ENV, str(path))
    monkeypatch.delenv("PULSEBOARD_TOKEN", raising=False)
    rot = TokenRotator(path).start()
    wait_until(rot.exp, timeout=30, what="the rotator's first token")
    try:
        yield rot
    finally:
        rot.stop()


def run_for(sender: Sender, first: int, until: Callable[[], bool]) -> int:
    """Log `{"i": n}` one message at a time, each awaited, until `until()` held before one was
    logged (so the last message is logged after it held); the next `n`."""
    n, done = first, False
    while not done:
        done = until()
        sender.log(CH, {"i": n})
        n += 1
        assert sender.flush(30), sender.status()
    return n


def test_a_run_outlives_three_token_lifetimes(server: ServerProcess, rotator: TokenRotator) -> None:
    sender = Sender(server.url, None, exit_timeout=0.0)  # the token comes from the file only
    first_exp = rotator.exp()
    # Three lifetimes after the first token was made: its expiry plus two more.
    n = run_for(sender, 0, lambda: time.time() > first_exp + 2 * TOKEN_TTL)
    msgs = read_all(server.url, CH)
    assert [m["seq"] for m in msgs] == list(range(1, n + 1))
    assert [m["data"]["i"] for m in msgs] == list(range(n))
    assert msgs[-1]["ts"] > first_exp + 2 * TOKEN_TTL
    status = sender.status()
    assert (status.sent, status.rejected, status.dropped) == (n, 0, 0)


def test_a_rotator_outage_holds_messages_back_then_delivers_each_once(
    server: ServerProcess, rotator: TokenRotator,
) -> None:
    sender = Sender(server.url, None, exit_timeout=0.0)
    n = run_for(sender, 0, lambda: sender.status().sent >= 20)
    rotator.stop()  # no new tokens: the one in the file expires
    # Keep logging while the server answers 401: nothing is lost or refused for good.
    while "token expired" not in (sender.status().last_error or ""):
        sender.log(CH, {"i": n})
        n += 1
        sender.flush(0.2)
    error = sender.status().last_error or ""
    assert "401" in error and ENV in error, error
    for _ in range(50):
        sender.log(CH, {"i": n})
        n += 1
    assert sender.status().queued > 0
    rotator.start()
    assert sender.flush(60), sender.status()
    msgs = read_all(server.url, CH)
    assert [m["seq"] for m in msgs] == list(range(1, n + 1))
    assert [m["data"]["i"] for m in msgs] == list(range(n))
    assert sender.status().rejected == 0


def test_token_file_errors_say_which_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pulseboard.discovery import DiscoveryError, discover

    missing = tmp_path / "nope.token"
    monkeypatch.setenv(ENV, str(missing))
    with pytest.raises(DiscoveryError, match=f"cannot read {ENV} {missing}"):
        discover("http://127.0.0.1:1")
    missing.write_text("\n")
    with pytest.raises(DiscoveryError, match="is empty: is its rotator running"):
        discover("http://127.0.0.1:1")
    missing.write_text("abc.def.ghi\n")
    assert discover("http://127.0.0.1:1", env={ENV: str(missing), "PULSEBOARD_TOKEN": "old"}) == (
        "http://127.0.0.1:1", "abc.def.ghi")


def test_token_out_renew_needs_a_file_and_a_secret(tmp_path: Path) -> None:
    env = dict(os.environ, PULSEBOARD_SECRET=SECRET)
    r = subprocess.run([*PULSEBOARD, "token", "--sub", "a", "--renew"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--renew needs --out FILE" in r.stderr and "Traceback" not in r.stderr
    out = tmp_path / "t"
    r = subprocess.run([*PULSEBOARD, "token", "--sub", "a", "--out", str(out)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == ""
    assert token_expiry(out.read_text().strip())
    assert out.stat().st_mode & 0o077 == 0  # owner-only
