"""pulseboard.log's sender against a real server: batching, lost answers, a full queue, types."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from logsupport import LosingProxy

import pulseboard
from harness.channels import read_all
from harness.servers import ServerProcess, free_port, wait_until
from harness.tokens import token
from pulseboard.sender import Sender


@pytest.fixture
def senders() -> Iterator[Callable[..., Sender]]:
    def make(url: str, **kwargs: object) -> Sender:
        kwargs.setdefault("exit_timeout", 0.0)  # what a test leaves undelivered does not hold up pytest's exit
        return Sender(url, token(), **kwargs)  # type: ignore[arg-type]

    yield make


def test_lost_answers_cause_no_duplicate(server_factory: Callable[..., ServerProcess],
                                         senders: Callable[..., Sender]) -> None:
    server = server_factory("--history", "5000")
    proxy = LosingProxy(server.port)
    try:
        sender = senders(f"http://127.0.0.1:{proxy.port}")
        for round_ in range(3):
            proxy.drop = 1  # the server numbers the next batch, its answer never arrives
            for i in range(500):
                sender.log("lost.a", {"i": round_ * 500 + i})
            assert sender.flush(60)
        assert proxy.dropped == 3
    finally:
        proxy.close()
    msgs = read_all(server.url, "lost.a")
    assert [m["seq"] for m in msgs] == list(range(1, 1501))
    assert [m["data"]["i"] for m in msgs] == list(range(1500))
    status = sender.status()
    assert (status.sent, status.dropped, status.rejected, status.queued) == (1500, 0, 0, 0)


def test_full_queue_drops_the_oldest_and_reports_once(
    server_factory: Callable[..., ServerProcess], senders: Callable[..., Sender],
    capfd: pytest.CaptureFixture[str],
) -> None:
    port = free_port()  # nothing listens here yet
    sender = senders(f"http://127.0.0.1:{port}", max_queue=100)
    for i in range(350):
        sender.log("full.a", {"i": i})  # never raises, server or not
    status = sender.status()
    assert status.dropped >= 150 and status.queued <= 100 + 5000
    assert status.dropped + status.queued == 350
    wait_until(lambda: sender.status().server_reachable is False, what="a failed attempt")
    assert capfd.readouterr().err.count("log queue full") == 1
    server = server_factory("--history", "1000", port=port)
    assert sender.flush(60)
    got = [m["data"]["i"] for m in read_all(server.url, "full.a")]
    assert got == list(range(350 - len(got), 350))  # the newest survive, in order
    assert len(got) == 350 - sender.status().dropped


def test_warns_once_when_unreachable_and_once_when_back(
    server_factory: Callable[..., ServerProcess], senders: Callable[..., Sender],
    capfd: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    sender = senders(f"http://127.0.0.1:{port}", warn_after=0.3)
    sender.log("warn.a", {"i": 1})
    err = wait_until(lambda: capfd.readouterr().err, what="the unreachable warning")
    assert "nothing delivered for 0.3 s" in err and err.count("\n") == 1
    assert sender.status().server_reachable is False and "cannot reach" in (sender.status().last_error or "")
    server = server_factory(port=port)
    assert sender.flush(30)
    err = capfd.readouterr().err
    assert err.count("reachable again") == 1 and err.count("\n") == 1
    assert sender.status().server_reachable is True
    assert [m["data"] for m in read_all(server.url, "warn.a")] == [{"i": 1}]


@pytest.mark.parametrize("bad", ["not-a-jwt", token(secret="the secret of another server, 32 bytes or more")])
def test_a_token_refused_from_the_start_is_said_at_once_and_nothing_is_dropped(
    server: ServerProcess, capfd: pytest.CaptureFixture[str], bad: str,
) -> None:
    # warn_after is far off: only a refused token's own rule can speak within this test.
    sender = Sender(server.url, bad, exit_timeout=0.0, warn_after=3600)
    sender.log("refused.a", {"i": 1})
    err = wait_until(lambda: capfd.readouterr().err, timeout=30, what="the refused-token warning")
    assert err.startswith("pulseboard: nothing delivered (server answered 401") and err.count("\n") == 1, err
    assert "malformed or its signature is bad" in err and bad not in err
    status = sender.status()
    assert status.queued == 1 and status.dropped == status.rejected == 0  # kept for a better token


def test_types_step_and_rows(server: ServerProcess, senders: Callable[..., Sender]) -> None:
    sender = senders(server.url)
    sender.log("types.a", {"np_f": np.float32(0.5), "np_i": np.int64(7), "zero_d": np.array(2.5),
                           "dec": Decimal("1.25"), "flag": True, "nan": math.nan, "inf": np.float64("inf"),
                           "vec": np.arange(3), "name": "x"}, step=np.int64(3))
    sender.log("types.a", [{"a": 1}, {"a": 2}], step=4)
    sender.log("types.a", pd.DataFrame({"a": [3.0, 4.0], "b": [np.nan, 1.0]}))
    assert sender.flush(30)
    got = [m["data"] for m in read_all(server.url, "types.a")]
    assert got == [
        {"np_f": 0.5, "np_i": 7, "zero_d": 2.5, "dec": 1.25, "flag": 1, "nan": None, "inf": None,
         "vec": [0, 1, 2], "name": "x", "step": 3},
        {"a": 1, "step": 4}, {"a": 2, "step": 4},
        {"a": 3.0, "b": None}, {"a": 4.0, "b": 1.0},
    ]


def test_bad_messages_are_refused_alone(server: ServerProcess, senders: Callable[..., Sender],
                                        capfd: pytest.CaptureFixture[str]) -> None:
    sender = senders(server.url)
    sender.log("bad.a", {"i": 0})
    sender.log("no spaces allowed", {"i": 1})  # a bad channel: refused here, never raises
    sender.log("bad.a", {"when": object()})  # JSON can't carry it
    sender.log("bad.a", {"big": "x" * 2_000_000})  # over the server's 1 MiB limit: refused there
    sender.log("bad.a", 42)
    sender.log("bad.a", {"i": 2})
    assert sender.flush(30)
    status = sender.status()
    assert (status.sent, status.rejected) == (2, 4)
    assert [m["data"] for m in read_all(server.url, "bad.a")] == [{"i": 0}, {"i": 2}]
    assert capfd.readouterr().err.count("message not logged") == 1


def test_module_level_log_flush_and_status(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    import pulseboard.sender as sender_module

    monkeypatch.setattr(sender_module, "_default", None)
    monkeypatch.setenv("PULSEBOARD_URL", server.url)
    monkeypatch.setenv("PULSEBOARD_TOKEN", token())
    for step in range(100):
        pulseboard.log("mod.a", {"loss": 1 / (step + 1)}, step=step)
    assert pulseboard.flush(timeout=30)
    assert pulseboard.sender_status().sent == 100
    assert [m["data"]["step"] for m in read_all(server.url, "mod.a")] == list(range(100))


def test_log_handler(server: ServerProcess, senders: Callable[..., Sender]) -> None:
    sender = senders(server.url)
    logger = logging.getLogger("pulseboard.test.handler")
    logger.setLevel(logging.INFO)
    handler = pulseboard.LogHandler("logs.a", sender=sender)
    logger.addHandler(handler)
    try:
        logger.debug("not this one")
        logger.info("epoch %d done", 3, extra={"loss": np.float32(0.25), "note": "text is not charted"})
        logger.warning("slow step", extra={"seconds": 2})
    finally:
        logger.removeHandler(handler)
    assert sender.flush(30)
    got = [m["data"] for m in read_all(server.url, "logs.a")]
    assert got == [
        {"level": "INFO", "levelno": 20, "logger": "pulseboard.test.handler", "message": "epoch 3 done",
         "loss": 0.25},
        {"level": "WARNING", "levelno": 30, "logger": "pulseboard.test.handler", "message": "slow step",
         "seconds": 2},
    ]


def test_import_pulseboard_imports_no_framework() -> None:
    code = ("import sys, pulseboard, pulseboard.integrations; "
            "print(sorted(m for m in ('numpy', 'pandas', 'keras', 'jax', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _log_in_child(url: str, tok: str) -> None:
    sender = _FORK_SENDER[0]
    for i in range(100):
        sender.log("fork.a", {"who": "child", "i": i})
    sys.exit(0 if sender.flush(30) else 1)


_FORK_SENDER: list[Sender] = []


def test_a_forked_child_logs_with_keys_of_its_own(server: ServerProcess, senders: Callable[..., Sender]) -> None:
    import multiprocessing

    sender = senders(server.url)
    _FORK_SENDER[:] = [sender]
    for i in range(100):
        sender.log("fork.a", {"who": "parent", "i": i})
    assert sender.flush(30)  # the parent's thread runs and its first keys are used
    child = multiprocessing.get_context("fork").Process(target=_log_in_child, args=(server.url, token()))
    child.start()
    child.join(60)
    assert child.exitcode == 0  # its own thread delivered everything
    got = [(m["data"]["who"], m["data"]["i"]) for m in read_all(server.url, "fork.a")]
    assert got == [("parent", i) for i in range(100)] + [("child", i) for i in range(100)]


def test_without_a_server_configured_log_never_raises_and_exit_says_why() -> None:
    code = "import pulseboard\npulseboard.log('none.a', {'i': 1})\nprint(pulseboard.flush(timeout=1))\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSEBOARD_", "JUPYTERHUB_"))}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "False"  # log() never raised
    # Said once, with the reason (however far discovery got before the exit).
    assert done.stderr.count("1 logged messages not delivered") == 1 and "no pulseboard server" in done.stderr
    assert "Traceback" not in done.stderr


def test_log_with_nothing_configured_says_once_what_to_set() -> None:
    # The process keeps logging for a while (as a training loop does) and is told once, at
    # once, on stderr: not only at exit, and not once per message.
    code = ("import sys, pulseboard\n"
            "for i in range(50):\n"
            "    pulseboard.log('none.a', {'i': i})\n"
            "while pulseboard.sender_status().last_error is None:\n"
            "    pulseboard.flush(timeout=0.05)\n"
            "print('running', flush=True)\n"
            "for i in range(50):\n"
            "    pulseboard.log('none.a', {'i': i})\n"
            "pulseboard.flush(timeout=0.5)\n"
            "print('still running', file=sys.stderr)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSEBOARD_", "JUPYTERHUB_"))}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    before_exit = done.stderr.split("still running")[0]
    assert before_exit.count("log() has nowhere to send") == 1, done.stderr
    assert "set PULSEBOARD_URL and PULSEBOARD_TOKEN" in before_exit
    assert done.stderr.count("log() has nowhere to send") == 1 and "Traceback" not in done.stderr


def test_a_wrong_base_path_loses_nothing(server: ServerProcess, senders: Callable[..., Sender]) -> None:
    sender = senders(server.url + "/not-here")  # every answer is 404: a setting to fix, not bad data
    for i in range(10):
        sender.log("path.a", {"i": i})
    wait_until(lambda: "404" in (sender.status().last_error or ""), what="a 404 answer")
    status = sender.status()
    assert (status.queued, status.rejected, status.sent) == (10, 0, 0)


def test_publish_shares_the_type_rules(server: ServerProcess) -> None:
    seq = pulseboard.publish("pub.a", {"x": np.float32(1.5), "ok": np.bool_(True), "d": Decimal("2")},
                             step=np.int64(2), url=server.url, token=token())
    assert seq == 1
    assert [m["data"] for m in read_all(server.url, "pub.a")] == [{"x": 1.5, "ok": 1, "d": 2.0, "step": 2}]
    with pytest.raises(pulseboard.PublishError, match="JSON can't carry"):
        pulseboard.publish("pub.a", {"when": object()}, url=server.url, token=token())


def test_text_utf8_cannot_carry_is_refused_once_without_the_data(
        server: ServerProcess, senders: Callable[..., Sender], capfd: pytest.CaptureFixture[str]) -> None:
    """Before: a file name from `os.fsdecode` of non-UTF-8 bytes made the sender retry its batch
    forever, printing the queued data to stderr each time (and the store's writer died)."""
    name = os.fsdecode(b"run-\xff-secret-name.ckpt")
    sender = senders(server.url)
    sender.log("train.files", {"i": 0})
    sender.log("train.files", {"ckpt": name})
    sender.log("train.files", {name: 1})
    sender.log("train.files", {"i": 1})
    assert sender.flush(30)
    status = sender.status()
    assert (status.sent, status.rejected, status.queued) == (2, 2, 0)
    assert "'ckpt'" in (status.last_error or "") or "field name" in (status.last_error or "")
    err = capfd.readouterr().err
    assert err.count("message not logged") == 1 and "UTF-8" in err, err
    assert "secret-name" not in err
    assert [m["data"] for m in read_all(server.url, "train.files")] == [{"i": 0}, {"i": 1}]
    with pytest.raises(pulseboard.PublishError, match=r"'data' field 'ckpt'.*UTF-8"):
        pulseboard.publish("train.files", {"ckpt": name}, url=server.url, token=token())
