"""Fuzzing of content, not only structure: every text field of every endpoint and op (channel,
data keys and values, idempotency key, token, cursor, query values, headers), drawn from the
whole of Unicode, lone surrogates, non-characters and very long strings included, on every
broker (sqlite://, memory://, redis://) and every transport (POST publish, the WebSocket ops,
SSE, long-poll, history, channels, ticket, view-token).

After every example a second publisher (the canary's) must succeed and the canary, subscribed
all along, must receive its message; the event-loop watchdog every test server runs fails a
test whose input stalled the loop; at the end the server log holds no traceback, no ERROR
line and no token. Short by default (CI); PULSEBOARD_LONG=1 runs many more examples.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sec_support import Canary, scan_log
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from harness.fuzz import FUZZ_TIMEOUT, fuzz_settings
from harness.servers import RedisProcess, ServerProcess
from harness.tokens import token

pytestmark = FUZZ_TIMEOUT
FUZZ = fuzz_settings(20, 500)
USED: list[str] = []

# --- text from all of Unicode ------------------------------------------------------------------

ODD = ["\udc00", "\ud800", "a\udfffb", "\ud83d", "\ud83d\ude00", "\ufffe", "\uffff", "\U0010ffff", "\x00",
       "\u202e", "\ufeff", "\u0085", "\u2028", "", " ", "%", "%zz", "%ED%B0%80", "<!--<script>", "=1+1",
       "eyJhbGciOiJIUzI1NiJ9.e30.x", "../../etc/passwd", "\\", '"', "{}", "[]", "*", "a" * 201]
any_char = st.characters(exclude_categories=())  # surrogates (Cs), non-characters, controls: all
short_text = st.one_of(
    st.text(any_char, max_size=40),
    st.sampled_from(ODD),
    st.tuples(st.sampled_from(ODD), st.text(any_char, max_size=10)).map("".join),
)
text = st.one_of(
    short_text,
    st.tuples(st.sampled_from(["x", "\udc00", "é", "\U0001f600"]), st.integers(1_000, 300_000)).map(
        lambda t: t[0] * t[1]),  # very long (some over the 1 MiB limit once escaped)
)
channels = st.one_of(text, st.sampled_from(["fz.a", "fz.b", "canary"]),
                     st.text(any_char, max_size=8).map(lambda t: "fz." + t))
values = st.recursive(st.one_of(text, st.integers(), st.floats(), st.booleans(), st.none()),
                      lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(text, kids, max_size=3)),
                      max_leaves=8)
data = st.dictionaries(text, values, max_size=4)


def fuzzer_token(sub: str = "fuzzer") -> str:
    tok = token(sub=sub, read=["*"], publish=["fz.*"])
    USED.append(tok)
    return tok


def header_bytes(value: str) -> bytes:
    """`value` as a header can carry it: its UTF-8 bytes (surrogates as such), without control
    characters (but tab) and without leading or trailing blanks."""
    raw = value.encode("utf-8", "surrogatepass")[:8000]
    return bytes(b for b in raw if (b >= 0x20 and b != 0x7F) or b == 0x09).strip(b" \t")


def query_value(value: str) -> str:
    """`value` percent-encoded from its UTF-8 bytes (a lone surrogate: bytes no decoder takes)."""
    return quote(value.encode("utf-8", "surrogatepass")[:4_000], safe="")  # URLs stay under 64 KiB


HEADER_LIMIT = 8 * 1024  # a request line and headers past it may be refused by the HTTP layer, not the app


def refusal_is_clean(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:300])
    head = len(str(r.request.url)) + sum(len(k) + len(v) for k, v in r.request.headers.raw)
    if r.status_code >= 400 and head < HEADER_LIMIT:
        body = r.json()
        assert set(body) >= {"error", "detail"}, body


# --- one server per broker, with its canary ------------------------------------------------------

BROKERS = [pytest.param("sqlite://", id="sqlite"), pytest.param("memory://", id="memory"),
           pytest.param("redis", id="redis", marks=pytest.mark.redis)]


@pytest.fixture(scope="module", params=BROKERS)
def srv(request: pytest.FixtureRequest, module_servers: Callable[..., ServerProcess]) -> Iterator[ServerProcess]:
    redis = RedisProcess().start() if request.param == "redis" else None
    try:
        server = module_servers("--broker", redis.url if redis is not None else request.param)
        yield server
        scan_log(server, USED)
    finally:
        if redis is not None:
            redis.cleanup()


@pytest.fixture(scope="module")
def canary(srv: ServerProcess) -> Iterator[Canary]:
    bird = Canary(srv, USED)
    yield bird
    bird.ws.close()


class Socket:
    """The fuzzer's WebSocket, reopened whenever the server closed it."""

    def __init__(self, srv: ServerProcess) -> None:
        self.srv = srv
        self.ws: ClientConnection | None = None

    def roundtrip(self, frame: str) -> list[Any]:
        """Send `frame`, then a ping; what came back before the pong (or [] after a close)."""
        if self.ws is None:
            self.ws = connect(self.srv.ws_url, additional_headers={"Authorization": f"Bearer {fuzzer_token()}"},
                              subprotocols=["pulseboard.v1"], max_size=None, compression=None,  # type: ignore[list-item,call-overload]
                              legacy=True, ping_interval=None)
        got: list[Any] = []
        try:
            self.ws.send(frame)
            self.ws.send('{"op":"ping"}')
            while True:
                msg = json.loads(self.ws.recv(timeout=30))
                if isinstance(msg, dict) and msg.get("op") == "pong":
                    return got
                got.append(msg)
        except ConnectionClosed as e:
            assert e.rcvd is not None, "the server dropped the connection without a close frame"
            assert e.rcvd.code in (1009, 4400, 4429, 4003, 4001), e.rcvd
            self.ws = None
            return got


