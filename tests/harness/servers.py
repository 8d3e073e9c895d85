"""Real server, redis-server and nginx processes on free ports, and waiting for what they do."""

from __future__ import annotations

import asyncio
import atexit
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

from pulseboard.protocol import Envelope
from pulseboard_server.watchdog import STALL_MARK

from .tokens import SECRET

ROOT = Path(__file__).resolve().parents[2]
PULSEBOARD = [sys.executable, "-m", "pulseboard_server"]
SERVERS: weakref.WeakSet[ServerProcess] = weakref.WeakSet()  # every test server, for the stall check


def check_stalls(report: bool = True) -> None:
    """Fail when any test server's event loop stalled since the last check."""
    stalls = [f"{srv.root}: {line}" for srv in list(SERVERS) for line in srv.new_stalls()]
    if stalls and report:
        raise AssertionError("a test server's event loop stalled:\n" + "\n".join(stalls))



PORT_BLOCK = 2_500  # ports per test worker, all below the kernel's ephemeral range (32768+)
# Ports browsers refuse to load (the Fetch standard's "bad ports"; Chromium answers
# net::ERR_UNSAFE_PORT). Of the list only 10080 falls in our blocks; the rest are kept so the
# rule reads whole if the blocks ever move.
BROWSER_BLOCKED = frozenset({
    1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101,
    102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389,
    427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636,
    989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566,
    6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080,
})
_next_port: int | None = None


def free_port() -> int:
    """A port nothing else is likely to take before our process binds it.

    Port 0 would hand out the kernel's ephemeral ports, which every other worker's port-0
    binds and every outgoing connection draw from too, so two workers could start servers on
    the same port. Each pytest-xdist worker (gw0, gw1, ...) draws from a block of its own
    below that range instead; anything else (benches, a plain pytest) from the last block,
    at an offset from its pid. A port that can't be bound right now, or that browsers refuse to
    load, is skipped."""
    global _next_port
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    slot = int(worker[2:]) % 8 if worker.startswith("gw") and worker[2:].isdigit() else 8
    base = 10_000 + slot * PORT_BLOCK
    if _next_port is None:
        _next_port = base + (os.getpid() * 97 % PORT_BLOCK if slot == 8 else 0)
    for _ in range(PORT_BLOCK):
        port = _next_port
        _next_port = base + (_next_port + 1 - base) % PORT_BLOCK
        if port in BROWSER_BLOCKED:  # a page on it would never load in chromium
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {base}..{base + PORT_BLOCK - 1}")



async def until(pred: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> None:
    """Await until `pred()` is truthy (checked every 20 ms), or raise TimeoutError naming `what`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.02, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll `predicate` until it returns a truthy value (an observable event, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


class PortTaken(RuntimeError):
    """The server could not bind its port: another process holds it."""


def answers_ok(url: str) -> bool:
    """`url` answers 200 within a second (False while down, or gone down mid-answer)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except (OSError, http.client.HTTPException):
        return False


class ServerProcess:
    """`pulseboard serve` in a subprocess; output goes to a log file."""

    def __init__(self, *args: str, port: int | None = None, env: dict[str, str] | None = None,
                 secret: str | None = SECRET) -> None:
        self._own_port = port is None  # a port we picked may be taken meanwhile: pick another
        self.port = port or free_port()
        self.args = list(args)
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        if secret is not None:
            self.env["PULSEBOARD_SECRET"] = secret
        # the event-loop watchdog: a stall over 200 ms logs STALL_MARK, and `check_stalls`
        # (after every test, tests/conftest.py) fails the test that caused it
        self.env.setdefault("PULSEBOARD_LOOP_WATCHDOG", "0.2")
        self.env.update(env or {})
        if not (env and "PULSEBOARD_DATA_DIR" in env):  # sqlite:// is the default: never share a store
            self.env["PULSEBOARD_DATA_DIR"] = tempfile.mkdtemp(prefix="pb-store-")
            atexit.register(shutil.rmtree, self.env["PULSEBOARD_DATA_DIR"], True)
        self.data_dir = Path(self.env["PULSEBOARD_DATA_DIR"])
        self.log = tempfile.NamedTemporaryFile(prefix="pulseboard-", suffix=".log", delete=False)
        self.proc: subprocess.Popen[bytes] | None = None
        self._stalls_seen = 0
        self._log_from = 0
        SERVERS.add(self)

    def new_stalls(self) -> list[str]:
        """The watchdog's stall lines logged since the last call."""
        lines = [ln for ln in self.output().splitlines() if STALL_MARK in ln]
        new, self._stalls_seen = lines[self._stalls_seen:], len(lines)
        return new

    @property
    def base(self) -> str:
        """The --base-path, without trailing slash ('' for /)."""
        if "--base-path" in self.args:
            return "/" + self.args[self.args.index("--base-path") + 1].strip("/")
        return ""

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The server's URL including its base path (no trailing slash)."""
        return self.root + self.base

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.base}/ws"

    def start(self, wait: bool = True) -> ServerProcess:
        for attempt in range(3):
            cmd = [*PULSEBOARD, "serve", "--port", str(self.port), "--collect-interval", "0", *self.args]
            self._log_from = len(self.output())
            self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
            if not wait:
                return self
            try:
                self.wait_ready()
                return self
            except PortTaken:
                # Between free_port() and the server's bind another test's process (parallel
                # workers) took the port: pick another, unless the test chose this one.
                if not self._own_port or attempt == 2:
                    raise
                self.port = free_port()
        return self

    def healthy(self) -> bool:
        return answers_ok(self.url + "/healthz")

    def listening(self) -> bool:
        """Our process holds the port: a 200 from /healthz alone may come from whoever took it."""
        if self.proc is None:
            return True
        try:
            conns = psutil.Process(self.proc.pid).net_connections("tcp")
        except psutil.Error:
            return False
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == self.port for c in conns)

    def wait_ready(self, timeout: float = 20.0) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                out = self.output()
                if " is in use: pick another" in out[self._log_from:]:
                    raise PortTaken(f"port {self.port} was taken:\n{out[-2000:]}")
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{out}")
            return self.listening() and self.healthy()

        wait_until(ready, timeout, what="server to answer /healthz")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.terminate(10)
            except subprocess.TimeoutExpired:
                self.kill()


REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisProcess:
    """A real redis-server on a free port, in its own temp dir (AOF optional)."""

    def __init__(self, port: int | None = None, aof: bool = False, extra: Sequence[str] = ()) -> None:
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="pb-redis-")
        self.aof = aof
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        cmd = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
               "--save", "", "--appendonly", "yes" if self.aof else "no",
               "--appendfsync", "always", *self.extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.ping, 10, what="redis-server to answer PING")
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(10)

    def cleanup(self) -> None:
        self.stop(kill=True)
        shutil.rmtree(self.dir, ignore_errors=True)


NGINX = Path("/usr/sbin/nginx")
NGINX_MAIN = """\
{user}
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{site}
}}
"""


class NginxProcess:
    """Debian's nginx as a plain subprocess with its own prefix, pid and logs.

    `site(port)` returns the `server { ... }` block(s), listening on 127.0.0.1:`port`.
    """

    def __init__(self, site: Callable[[int], str]) -> None:
        if not NGINX.exists():
            raise RuntimeError("Debian's nginx is not installed: run scripts/setup (apt-get install nginx-light)")
        self.dir = tempfile.mkdtemp(prefix="pb-nginx-")
        self.port = free_port()
        user = "user root;" if os.geteuid() == 0 else ""
        conf = NGINX_MAIN.format(user=user, dir=self.dir, site=site(self.port))
        Path(self.dir, "nginx.conf").write_text(conf)
        self.proc = subprocess.Popen(
            [str(NGINX), "-p", self.dir, "-c", f"{self.dir}/nginx.conf", "-e", f"{self.dir}/error.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until(self.ready, 15, what="nginx to answer")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError("nginx exited:\n" + Path(self.dir, "error.log").read_text(errors="replace"))
        return answers_ok(self.url + "/healthz")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Feed:
    """What the broker delivered to a node."""

    def __init__(self) -> None:
        self.msgs: list[Envelope] = []
        self.resets: list[tuple[str, str, int]] = []
        self.changed = asyncio.Event()

    def on_message(self, env: Envelope) -> None:
        self.msgs.append(env)
        self.changed.set()

    def on_reset(self, ch: str, epoch: str, seq: int) -> None:
        self.resets.append((ch, epoch, seq))
        self.changed.set()

    def seqs(self, ch: str) -> list[int]:
        return [e.seq for e in self.msgs if e.ch == ch]

    async def wait_for(self, pred: Callable[[], bool], timeout: float = 15.0) -> None:
        async def loop() -> None:
            while not pred():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), timeout)


TOKEN_TTL = 3  # seconds a rotated token lives in the long-run tests (an hour by default)


class TokenRotator:
    """`pulseboard token --out FILE --renew` as a user runs it (beside the server, holding the
    secret), writing tokens that live `TOKEN_TTL` seconds and may read and publish `long.*`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> TokenRotator:
        env = dict(os.environ, PULSEBOARD_SECRET=SECRET)
        self.proc = subprocess.Popen(
            [*PULSEBOARD, "token", "--sub", "trainer", "--read", "long.*", "--publish", "long.*",
             "--ttl", str(TOKEN_TTL), "--out", str(self.path), "--renew"], env=env, stdout=subprocess.DEVNULL)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(timeout=15) == 0  # stops cleanly on SIGTERM
        self.proc = None

    def exp(self) -> float:
        """The `exp` of the token in the file now (0 before the first write)."""
        from pulseboard.discovery import token_expiry

        try:
            return token_expiry(self.path.read_text().strip()) or 0.0
        except OSError:
            return 0.0

