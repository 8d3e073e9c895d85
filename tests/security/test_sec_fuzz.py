"""Bad input in bulk (hypothesis): client ops, query strings, bodies, cursors, tickets,
Last-Event-ID, invalid UTF-8, binary, oversize, deep nesting, subscribe/unsubscribe floods.

A canary client stays subscribed throughout: after every test it must receive a fresh
message, and at the end it holds exactly seq 1..N. The server log must hold no traceback
and no token or ticket. Short by default (CI); `PULSEBOARD_LONG=1` runs many more examples.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sec_support import Canary, scan_log
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from harness.fuzz import FUZZ_TIMEOUT, fuzz_settings
from harness.servers import ServerProcess
from harness.tokens import SECRET, token

pytestmark = FUZZ_TIMEOUT
FUZZ = fuzz_settings(25, 600)
USED: list[str] = []


def fuzzer_token() -> str:
    tok = token(sub="fuzzer", read=["*"], publish=["fz.*"])
    USED.append(tok)
    return tok


@pytest.fixture(scope="module")
def srv(module_servers: Callable[..., ServerProcess]) -> Iterator[ServerProcess]:
    server = module_servers()
    yield server
    scan_log(server, USED)


@pytest.fixture(scope="module")
def canary(srv: ServerProcess) -> Iterator[Canary]:
    bird = Canary(srv, USED)
    yield bird
    bird.check()
    bird.ws.close()


@pytest.fixture(autouse=True)
def canary_after_each(canary: Canary) -> Iterator[None]:
    yield
    canary.check()


# --- strategies -----------------------------------------------------------------------

channel = st.one_of(st.from_regex(r"\A[A-Za-z0-9_.:/\-]{1,20}\Z"), st.text(max_size=30),
                    st.sampled_from(["canary", "fz.a", "*", "", "a" * 201]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
json_values = st.recursive(scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)), max_leaves=20)
start = st.one_of(st.none(), st.fixed_dictionaries({}, optional={
    "since": st.one_of(st.integers(), json_values), "epoch": st.one_of(st.text(max_size=12), json_values),
    "backfill": st.one_of(st.integers(), json_values)}), json_values)
ops = st.fixed_dictionaries(
    {"op": st.one_of(st.sampled_from(["subscribe", "unsubscribe", "publish", "refresh", "ping"]), json_values)},
    optional={"ch": st.one_of(st.dictionaries(channel, start, max_size=4), st.lists(channel, max_size=4),
                              channel, json_values),
              "data": json_values, "id": json_values, "ts": json_values,
              "token": st.one_of(st.text(max_size=40), st.just("eyJhbGciOiJub25lIn0.e30."))})


def deep(n: int) -> str:
    return "[" * n + "]" * n


frames = st.one_of(
    ops.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=200),
    st.binary(max_size=200),  # a binary frame
    st.integers(100, 20_000).map(deep),
    st.integers(1, 3).map(lambda k: '{"op": "ping", "pad": "' + "x" * (k << 20) + '"}'),  # oversize
)


class Session:
    """The fuzzer's WebSocket, reopened whenever the server closed it (4400 after too many errors)."""

    def __init__(self, srv: ServerProcess) -> None:
        self.srv = srv
        self.ws: ClientConnection | None = None

    def get(self) -> ClientConnection:
        if self.ws is None:
            self.ws = connect(self.srv.ws_url, additional_headers={"Authorization": f"Bearer {fuzzer_token()}"},
                              subprotocols=["pulseboard.v1"], max_size=None, compression=None,  # type: ignore[list-item,call-overload]
                              legacy=True, ping_interval=None)
        return self.ws

    def roundtrip(self, frame: str | bytes, text: bool | None = None) -> None:
        """Send `frame`, then a ping: the server answers (pong) or closes with a close frame."""
        ws = self.get()
        try:
            ws.send(frame, text=text)
            ws.send(json.dumps({"op": "ping"}))
            while True:
                msg = json.loads(ws.recv(timeout=30))
                if isinstance(msg, dict) and msg.get("op") == "pong":
                    return
        except ConnectionClosed as e:
            assert e.rcvd is not None, "the server dropped the connection without a close frame"
            assert e.rcvd.code in (1007, 1009, 4400, 4429, 4003), e.rcvd
            self.ws = None


