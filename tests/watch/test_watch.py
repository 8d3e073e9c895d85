"""`pulseboard watch` / `pulseboard.watch()` against a real server on the default store, with
event files written by tensorboardX's SummaryWriter while they are watched."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tbsupport import Expected, as_steps, channel, event_file, merged, steps_on_disk, write_steps, writer
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto.event_pb2 import Event

from harness.channels import top_seq
from harness.servers import PULSEBOARD, ServerProcess, wait_until
from harness.tokens import token
from pulseboard.tbwatch import Watcher


@pytest.fixture
def watcher(server: ServerProcess, tmp_path: Path) -> Iterator[Watcher]:
    (tmp_path / "logs").mkdir()
    w = Watcher(tmp_path / "logs", url=server.url, token=token(), state=tmp_path / "state.json",
                poll=0.05, rescan=0.1)
    yield w
    w.stop()


def wall_times(path: Path) -> dict[tuple[int, str], float]:
    """(step, tag) -> the event's wall time, read back with TensorBoard's own loader."""
    out = {}
    for raw in RawEventFileLoader(str(path)).Load():
        e = Event.FromString(raw)
        for v in e.summary.value:
            out[(e.step, v.tag)] = e.wall_time
    return out


def settle(w: Watcher, url: str, ch: str, expected: Expected) -> list[dict[str, object]]:
    """Wait until the channel holds exactly `expected` (every tag of every step, once)."""
    msgs: list[dict[str, object]] = wait_until(lambda: (m := channel(url, ch)) and merged(m) == expected and m,
                                               timeout=30, what=f"{ch} to hold {len(expected)} steps")
    return msgs


def test_live_runs_files_and_appends_arrive_value_by_value(server: ServerProcess, watcher: Watcher,
                                                           tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    a = writer(logs / "a")
    want_a = write_steps(a, range(10), extras=True)
    watcher.start()
    settle(watcher, server.url, "tb.a", want_a)

    write_steps(a, range(10, 20), extras=True, expected=want_a)  # the same file, appended while watched
    settle(watcher, server.url, "tb.a", want_a)

    b = writer(logs / "grid" / "lr.0.1")  # a run added while watched, nested, with a dot in its name
    want_b = write_steps(b, range(5), tags=2)
    settle(watcher, server.url, "tb.grid.lr:2e0:2e1", want_b)

    a.close()  # the run's writer restarts: a second event file in the same folder
    a2 = writer(logs / "a", suffix=".2")
    write_steps(a2, range(20, 25), expected=want_a)
    msgs = settle(watcher, server.url, "tb.a", want_a)
    a2.close()
    b.close()

    # ts is the wall time of the step's first event, as the writer stamped it
    walls: dict[tuple[int, str], float] = {}
    for f in sorted((logs / "a").glob("*tfevents*")):
        walls.update(wall_times(f))
    for m in msgs:
        data: dict[str, float] = m["data"]  # type: ignore[assignment]
        assert m["ts"] == min(walls[(int(data["step"]), tag)] for tag in data if tag != "step")
    s = watcher.status()
    assert s.skipped == {"histograms": 20, "images": 20, "text": 20}
    assert (s.runs, s.files, s.damaged) == (2, 3, 0)


def test_a_truncated_last_record_is_reported_once_and_the_rest_read_when_it_comes(
        server: ServerProcess, watcher: Watcher, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = writer(tmp_path / "logs" / "r")
    want = write_steps(w, range(6))
    w.close()
    path = event_file(tmp_path / "logs" / "r")
    whole = path.read_bytes()
    cut = len(whole) - 7  # the last record loses its end: a writer killed mid-write
    path.write_bytes(whole[:cut])
    watcher.stall = 0.0
    watcher.open()
    partial = {s: f for s, f in want.items() if s < 5} | {5: {"train/m0": want[5]["train/m0"],
                                                               "train/m1": want[5]["train/m1"]}}
    for _ in range(6):  # the tail step goes once the file is quiet; the report comes once
        watcher.poll_once()
        assert watcher.sender.flush(10)
    assert merged(channel(server.url, "tb.r")) == partial
    err = capsys.readouterr().err
    assert err.count("ends inside a record") == 0 and err.count("has ended inside a record") == 1, err

    with path.open("ab") as f:  # the rest of the record arrives after all
        f.write(whole[cut:])
    for _ in range(3):
        watcher.poll_once()
        assert watcher.sender.flush(10)
    assert merged(channel(server.url, "tb.r")) == want
    assert "inside a record" not in capsys.readouterr().err


def test_a_damaged_record_is_reported_once_and_the_watch_goes_on(
        server: ServerProcess, watcher: Watcher, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = writer(tmp_path / "logs" / "r")
    want = write_steps(w, range(8))
    w.close()
    path = event_file(tmp_path / "logs" / "r")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # the last record's checksum no longer matches
    path.write_bytes(bytes(data))
    watcher.open()
    for _ in range(4):
        watcher.poll_once()
        assert watcher.sender.flush(10)
    del want[7]["train/m2"]
    assert merged(channel(server.url, "tb.r")) == want
    assert capsys.readouterr().err.count("bad record checksum") == 1
    assert watcher.status().damaged == 1


def test_a_record_bigger_than_a_read_and_a_nan_value(server: ServerProcess, watcher: Watcher,
                                                     tmp_path: Path) -> None:
    """A text summary bigger than the watcher's largest read (8 MiB before, 1 MiB now) between
    scalars: read whole, counted, and the steps after it published (the watch used to stop
    there for good). A NaN value is a gap (null) in its message."""
    w = writer(tmp_path / "logs" / "r")
    want = write_steps(w, range(3))
    w.add_text("notes", "x" * (9 * 1024 * 1024), 3)
    write_steps(w, range(3, 6), expected=want)
    w.add_scalar("train/loss", float("nan"), 6)
    w.add_scalar("train/m0", 1.5, 6)
    w.close()
    watcher.start()
    want[6] = {"train/loss": None, "train/m0": 1.5}  # type: ignore[dict-item]
    settle(watcher, server.url, "tb.r", want)
    assert watcher.status().skipped == {"text": 1}


def watch_cli(server: ServerProcess, logs: Path, state: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PULSEBOARD_URL=server.url, PULSEBOARD_TOKEN=token())
    return subprocess.Popen([*PULSEBOARD, "watch", str(logs), "--state", str(state), "--poll", "0.05"],
                            env=env, stderr=subprocess.PIPE)


def test_restart_mid_file_continues_exactly(server: ServerProcess, tmp_path: Path) -> None:
    logs, state = tmp_path / "logs", tmp_path / "state.json"
    w = writer(logs / "r")
    want = write_steps(w, range(50))
    proc = watch_cli(server, logs, state)
    wait_until(lambda: top_seq(server.url, "tb.r") >= 10, timeout=30, what="the first steps")
    write_steps(w, range(50, 80), expected=want)  # written while the watcher stops
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    write_steps(w, range(80, 120), expected=want)  # and while it is away
    wait_until(lambda: steps_on_disk(event_file(logs / "r")) == 120, what="the writer to write")
    proc = watch_cli(server, logs, state)
    write_steps(w, range(120, 150), expected=want)  # and after it is back
    w.close()
    try:
        msgs = wait_until(lambda: (m := channel(server.url, "tb.r")) and merged(m) == want and m, timeout=30,
                          what="every step")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert sorted({s for s, _ in as_steps(msgs)}) == list(range(150))
    assert merged(channel(server.url, "tb.r")) == want  # still once each after the last stop


def test_kill_9_mid_file_then_restart_publishes_each_step_once(server: ServerProcess, tmp_path: Path) -> None:
    logs, state = tmp_path / "logs", tmp_path / "state.json"
    w = writer(logs / "big")
    want = write_steps(w, range(12_000), tags=2)
    w.close()
    proc = watch_cli(server, logs, state)
    wait_until(lambda: top_seq(server.url, "tb.big") > 0, timeout=60, what="the first batch")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    before = top_seq(server.url, "tb.big")
    assert 0 < before < 12_000, "killed after the whole file went: make the file bigger"
    proc = watch_cli(server, logs, state)
    try:
        wait_until(lambda: top_seq(server.url, "tb.big") >= 12_000, timeout=120, what="the whole file")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    msgs = channel(server.url, "tb.big")
    assert len(msgs) == 12_000  # one message per step: nothing twice, nothing skipped
    assert merged(msgs) == want


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    for args, what in ([str(tmp_path / "file")], "is not a directory"), ([str(tmp_path), "--prefix", "a b"], "a b"):
        r = subprocess.run([*PULSEBOARD, "watch", *args], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, PULSEBOARD_URL="http://127.0.0.1:9", PULSEBOARD_TOKEN="x"))
        assert r.returncode == 2 and what in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_two_watchers_of_one_log_dir_are_refused(server: ServerProcess, watcher: Watcher, tmp_path: Path) -> None:
    watcher.open()
    env = dict(os.environ, PULSEBOARD_URL=server.url, PULSEBOARD_TOKEN=token())
    r = subprocess.run([*PULSEBOARD, "watch", str(tmp_path / "logs"), "--state", str(tmp_path / "state.json")],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2 and "already watched" in r.stderr, r.stderr


def test_a_log_dir_that_does_not_exist_yet_is_waited_for(server: ServerProcess, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    w = Watcher(tmp_path / "later", url=server.url, token=token(), state=tmp_path / "state.json",
                poll=0.05, rescan=0.1).start()
    try:
        assert "does not exist yet" in capsys.readouterr().err
        tb = writer(tmp_path / "later" / "r")  # the training starts after the watcher
        want = write_steps(tb, range(5))
        tb.close()
        wait_until(lambda: merged(channel(server.url, "tb.r")) == want, what="the run in the new log dir")
    finally:
        w.stop()