@pytest.fixture(scope="module")
def sock(srv: ServerProcess) -> Iterator[Socket]:
    s = Socket(srv)
    yield s
    if s.ws is not None:
        s.ws.close()


# --- POST publish -------------------------------------------------------------------------------

items = st.fixed_dictionaries({"ch": channels, "data": data}, optional={"key": text})


@FUZZ
@given(body=st.one_of(items, st.lists(items, min_size=1, max_size=4)), sub=st.one_of(st.just("fuzzer"), short_text))
def test_fuzz_publish_content(srv: ServerProcess, canary: Canary, body: Any, sub: str) -> None:
    # json.dumps writes a lone surrogate as its \u escape: valid JSON, valid UTF-8 on the wire
    raw = json.dumps(body).encode()
    r = httpx.post(srv.url + "/publish", content=raw, timeout=30, headers={
        "Authorization": f"Bearer {fuzzer_token(sub)}", "Content-Type": "application/json"})
    refusal_is_clean(r)
    if r.status_code == 200:  # what was accepted reads back
        first = body if isinstance(body, dict) else body[0]
        h = httpx.get(srv.url + "/history", params={"ch": first["ch"], "limit": 5}, timeout=30,
                      headers={"Authorization": f"Bearer {fuzzer_token()}"})
        assert h.status_code == 200, h.text[:300]
    canary.check()


# --- the WebSocket ops ----------------------------------------------------------------------------

starts = st.one_of(st.none(), st.fixed_dictionaries({"backfill": st.integers(0, 50)}),
                   st.fixed_dictionaries({"since": st.integers(0, 5), "epoch": text}))
ops = st.one_of(
    st.fixed_dictionaries({"op": st.just("publish"), "ch": channels, "data": data},
                          optional={"id": st.one_of(text, values), "ts": st.floats()}),  # id: echoed back
    st.fixed_dictionaries({"op": st.just("subscribe"),
                           "ch": st.dictionaries(channels, starts, min_size=1, max_size=3)}),
    st.fixed_dictionaries({"op": st.just("unsubscribe"), "ch": st.lists(channels, min_size=1, max_size=3)}),
    st.fixed_dictionaries({"op": st.just("refresh"), "token": text}),
    st.fixed_dictionaries({"op": text}, optional={"id": text}),
)