@pytest.fixture(scope="module")
def session(srv: ServerProcess) -> Iterator[Session]:
    s = Session(srv)
    yield s
    if s.ws is not None:
        s.ws.close()


# --- the WebSocket ----------------------------------------------------------------------


@FUZZ
@given(frame=frames)
def test_fuzz_websocket_frames(session: Session, frame: str | bytes) -> None:
    session.roundtrip(frame)


@FUZZ
@given(raw=st.binary(min_size=1, max_size=100).filter(lambda b: not _utf8(b)))
def test_fuzz_invalid_utf8_text_frames(session: Session, raw: bytes) -> None:
    """Closed with 1007 (bytes sent after such a frame are read and dropped, never answered
    with a reset: test_sec_limits.py::test_a_frame_that_ends_the_connection_gets_its_close_frame)."""
    ws = session.get()
    session.ws = None
    ws.send(raw, text=True)
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007, closed.value


def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@FUZZ
@given(names=st.lists(st.from_regex(r"\Afz\.[a-z0-9]{1,6}\Z"), min_size=1, max_size=50))
def test_fuzz_subscribe_unsubscribe_flood(session: Session, names: list[str]) -> None:
    ws = session.get()
    try:
        for _ in range(20):
            ws.send(json.dumps({"op": "subscribe", "ch": {n: {"backfill": 5} for n in names}}))
            ws.send(json.dumps({"op": "unsubscribe", "ch": names}))
    except ConnectionClosed:
        session.ws = None
    session.roundtrip(json.dumps({"op": "ping"}))


# --- HTTP -------------------------------------------------------------------------------

HEADER_BYTES = bytes(b for b in range(0x21, 0x100) if b != 0x7F)  # what a header value may hold
PARAMS = ["ch", "cursor", "backfill", "since", "limit", "from", "to", "points", "timeout",
          "last_event_id", "ticket", "token", "x"]
raw_values = st.one_of(st.text(max_size=40).map(lambda t: quote(t, safe="")),
                       st.binary(max_size=20).map(lambda b: "".join(f"%{c:02X}" for c in b)),  # invalid UTF-8
                       st.sampled_from(["-1", "0", "1e309", "nan", "99999999999999999999999", "%", "%zz", ""]))
queries = st.lists(st.tuples(st.sampled_from(PARAMS), raw_values), max_size=6).map(
    lambda kv: "&".join(f"{k}={v}" for k, v in kv))


def refusal_is_clean(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code >= 400:
        body = r.json()
        assert set(body) >= {"error", "detail"}, body


def get(srv: ServerProcess, path: str, query: str, headers: dict[str, Any] | None = None) -> httpx.Response:
    h = {"Authorization": f"Bearer {fuzzer_token()}", **(headers or {})}
    url = f"{srv.url}{path}?{query}&timeout=0" if path == "/poll" else f"{srv.url}{path}?{query}"
    with httpx.Client(timeout=30) as client, client.stream("GET", url, headers=h) as r:
        if r.status_code != 200 or path != "/sse":
            r.read()
        return r


@FUZZ
@given(path=st.sampled_from(["/sse", "/poll", "/history", "/channels"]), query=queries,
       last_event_id=st.one_of(st.none(), st.lists(st.sampled_from(list(HEADER_BYTES)), max_size=60).map(bytes)))
def test_fuzz_query_strings_and_last_event_id(srv: ServerProcess, path: str, query: str,
                                              last_event_id: bytes | None) -> None:
    headers = {"Last-Event-ID": last_event_id.strip()} if last_event_id is not None else {}
    refusal_is_clean(get(srv, path, query, headers))


cursor_json = st.one_of(
    st.dictionaries(channel, st.one_of(st.tuples(st.text(max_size=10), st.integers()).map(list), json_values),
                    max_size=4),
    json_values, st.integers(10, 3000).map(lambda n: json.loads(deep(min(n, 500)))))
cursors = st.one_of(cursor_json.map(lambda o: base64.urlsafe_b64encode(json.dumps(o).encode()).decode()),
                    st.text(max_size=60), st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode()))


