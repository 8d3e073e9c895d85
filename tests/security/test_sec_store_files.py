"""The embedded store on a machine with other local users: its folder and files are the
server's user's alone, and a planted folder, symlink or damaged row can't be used against it.
(Issue: one string must not stop the server, findings "the store is readable by every local
user" and "a pre-created or symlinked data dir".)"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.servers import ServerProcess
from harness.tokens import auth
from harness.ws import open_ws, publish, recv_envelopes, subscribe

NOBODY = 65534  # the second local user: `nobody`


def as_nobody(*cmd: str) -> subprocess.CompletedProcess[str]:
    def drop() -> None:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    return subprocess.run(cmd, preexec_fn=drop, capture_output=True, text=True, timeout=30)


@pytest.fixture
def open_parent() -> Iterator[Path]:
    """A folder every local user may enter (like /srv/jupyterhub), for the store to live in."""
    parent = Path(tempfile.mkdtemp(prefix="pb-shared-"))
    parent.chmod(0o755)
    yield parent
    shutil.rmtree(parent, ignore_errors=True)


def store_server(data_dir: Path) -> ServerProcess:
    return ServerProcess(env={"PULSEBOARD_DATA_DIR": str(data_dir)})


def refused(data_dir: Path) -> str:
    """Start a server on `data_dir`; it must exit non-zero with one line; that line."""
    srv = store_server(data_dir).start(wait=False)
    assert srv.proc is not None
    code = srv.proc.wait(30)
    out = srv.output().strip()
    assert code != 0, out
    assert "Traceback" not in out and len(out.splitlines()) == 1, out
    return out


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_store_files_are_private_to_their_user(open_parent: Path) -> None:
    data = open_parent / "pulseboard"  # missing: the server creates it
    srv = store_server(data).start()
    try:
        publish(srv, "train.loss", 5)
        files = [data / f"pulseboard.db{s}" for s in ("", "-wal", "-shm", ".lock")]
        assert all(f.exists() for f in files)
        assert mode(data) == 0o700
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        for f in files:  # what another local account sees
            probe = as_nobody("cat", str(f))
            assert probe.returncode != 0 and "Permission denied" in probe.stderr, (f, probe)
            data.chmod(0o755)  # even with the folder opened up, the files themselves stay closed
            probe = as_nobody("cat", str(f))
            data.chmod(0o700)
            assert probe.returncode != 0 and "Permission denied" in probe.stderr, (f, probe)
        assert as_nobody("ls", str(data)).returncode != 0
    finally:
        srv.stop()


def test_files_an_earlier_build_left_readable_are_closed(open_parent: Path) -> None:
    data = open_parent / "old"
    data.mkdir(mode=0o755)
    with sqlite3.connect(data / "pulseboard.db") as db:
        db.execute("CREATE TABLE t(x)")
    (data / "pulseboard.db").chmod(0o644)
    srv = store_server(data).start()
    srv.stop()
    assert mode(data / "pulseboard.db") == 0o600


@pytest.mark.parametrize(("how", "says"), [
    ("world-writable", "can be written by other users (mode 0777)"),
    ("group-writable", "can be written by other users (mode 0770)"),
    ("owned by nobody", "belongs to nobody (uid 65534)"),
])
def test_a_data_dir_others_control_is_refused(open_parent: Path, how: str, says: str) -> None:
    data = open_parent / "store"
    data.mkdir()
    if how == "world-writable":
        data.chmod(0o777)
    elif how == "group-writable":
        data.chmod(0o770)
    else:
        os.chown(data, NOBODY, NOBODY)
    line = refused(data)
    assert says in line and str(data) in line
    assert not (data / "pulseboard.db").exists()


def test_a_foreign_world_writable_database_is_refused(open_parent: Path) -> None:
    data = open_parent / "store"
    data.mkdir(mode=0o700)
    db = data / "pulseboard.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE planted(x)")
    os.chown(db, NOBODY, NOBODY)
    db.chmod(0o666)
    assert "belongs to nobody" in refused(data)
    os.chown(db, 0, 0)
    assert "can be written by other users (mode 0666)" in refused(data)


def test_symlinked_lock_and_database_are_refused(open_parent: Path, tmp_path: Path) -> None:
    victim = tmp_path / "precious.txt"
    victim.write_text("do not truncate me\n")
    data = open_parent / "store"
    data.mkdir(mode=0o700)
    (data / "pulseboard.db.lock").symlink_to(victim)
    assert "is a symbolic link" in refused(data)
    assert victim.read_text() == "do not truncate me\n"

    # a symlinked database: two servers, two locks, one file
    first_dir = open_parent / "first"
    first = store_server(first_dir).start()
    try:
        publish(first, "run", 3)
        second_dir = open_parent / "second"
        second_dir.mkdir(mode=0o700)
        (second_dir / "pulseboard.db").symlink_to(first_dir / "pulseboard.db")
        assert "is a symbolic link" in refused(second_dir)
        # a symlinked folder is resolved: it is the same store, so the lock holds
        (open_parent / "alias").symlink_to(first_dir)
        assert "in use by another pulseboard server" in refused(open_parent / "alias")
        assert first.healthy()
    finally:
        first.stop()


async def test_a_damaged_row_is_a_gap_not_an_error(open_parent: Path) -> None:
    data = open_parent / "store"
    srv = store_server(data).start()
    publish(srv, "run", 5)
    ws = await open_ws(srv)
    (sub,) = await subscribe(ws, {"run": {"backfill": 10}})
    epoch = sub["epoch"]
    await ws.close()
    srv.stop()
    with sqlite3.connect(data / "pulseboard.db") as db:
        db.execute("UPDATE msgs SET raw='{\"ch\": \"run\", not json' WHERE seq=3")
        db.execute("UPDATE msgs SET raw='[1, 2]' WHERE seq=4")  # JSON, but not an envelope
    srv = store_server(data).start()
    try:
        r = httpx.get(srv.url + "/history", params={"ch": "run"}, headers=auth(), timeout=10)
        assert r.status_code == 200 and [m["seq"] for m in r.json()["msgs"]] == [1, 2, 5]
        r = httpx.get(srv.url + "/history", params={"ch": "run", "since": 1}, headers=auth(), timeout=10)
        assert r.status_code == 200 and [m["seq"] for m in r.json()["msgs"]] == [2, 5]
        r = httpx.get(srv.url + "/history", params={"ch": "run", "from": 0, "points": 100}, headers=auth(),
                      timeout=10)
        assert r.status_code == 200, r.text
        ws = await open_ws(srv)
        (sub,) = await subscribe(ws, {"run": {"backfill": 10}})
        assert [m["seq"] for m in await recv_envelopes(ws, 3)] == [1, 2, 5]
        await ws.close()
        ws = await open_ws(srv)
        (sub,) = await subscribe(ws, {"run": {"since": 2, "epoch": epoch}})
        assert sub["recovered"] is False  # seqs 3 and 4 can't be given: the client knows
        publish(srv, "run", 1)  # the connection (and the channel) goes on
        assert [m["seq"] for m in await recv_envelopes(ws, 2)] == [5, 6]
        await ws.close()
        publish(srv, "run", 70)  # completes the first block: its summary skips the damaged rows
        r = httpx.get(srv.url + "/history", params={"ch": "run", "from": 0, "points": 10}, headers=auth(),
                      timeout=10)
        assert r.status_code == 200 and r.json()["seq"] == 76, r.text
        assert "Traceback" not in srv.output()
    finally:
        srv.stop()