@FUZZ
@given(op=ops)
def test_fuzz_websocket_op_content(srv: ServerProcess, canary: Canary, sock: Socket, op: dict[str, Any]) -> None:
    for msg in sock.roundtrip(json.dumps(op)):
        if isinstance(msg, dict) and msg.get("op") == "error":
            assert msg.get("code") and msg.get("detail"), msg
    canary.check()


# --- query values, cursors, tickets, tokens and headers -------------------------------------------

PARAMS = ["ch", "cursor", "backfill", "since", "limit", "from", "to", "points", "last_event_id", "ticket",
          "token", "epoch"]
HEADERS = ["Authorization", "Last-Event-ID", "Origin", "Host", "Sec-WebSocket-Protocol", "Cookie", "X-Forwarded-For",
           "Content-Type", "Accept"]


@FUZZ
@given(path=st.sampled_from(["/sse", "/poll", "/history", "/channels", "/", "/x"]),
       query=st.lists(st.tuples(st.sampled_from(PARAMS), text), max_size=4),
       headers=st.dictionaries(st.sampled_from(HEADERS), text, max_size=3),
       bearer=st.one_of(st.none(), text))
def test_fuzz_query_and_header_content(srv: ServerProcess, canary: Canary, path: str, query: list[tuple[str, str]],
                                       headers: dict[str, str], bearer: str | None) -> None:
    qs = "&".join(f"{k}={query_value(v)}" for k, v in query) + ("&timeout=0" if path == "/poll" else "")
    h: dict[str, bytes] = {"Authorization": b"Bearer " + fuzzer_token().encode()}
    h.update({k: header_bytes(v) for k, v in headers.items()})
    if bearer is not None:
        h["Authorization"] = (b"Bearer " + header_bytes(bearer)).strip()
    h = {k: v for k, v in h.items() if v}
    raw = {k.encode(): v for k, v in h.items()}
    with httpx.Client(timeout=30) as client, client.stream("GET", f"{srv.url}{path}?{qs}", headers=raw) as r:
        if r.status_code != 200 or path != "/sse":
            r.read()
    if path not in ("/", "/x"):
        refusal_is_clean(r)
    else:
        assert r.status_code < 500, r.status_code
    canary.check()


@FUZZ
@given(path=st.sampled_from(["/ticket", "/view-token"]), chs=st.one_of(st.lists(channels, max_size=4), text))
def test_fuzz_ticket_and_view_token_content(srv: ServerProcess, canary: Canary, path: str, chs: Any) -> None:
    r = httpx.post(srv.url + path, content=json.dumps({"ch": chs}).encode(), timeout=30, headers={
        "Authorization": f"Bearer {fuzzer_token()}", "Content-Type": "application/json"})
    refusal_is_clean(r)
    canary.check()


@FUZZ
@given(sub=short_text, read=st.lists(short_text, max_size=2), publish=st.lists(short_text, max_size=2))
def test_fuzz_token_claim_content(srv: ServerProcess, canary: Canary, sub: str, read: list[str],
                                  publish: list[str]) -> None:
    """A validly signed token whose claims hold any text: every endpoint refuses or serves it."""
    tok = token(sub=sub, read=read, publish=publish)
    USED.append(tok)
    head = {"Authorization": f"Bearer {tok}"}
    for r in (httpx.post(srv.url + "/publish", json={"ch": "fz.a", "data": {"v": 1}, "key": "k"}, headers=head,
                         timeout=30),
              httpx.get(srv.url + "/channels", headers=head, timeout=30),
              httpx.post(srv.url + "/ticket", headers=head, timeout=30),
              httpx.get(srv.url + "/poll", params={"ch": "fz.a", "timeout": "0"}, headers=head, timeout=30)):
        refusal_is_clean(r)
    try:  # the WebSocket: a `welcome` (which names the subject) or a refusal, never a broken connection
        with connect(srv.ws_url, additional_headers=head, subprotocols=["pulseboard.v1"],  # type: ignore[list-item]
                     open_timeout=30) as ws:
            assert json.loads(ws.recv(timeout=30))["op"] == "welcome"
    except InvalidStatus as e:
        assert e.response.status_code in (400, 401, 403, 429), e.response.status_code
    canary.check()
