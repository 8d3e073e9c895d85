"""The embedded store (sqlite://) on real `pulseboard serve` processes: restarts, one server
per store, damaged files, trimming while data flows, a full disk; and reads that never
create channels (a read-only token must not make the store allocate)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.servers import PULSEBOARD, Feed, ServerProcess, wait_until
from harness.tokens import token
from harness.ws import open_ws, publish, recv_envelopes, subscribe
from pulseboard.protocol import Envelope, PulseboardError
from pulseboard_server.brokers import open_broker
from pulseboard_server.brokers.base import Broker, PublishItem
from pulseboard_server.brokers.downsample import pick

pytestmark = pytest.mark.process  # starts pulseboard serve (or the CLI) as a subprocess

AUTH = {"Authorization": f"Bearer {token()}"}


def store_server(data_dir: Path, *args: str) -> ServerProcess:
    return ServerProcess(*args, env={"PULSEBOARD_DATA_DIR": str(data_dir)})


def history(server: ServerProcess, ch: str, **params: Any) -> dict[str, Any]:
    r = httpx.get(server.url + "/history", params={"ch": ch, **params}, headers=AUTH, timeout=30)
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


def no_traceback(server: ServerProcess) -> None:
    assert "Traceback" not in server.output(), server.output()


@pytest.mark.parametrize("how", ["sigterm", "kill"])
async def test_restart_resumes_exactly(tmp_path: Path, how: str) -> None:
    first = store_server(tmp_path).start()
    acked: list[tuple[int, int]] = []  # (seq, i) the publisher was answered
    stop = threading.Event()

    def burst() -> None:
        i = 0
        with httpx.Client(headers=AUTH, timeout=30) as c:
            while not stop.is_set():
                body = [{"ch": "run", "data": {"i": i + k}} for k in range(50)]
                try:
                    r = c.post(first.url + "/publish", json=body)
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code != 200:
                    return
                acked.extend(zip(r.json()["seqs"], range(i, i + 50), strict=True))
                i += 50

    try:
        ws = await open_ws(first)
        (sub,) = await subscribe(ws, {"run": None})
        epoch = sub["epoch"]
        writer = threading.Thread(target=burst)
        writer.start()
        seen = await recv_envelopes(ws, 400)  # in the middle of the burst
        if how == "kill":
            first.kill()
        else:
            assert first.terminate() == 0
        stop.set()
        writer.join(30)
        try:  # what arrived before the end
            seen += await recv_envelopes(ws, 10**9, timeout=2)
        except Exception:
            pass
        await ws.close()
    finally:
        first.stop()
    seqs = [e["seq"] for e in seen]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    last = seqs[-1]

    second = store_server(tmp_path).start()
    try:
        publish(second, "run", 30, start=10**6)
        h = history(second, "run", since=0, limit=1000)
        assert h["epoch"] == epoch  # the numbering goes on in the same epoch
        kept = {m["seq"]: m["data"]["i"] for m in h["msgs"]}
        top = h["seq"]
        # nothing a subscriber or a publisher saw was lost or numbered again
        for e in seen:
            assert kept.get(e["seq"]) == e["data"]["i"] or e["seq"] < min(kept)
        assert all(s <= top for s, _ in acked)
        full = httpx.get(second.url + "/history", params={"ch": "run", "since": 0, "limit": 1000},
                         headers=AUTH).json()
        assert full["seq"] == top
        ws2 = await open_ws(second)
        (resub,) = await subscribe(ws2, {"run": {"since": last, "epoch": epoch}})
        assert resub["recovered"] is True and resub["epoch"] == epoch
        missed = await recv_envelopes(ws2, top - last)
        assert [m["seq"] for m in missed] == list(range(last + 1, top + 1))
        await ws2.close()
        no_traceback(second)
    finally:
        second.stop()
    acked_i = dict(acked)
    with sqlite3.connect(tmp_path / "pulseboard.db") as db:
        rows = dict(db.execute(
            "SELECT seq, json_extract(raw, '$.data.i') FROM msgs JOIN channels ON channels.id=msgs.ch "
            "WHERE channels.name='run'"))
    assert all(rows.get(s) == i for s, i in acked_i.items())  # acknowledged = durable


def test_second_server_on_one_store_is_refused(tmp_path: Path) -> None:
    first = store_server(tmp_path).start()
    try:
        second = store_server(tmp_path).start(wait=False)
        assert second.proc is not None
        code = second.proc.wait(30)
        out = second.output().strip()
        assert code != 0
        assert "in use by another pulseboard server" in out and "Traceback" not in out
        assert len(out.splitlines()) == 1, out
        assert first.healthy()
    finally:
        first.stop()


@pytest.mark.parametrize("damage", ["garbage", "directory"])
def test_damaged_store_is_refused_with_one_line(tmp_path: Path, damage: str) -> None:
    db = tmp_path / "pulseboard.db"
    if damage == "garbage":
        db.write_bytes(os.urandom(8192))
    else:
        db.mkdir()
    server = store_server(tmp_path).start(wait=False)
    assert server.proc is not None
    code = server.proc.wait(30)
    out = server.output().strip()
    assert code != 0 and "Traceback" not in out
    assert len(out.splitlines()) == 1 and str(db) in out, out
    if damage == "garbage":
        assert "damaged or not a pulseboard store" in out


def test_retention_trims_old_messages_while_new_ones_flow(tmp_path: Path) -> None:
    server = store_server(tmp_path, "--retention", "3s").start()
    try:
        old = time.time() - 3600
        body = [{"ch": "age", "data": {"i": i}, "ts": old + i} for i in range(500)]
        assert httpx.post(server.url + "/publish", json=body, headers=AUTH).status_code == 200
        n = 0

        def trimmed() -> bool:
            nonlocal n
            publish(server, "age", 20, start=1000 + n)  # new data keeps flowing
            n += 20
            return bool(history(server, "age", since=0, limit=1000)["first"] > 500)

        wait_until(trimmed, 30, 0.2, what="retention to drop the hour-old messages")
        h = history(server, "age", since=0, limit=1000)
        assert all(m["data"]["i"] >= 1000 for m in h["msgs"]) and h["seq"] == 500 + n
        no_traceback(server)
    finally:
        server.stop()


def test_byte_cap_trims_oldest_while_new_ones_flow(tmp_path: Path) -> None:
    cap = 3 << 20
    server = store_server(tmp_path, "--max-store-bytes", str(cap)).start()
    try:
        pad = "x" * 900
        sent = 0
        with httpx.Client(headers=AUTH, timeout=30) as c:
            for _ in range(40):  # ~36 MB through a 3 MB store
                body = [{"ch": f"cap.{k % 3}", "data": {"i": sent + k, "pad": pad}} for k in range(1000)]
                assert c.post(server.url + "/publish", json=body).status_code == 200
                sent += 1000
        h = history(server, "cap.0", since=0, limit=1000)
        assert h["first"] > 1 and h["seq"] == 40 * 334  # 334 of every 1000 go to cap.0
        newest = history(server, "cap.0", limit=5)["msgs"]
        assert newest[-1]["data"]["i"] >= sent - 3  # the newest stay

        def under_cap() -> bool:
            with sqlite3.connect(f"file:{tmp_path / 'pulseboard.db'}?mode=ro", uri=True) as db:
                pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute(
                    "PRAGMA freelist_count").fetchone()[0]
                return bool(pages * db.execute("PRAGMA page_size").fetchone()[0] <= cap)

        wait_until(under_cap, 30, 0.2, what="the store to be under its byte cap")
        file_size = (tmp_path / "pulseboard.db").stat().st_size
        assert file_size < 4 * cap  # freed pages are reused: the file stops growing
        no_traceback(server)
    finally:
        server.stop()


class ServerInNamespace(ServerProcess):
    """A server started behind a command prefix (a user+mount namespace that has the tmpfs)."""

    def __init__(self, prefix: list[str], *args: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prefix = prefix

    def start(self, wait: bool = True) -> ServerProcess:
        cmd = [*self.prefix, *PULSEBOARD, "serve", "--port", str(self.port), "--collect-interval", "0", *self.args]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        if wait:
            self.wait_ready()
        return self


def mount_tmpfs(path: Path, size: str) -> list[str]:
    """A size-limited tmpfs at `path` (0700: a store folder others may write is refused):
    mounted here as root, else inside a user+mount namespace
    that the server runs in (the returned command prefix)."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)
        return []
    script = f'mount -t tmpfs -o size={size},mode=0700 tmpfs {path} && exec "$@"'
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh"]