@FUZZ
@given(path=st.sampled_from(["/sse", "/poll"]), cursor=cursors, as_header=st.booleans())
def test_fuzz_cursors(srv: ServerProcess, path: str, cursor: str, as_header: bool) -> None:
    if as_header:
        value = bytes(b for b in cursor.encode("utf-8") if b in HEADER_BYTES)  # what a header can carry
        r = get(srv, path, "ch=fz.a", {"Last-Event-ID": value})
    else:
        r = get(srv, path, "cursor=" + quote(cursor, safe="") + ("&last_event_id=" + quote(cursor, safe="")))
    refusal_is_clean(r)


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    ops.map(lambda o: json.dumps(o).encode()),
    st.lists(st.fixed_dictionaries({"ch": channel, "data": json_values}, optional={"ts": json_values,
                                                                                   "key": json_values}),
             max_size=5).map(lambda v: json.dumps(v).encode()),
    st.integers(50, 200_000).map(lambda n: deep(n).encode()),
    st.just(b'{"ch": "fz.a", "data": {"pad": "' + b"x" * (2 << 20) + b'"}}'),  # over the size limit
)


@FUZZ
@given(path=st.sampled_from(["/publish", "/ticket", "/view-token"]), body=bodies,
       content_type=st.sampled_from(["application/json", "text/plain", "application/octet-stream"]))
def test_fuzz_bodies(srv: ServerProcess, path: str, body: bytes, content_type: str) -> None:
    r = httpx.post(srv.url + path, content=body, timeout=30,
                   headers={"Authorization": f"Bearer {fuzzer_token()}", "Content-Type": content_type})
    refusal_is_clean(r)


def mutations() -> st.SearchStrategy[Callable[[str], str]]:
    def flip(i: int, c: str) -> Callable[[str], str]:
        return lambda t: t[: i % len(t)] + c + t[i % len(t) + 1:]

    return st.one_of(
        st.builds(flip, st.integers(0, 400), st.sampled_from(list("AZaz09-_.="))),
        st.integers(1, 300).map(lambda n: (lambda t: t[:-n])),
        st.just(lambda t: ".".join(reversed(t.split(".")))),
        st.text(max_size=20).map(lambda s: (lambda t: t + s)),
    )


@FUZZ
@given(mutate=mutations(), path=st.sampled_from(["/sse", "/poll", "/history", "/channels"]))
def test_fuzz_tickets(srv: ServerProcess, mutate: Callable[[str], str], path: str) -> None:
    tok = fuzzer_token()
    ticket = httpx.post(srv.url + "/ticket", headers={"Authorization": f"Bearer {tok}"}).json()["ticket"]
    USED.append(ticket)
    forged = mutate(ticket)
    query = "ch=fz.a&ticket=" + quote(forged, safe="")
    with httpx.Client(timeout=30) as client, client.stream(
            "GET", f"{srv.url}{path}?{query}" + ("&timeout=0" if path == "/poll" else "")) as r:
        if r.status_code != 200 or path != "/sse":
            r.read()
    refusal_is_clean(r)
    if r.status_code == 200:  # only a mutation that left the signed bytes as they were
        assert jwt.decode(forged, SECRET, ["HS256"])["jti"] == jwt.decode(ticket, SECRET, ["HS256"])["jti"]