def test_full_disk_gives_503_on_publish_while_reads_go_on() -> None:
    """A real full file system (a 2 MB tmpfs), not a simulated one."""
    root = Path(tempfile.mkdtemp(prefix="pb-full-"))
    prefix = mount_tmpfs(root, "2m")
    server = ServerInNamespace(prefix, "--max-store-bytes", "0", env={"PULSEBOARD_DATA_DIR": str(root)})
    try:
        server.start()
        pad = "y" * 2000
        codes: list[int] = []
        bodies: list[dict[str, Any]] = []
        with httpx.Client(headers=AUTH, timeout=30) as c:
            for n in range(200):
                r = c.post(server.url + "/publish", json=[{"ch": "fill", "data": {"i": n, "pad": pad}}] * 50)
                codes.append(r.status_code)
                if r.status_code != 200:
                    bodies.append(r.json())
                    break
        assert codes[-1] == 503 and bodies[0]["error"] == "unavailable", codes[-5:]
        assert "full" in bodies[0]["detail"]
        h = history(server, "fill", since=0, limit=100)  # reads go on
        assert h["msgs"] and 50 * (len(codes) - 1) <= h["seq"] < 50 * len(codes)
        assert [m["seq"] for m in h["msgs"]] == list(range(1, len(h["msgs"]) + 1))
        assert httpx.get(server.url + "/healthz").status_code == 200
        # The refused batch was taken back whole (nothing of it numbered); sent again, it still
        # doesn't fit: still full, still a clean answer.
        again = httpx.post(server.url + "/publish", json=[{"ch": "fill", "data": {"i": -1, "pad": pad}}] * 50,
                           headers=AUTH)
        assert again.status_code == 503 and again.json()["error"] == "unavailable"
        assert history(server, "fill", since=0, limit=1)["seq"] == h["seq"]
        no_traceback(server)
    finally:
        server.stop()
        if os.geteuid() == 0:
            subprocess.run(["umount", str(root)], check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("broker", ["memory://", "sqlite://"])
async def test_reads_never_create_channels(tmp_path: Path, broker: str) -> None:
    """A read-only token can't fill the store: 100,000 names subscribed with a read-only token allocate nothing."""
    server = store_server(tmp_path, "--broker", broker).start()
    try:
        reader = token("reader", read=["*"], publish=[])
        ws = await open_ws(server, reader)
        for batch in range(100):
            names = {f"probe.{batch}.{i}": {"backfill": 5} for i in range(1000)}
            await ws.send(json.dumps({"op": "subscribe", "ch": names}))
            await ws.send(json.dumps({"op": "unsubscribe", "ch": list(names)}))
        await ws.send(json.dumps({"op": "ping"}))
        while True:  # everything before the pong was handled
            msg = json.loads(await ws.recv())
            if isinstance(msg, dict) and msg.get("op") == "pong":
                break
        await ws.close()
        r = httpx.get(server.url + "/poll", params={"ch": "probe.poll"}, headers={"Authorization": f"Bearer {reader}"})
        assert r.status_code == 200
        assert httpx.get(server.url + "/history", params={"ch": "probe.1.1"}, headers=AUTH).status_code == 404
        assert publish(server, "brand.new", 1) == [1]  # the limit was not used up by reads
        chans = httpx.get(server.url + "/channels", headers=AUTH).json()["channels"]
        assert [c["ch"] for c in chans] == ["brand.new"]
        no_traceback(server)
    finally:
        server.stop()


def test_history_range_over_http(tmp_path: Path) -> None:
    server = store_server(tmp_path).start()
    t0 = float(int(time.time()) - 4000)  # recent: inside the 30-day retention
    try:
        body = [{"ch": "curve", "data": {"loss": (i * 7919) % 101, "step": i}, "ts": t0 + i} for i in range(3000)]
        assert httpx.post(server.url + "/publish", json=body, headers=AUTH, timeout=30).status_code == 200
        got = history(server, "curve", **{"from": t0 + 100, "to": t0 + 2899, "points": 200})
        assert got["downsampled"] is True and 0 < len(got["msgs"]) <= 200 and got["seq"] == 3000
        assert all(t0 + 100 <= m["ts"] <= t0 + 2899 for m in got["msgs"])
        assert min(m["data"]["loss"] for m in got["msgs"]) == 0 and max(m["data"]["loss"] for m in got["msgs"]) == 100
        small = history(server, "curve", **{"from": t0, "to": t0 + 9, "points": 100})
        assert small["downsampled"] is False and [m["seq"] for m in small["msgs"]] == list(range(1, 11))
        exact = history(server, "curve", since=10, limit=5)
        assert "downsampled" not in exact and [m["seq"] for m in exact["msgs"]] == [11, 12, 13, 14, 15]
        for bad in ({"from": "x"}, {"from": "5", "to": "4"}, {"points": "3"}, {"points": "t0"},
                    {"since": "1", "points": "100"}, {"to": "nan"}):
            r = httpx.get(server.url + "/history", params={"ch": "curve", **bad}, headers=AUTH)
            assert r.status_code == 400 and r.json()["error"] == "bad_request", bad
        r = httpx.get(server.url + "/history", params={"ch": "nobody", "points": "100"}, headers=AUTH)
        assert r.status_code == 404
        no_traceback(server)
    finally:
        server.stop()


async def open_store(path: Path, **options: Any) -> tuple[Broker, Feed]:
    broker = open_broker(f"sqlite://{path}", None, retention=1e12, **options)
    feed = Feed()
    await broker.start(feed.on_message, feed.on_reset)
    return broker, feed


async def test_publish_many_answers_after_one_commit_and_survives_a_restart(tmp_path: Path) -> None:
    broker, feed = await open_store(tmp_path / "s.db")
    await broker.subscribe("b")
    try:
        envs = await broker.publish_many([("b", {"i": i}, 1.0 + i, None) for i in range(1000)])
        assert [e.seq for e in envs] == list(range(1, 1001))
        # answered only once durable: another connection to the file already sees all of them
        with sqlite3.connect(tmp_path / "s.db") as db:
            assert db.execute("SELECT count(*), max(seq) FROM msgs").fetchone() == (1000, 1000)
        await feed.wait_for(lambda: len(feed.seqs("b")) == 1000)
        assert feed.seqs("b") == list(range(1, 1001))
    finally:
        await broker.close()
    again, _ = await open_store(tmp_path / "s.db")
    try:
        more = await again.publish_many([("b", {"i": -1}, 2000.0, None)])
        assert more[0].seq == 1001 and more[0].data == {"i": -1}
        _, msgs = await again.history("b", None, 2000)
        assert [m.raw for m in msgs[:1000]] == [e.raw for e in envs]
    finally:
        await again.close()


async def test_publish_many_keys_answer_the_first_envelope(tmp_path: Path) -> None:
    broker, _ = await open_store(tmp_path / "s.db")
    try:
        first = await broker.publish("k", {"x": 0}, 1.0, key="r/0")  # type: ignore[call-arg]
        envs = await broker.publish_many([
            ("k", {"x": 0}, 1.0, "r/0"),  # a retry of a kept one
            ("k", {"x": 1}, 1.0, "r/1"),
            ("k", {"x": 1}, 1.0, "r/1"),  # repeated inside the same batch
            ("k", {"x": 2}, 1.0, None),
        ])
        assert envs[0] == first and envs[1] == envs[2] and [e.seq for e in envs] == [1, 2, 2, 3]
        retried = await broker.publish_many([("k", {"x": 1}, 1.0, "r/1"), ("k", {"x": 3}, 1.0, "r/3")])
        assert retried[0] == envs[1] and retried[1].seq == 4
    finally:
        await broker.close()


async def test_big_keyed_batch_after_a_restart_answers_the_stored_envelopes(tmp_path: Path) -> None:
    """A batch over the size encoded off the loop, its keys looked up in the store together
    (as `log()` retries one after a restart): kept keys answer their first envelope, byte for
    byte; new ones are numbered after them, each envelope the text `Envelope.make` gives."""
    broker, _ = await open_store(tmp_path / "s.db")
    try:
        kept = await broker.publish_many([("k", {"i": i, "v": i / 3}, 1.0 + i, f"run-{i}") for i in range(1000)])
        kept += await broker.publish_many([("k2", {"i": 0}, 1.0, "run-0")])  # the same key, another channel
    finally:
        await broker.close()
    again, feed = await open_store(tmp_path / "s.db")
    await again.subscribe("k")
    try:
        items: list[PublishItem] = [("k", {"i": i, "v": -1.0}, 5.0, f"run-{i}") for i in range(500, 1500)]
        items += [("k2", {"i": 9}, 5.0, "run-0"), ("k", {"i": 1499}, 6.0, "run-1499"), ("k3", {"s": "é"}, 7.0, "x")]
        envs = await again.publish_many(items)
        assert [(e.seq, e.raw) for e in envs[:500]] == [(e.seq, e.raw) for e in kept[500:1000]]
        assert [e.seq for e in envs[500:1000]] == list(range(1001, 1501))
        assert envs[1000] == kept[1000] and envs[1001] == envs[999]  # another channel's key; one repeated
        assert envs[1002].seq == 1 and envs[1002].ch == "k3"
        for env, (ch, data, ts, _key) in zip(envs[500:1000] + envs[1002:], items[500:1000] + items[1002:],
                                             strict=True):
            assert env.raw == Envelope.make(ch, env.seq, ts, data).raw
        await feed.wait_for(lambda: feed.seqs("k") == list(range(1001, 1501)))  # the new ones, once each
    finally:
        await again.close()


async def test_publish_many_refused_midway_numbers_nothing(tmp_path: Path) -> None:
    broker, feed = await open_store(tmp_path / "s.db", max_channels=2)
    await broker.subscribe("c.0")
    try:
        await broker.publish("c.0", {"x": 0}, 1.0)
        with pytest.raises(PulseboardError) as err:  # the third channel is over the limit
            await broker.publish_many([("c.0", {"x": 1}, 1.0, "a"), ("c.1", {"x": 1}, 1.0, None),
                                       ("c.2", {"x": 1}, 1.0, None)])
        assert err.value.code == "too_large"
        with pytest.raises(ValueError):  # data the envelope can't hold (callers check it first)
            await broker.publish_many([("c.0", {"x": 1}, 1.0, None), ("c.1", {"x": float("nan")}, 1.0, None)])
        assert [i.ch for i in await broker.channels()] == ["c.0"]
        envs = await broker.publish_many([("c.0", {"x": 2}, 1.0, "a"), ("c.1", {"x": 2}, 1.0, None)])
        assert [(e.ch, e.seq, e.data["x"]) for e in envs] == [("c.0", 2, 2), ("c.1", 1, 2)]  # no gap, key unused
        await feed.wait_for(lambda: feed.seqs("c.0") == [1, 2])
    finally:
        await broker.close()


async def test_history_range_reads_summaries_of_the_first_store_format(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    broker, _ = await open_store(path)
    try:
        await broker.publish_many([("old", {"v": (i * 37) % 101, "w": i % 13}, 1.0 + i, None) for i in range(640)])
        now = await broker.history_range("old", None, None, 40)
    finally:
        await broker.close()
    with sqlite3.connect(path) as db:  # rewrite every summary the way the first builds stored it
        rows = db.execute("SELECT ch, k, stats FROM blocks").fetchall()
        assert len(rows) == 10
        db.executemany("UPDATE blocks SET stats=? WHERE ch=? AND k=?", [
            (json.dumps({"lo": {e[0]: e[1:3] for e in json.loads(st)}, "hi": {e[0]: e[3:5] for e in json.loads(st)}}),
             ch, k) for ch, k, st in rows])
    again, _ = await open_store(path)
    try:
        before = await again.history_range("old", None, None, 40)
        assert before[2] and [e.raw for e in before[1]] == [e.raw for e in now[1]]
    finally:
        await again.close()


@pytest.mark.parametrize("seed", [3, 4])
async def test_history_range_over_two_summary_levels_picks_like_every_row(tmp_path: Path, seed: int) -> None:
    """Long buckets (thousands of messages) use level-2 summaries: the picks are exactly those
    of `downsample.pick` over every message, for the whole range and for parts of it."""
    import random

    rnd = random.Random(seed)
    broker, _ = await open_store(tmp_path / "s.db")
    try:
        t, items = 1000.0, list[PublishItem]()
        for i in range(20_000):
            t += rnd.choice([0.001, 0.5, 1.0])
            data: dict[str, Any] = {"loss": round(rnd.gauss(0, 1), 1), "step": i % 97}  # many ties
            if i % 3 == 0:
                data["lr"] = rnd.choice([0.1, 0.01])
            items.append(("two", data, t, None))
        envs = await broker.publish_many(items)
        for t0, t1, points in [(None, None, 40), (envs[1500].ts, envs[17_000].ts, 64), (None, envs[9000].ts, 24)]:
            _, got, down = await broker.history_range("two", t0, t1, points)
            want, want_down = pick(envs, t0, t1, points)
            assert down and want_down
            assert [e.raw for e in got] == [e.raw for e in want]
    finally:
        await broker.close()
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert db.execute("SELECT count(*) FROM blocks2").fetchone()[0] == 20_000 // 1024


@pytest.mark.parametrize("seed", [5, 6])
async def test_history_range_answers_cut_blocks_from_columns_like_every_row(tmp_path: Path, seed: int) -> None:
    """Blocks cut by a bucket edge or by the range's edge are answered from their columns: the
    picks are exactly `downsample.pick`'s over every message, with time going backwards inside
    blocks, fields some messages lack, ints, booleans, and blocks written whole in one batch or
    across batches (then the writer reads the block back)."""
    import random

    rnd = random.Random(seed)
    broker, _ = await open_store(tmp_path / "s.db")
    try:
        t, items = 1000.0, list[PublishItem]()
        for i in range(9000):
            t += rnd.choice([0.001, 0.5, 1.0, 3.0])
            data: dict[str, Any] = {"loss": round(rnd.gauss(0, 1), 1), "step": i % 97, "ok": i % 2 == 0}
            if i % 3 == 0:
                data["lr"] = rnd.choice([0.1, 0.01])
            if i % 50 == 7:
                data["x"] = rnd.randint(-5, 5)
            items.append(("cut", data, t - (rnd.random() * 2 if i % 11 == 0 else 0.0), None))
        envs = []
        at = 0
        while at < len(items):  # batches of uneven size: some blocks span two batches
            n = rnd.choice([1, 37, 64, 500, 1500])
            envs += await broker.publish_many(items[at : at + n])
            at += n
        cases = [(None, None, 40), (None, None, 2000), (envs[1500].ts, envs[7000].ts, 64),
                 (None, envs[4000].ts, 24), (envs[123].ts + 0.0001, None, 300)]
        for t0, t1, points in cases:
            _, got, down = await broker.history_range("cut", t0, t1, points)
            want, want_down = pick(envs, t0, t1, points)
            assert down == want_down
            assert [e.raw for e in got] == [e.raw for e in want]
            assert got == want  # the envelopes themselves (their data decoded on demand) are equal
    finally:
        await broker.close()
    with sqlite3.connect(tmp_path / "s.db") as db:  # every finished block has its columns
        assert db.execute("SELECT count(*) FROM cols").fetchone()[0] == 9000 // 64


async def test_store_without_columns_opens_and_reads_as_before(tmp_path: Path) -> None:
    """A store written before per-block columns existed (no `cols` table) opens; its blocks are
    read from their rows, blocks finished after the upgrade get columns, and the picks are
    `downsample.pick`'s either way. An int a float64 can't hold exactly keeps its block on rows."""
    path = tmp_path / "s.db"
    items: list[PublishItem] = [("old", {"v": (i * 37) % 101, "w": i % 13}, 1.0 + i * 0.5, None) for i in range(3000)]
    broker, _ = await open_store(path)
    try:
        envs = await broker.publish_many(items)
    finally:
        await broker.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE cols")
    again, _ = await open_store(path)
    try:
        for t0, t1, points in [(None, None, 40), (envs[100].ts, envs[2900].ts, 100)]:
            _, got, _ = await again.history_range("old", t0, t1, points)
            assert [e.raw for e in got] == [e.raw for e in pick(envs, t0, t1, points)[0]]
        more: list[PublishItem] = [("old", {"v": (1 << 60) + i if i == 5 else i % 17, "w": 1}, 1501.0 + i, None)
                                   for i in range(1000)]
        envs += await again.publish_many(more)
        for t0, t1, points in [(None, None, 40), (envs[2500].ts, None, 60)]:
            _, got, _ = await again.history_range("old", t0, t1, points)
            assert [e.raw for e in got] == [e.raw for e in pick(envs, t0, t1, points)[0]]
    finally:
        await again.close()
    with sqlite3.connect(path) as db:  # the new blocks have columns, but not the one with 2**60 + 5
        ks = {k for (k,) in db.execute("SELECT k FROM cols")}
        assert ks == set(range(3000 // 64 + 1, 4000 // 64)) - {3005 // 64}


async def test_resume_frames_stored_rows_and_reads_equal_envelopes(tmp_path: Path) -> None:
    """A resume after a restart gives the published envelopes, equal in every field (the
    stored ones decode `data` only when read), in order and numbered without a gap."""
    from pulseboard.protocol import Since

    path = tmp_path / "s.db"
    broker, _ = await open_store(path)
    try:
        envs = await broker.publish_many([("r", {"i": i, "s": "é\u2028"}, 5.0 + i, None) for i in range(3000)])
        (info,) = await broker.channels()
    finally:
        await broker.close()
    again, _ = await open_store(path)
    try:
        rep = await again.replay("r", Since(1000, info.epoch))
    finally:
        await again.close()
    assert rep.recovered and [e.raw for e in rep.msgs] == [e.raw for e in envs[1000:]]
    assert list(rep.msgs) == envs[1000:] and [e.data for e in rep.msgs] == [e.data for e in envs[1000:]]


async def test_history_range_after_trimming_picks_like_the_kept_rows(tmp_path: Path) -> None:
    """With `--history N` the head block is cut by the trim: it is read from its rows, the
    blocks after it from summaries and columns, and trimmed blocks' columns go with them."""
    broker = open_broker(f"sqlite://{tmp_path / 's.db'}", 1000, retention=1e12)
    await broker.start(Feed().on_message, Feed().on_reset)
    try:
        envs = []
        for n in range(6):
            envs += await broker.publish_many(
                [("t", {"v": (i * 31) % 97, "n": n}, 10.0 + i * 0.25, None) for i in range(n * 500, n * 500 + 500)]
            )
        for t0, t1, points in [(None, None, 40), (None, envs[-300].ts, 24), (envs[2200].ts, None, 16)]:
            info, got, _ = await broker.history_range("t", t0, t1, points)
            kept = envs[info.first - 1 :]
            assert info.first > 1 and [e.raw for e in got] == [e.raw for e in pick(kept, t0, t1, points)[0]]
    finally:
        await broker.close()
    with sqlite3.connect(tmp_path / "s.db") as db:
        first = db.execute("SELECT min(seq) FROM msgs").fetchone()[0]
        assert db.execute("SELECT min(k) FROM cols").fetchone()[0] == (first - 1) // 64
