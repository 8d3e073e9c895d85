"""`pulseboard watch LOGDIR` and `pulseboard.watch(LOGDIR)`: follow TensorBoard runs live.

A `Watcher` polls every event file under the log dir (`*tfevents*`, looked for again every
`rescan` seconds, so new runs and new files of a run are found), reads what each file gained,
and logs one message per step to the run's channel (`tbevents.run_channel`) through its own
`Sender`, each with the idempotency key `<file>:<generation>@<offset of the step's first
record>`.

Exactly once across restarts: a state file keeps, per file, the offset up to which every
step is delivered (`done`, advanced only once the server has numbered them) and the offsets
where a step was ended by waiting for a quiet writer (`cuts`, written before that step is
sent). A restart reads from `done` and ends steps at the same places, so a step sent
before the restart gets the same key and the server numbers it once.

Bounds: at most `max_read` bytes are read from one file per pass (more only to hold one record
bigger than that), and reading pauses while more than `MAX_QUEUED` messages wait for the server
(nothing is dropped: the sender's queue is larger). Each read's steps go to the sender as soon
as they are parsed, so its thread encodes and posts them while the next read is parsed.
A file that shrinks or is replaced is read again from its start under a new generation (new keys).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .protocol import PulseboardError
from .sender import Sender, note
from .tbevents import Step, message, parse, record_end, run_channel

POLL = 0.2  # seconds between looks at the files
RESCAN = 1.0  # seconds between walks of the log dir for new runs and files
MAX_READ = 1024 * 1024  # bytes read from one file per pass (its steps are sent while the next is read)
MAX_QUEUED = 50_000  # messages waiting for the server before reading pauses
STALL = 150.0  # seconds a last record may stay cut short before it is reported (writers flush every 120 s)


class WatchError(Exception):
    """A one-line reason the watcher cannot start (for the CLI's exit line)."""


@dataclass(slots=True)
class _File:
    path: Path
    key: str  # state-file key: the path relative to the log dir
    channel: str
    gen: int = 0
    done: int = 0  # every step before this offset is delivered
    cuts: list[int] = field(default_factory=list)  # steps ended by waiting, after `done`
    pos: int = 0  # the next read starts here
    seen: int = 0  # skipped summaries and damage before this offset are counted already
    size: int = -1  # size at the last pass
    ino: int = 0
    stalled_at: float = 0.0  # when the file was last seen to end inside a record
    stall_told: int = -1  # the offset whose truncated record was reported

    @property
    def key_base(self) -> str:
        name = self.path.name if len(self.path.name) <= 150 else hashlib.sha1(self.path.name.encode()).hexdigest()
        return f"tb:{name}:{self.gen}@"


@dataclass(frozen=True, slots=True)
class WatchStatus:
    runs: int  # channels being fed
    files: int  # event files followed
    steps: int  # messages logged
    scalars: int  # values in them
    delivered: int  # messages the server has numbered (or refused: see the sender's status)
    skipped: dict[str, int]  # non-scalar summaries by kind (histograms, images, text, ...)
    damaged: int  # damaged records skipped
    state_file: str | None


def default_state_dir() -> Path:
    """$PULSEBOARD_DATA_DIR/watch, else $XDG_DATA_HOME/pulseboard/watch, else ~/.local/share/..."""
    base = os.environ.get("PULSEBOARD_DATA_DIR") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "pulseboard")
    return Path(base) / "watch"


class Watcher:
    """Follows every run under `logdir`; `run()` in the caller's thread, or `start()` one."""

    def __init__(self, logdir: str | os.PathLike[str], prefix: str = "tb", url: str | None = None,
                 token: str | None = None, state: str | os.PathLike[str] | None = None, poll: float = POLL,
                 rescan: float = RESCAN, stall: float = STALL, sender: Sender | None = None,
                 verbose: bool = True, max_read: int = MAX_READ) -> None:
        self.logdir = Path(logdir).expanduser().resolve()
        if self.logdir.exists() and not self.logdir.is_dir():
            raise WatchError(f"{logdir} is not a directory")
        if not self.logdir.exists() and verbose:  # a watcher started before the training that writes there
            note(f"watch: {logdir} does not exist yet; waiting for it")
        try:
            run_channel(prefix, "")
        except PulseboardError as e:
            raise WatchError(f"bad --prefix: {e.detail}") from None
        self.prefix, self.poll, self.rescan, self.stall, self.verbose = prefix, poll, rescan, stall, verbose
        self.max_read = max_read
        self.sender = sender or Sender(url, token, max_queue=4 * MAX_QUEUED)
        where = url or os.environ.get("PULSEBOARD_URL") or "auto"
        ident = hashlib.sha1(f"{self.logdir}\n{prefix}\n{where.rstrip('/')}".encode()).hexdigest()[:16]
        self.state_path = Path(state) if state is not None else default_state_dir() / f"{ident}.json"
        self._files: dict[str, _File] = {}
        self._saved: dict[str, dict[str, Any]] = {}
        self._inflight: deque[tuple[int, str, int]] = deque()  # (logged count, file, its done offset then)
        self._turn = 0
        self._logged = 0
        self._scalars = 0
        self._skipped: Counter[str] = Counter()
        self._damaged = 0
        self._channels: set[str] = set()
        self._next_scan = 0.0
        self._dirty = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_file: IO[str] | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> Watcher:
        self.open()
        self._thread = threading.Thread(target=self._loop, name="pulseboard-watch", daemon=True)
        self._thread.start()
        return self

    def run(self) -> None:
        """Follow the log dir until `stop()` (from a signal handler or another thread)."""
        self.open()
        self._loop()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop reading, deliver what was read (up to `timeout` s), save the state. True when all went."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return self._finish(timeout)

    def status(self) -> WatchStatus:
        return WatchStatus(len(self._channels), len(self._files), self._logged, self._scalars, self._settled(),
                           dict(self._skipped), self._damaged, str(self.state_path))

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                more = self.poll_once()
            except Exception as e:  # one bad pass (a file vanishing mid-read) must not end the watch
                note(f"watch: {e!r}")
                more = False
            if not more:
                self._stop.wait(self.poll)

    def _finish(self, timeout: float) -> bool:
        if self._lock_file is None:  # never opened, or stopped already
            return True
        ok = self.sender.flush(timeout)
        self._advance()
        self._save()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        return ok

    # --- one pass ---------------------------------------------------------------------------

    def poll_once(self) -> bool:
        """Read what every file gained and log its steps; True when a file has more to read now."""
        now = time.monotonic()
        if now >= self._next_scan:
            self._scan()
            self._next_scan = now + self.rescan
        self._advance()
        if self.sender.status().queued > MAX_QUEUED:  # the server is behind or away: wait for it
            self.sender.flush(self.poll)
            return False
        more = False
        files = sorted(self._files.values(), key=lambda f: f.key)
        turn = self._turn % len(files) if files else 0
        self._turn += 1  # each pass starts at the next file: a pass cut short by a full queue starves none
        for i, f in enumerate(files[turn:] + files[:turn]):
            if i and self.sender.status().queued > MAX_QUEUED:
                return True
            more |= self._read(f, now)
        return more

    def _publish(self, f: _File, steps: list[Step], upto: int) -> None:
        """Log one read's steps at once (the sender's thread posts them while the next file is
        parsed) and mark `upto` done once the server has numbered them."""
        if self._dirty:  # cuts first: a restart must end those steps where they were ended now
            self._save()
        log = self.sender.log_checked
        base = f.key_base
        scalars = 0
        for s in steps:
            log(f.channel, message(s), s.ts, base + str(s.start))
            scalars += len(s.fields)
        self._scalars += scalars
        self._logged += len(steps)
        self._inflight.append((self._logged, f.key, upto))

    def _read(self, f: _File, now: float) -> bool:
        try:
            st = f.path.stat()
        except FileNotFoundError:
            del self._files[f.key]
            return False
        if st.st_size < f.pos or (f.ino and st.st_ino != f.ino):  # replaced or cut short: a new file
            if self.verbose:
                note(f"watch: {f.key} was replaced; reading it again from its start")
            f.gen, f.done, f.pos, f.seen, f.cuts = f.gen + 1, 0, 0, 0, []
            self._dirty = True
        f.ino = st.st_ino
        grew, f.size = st.st_size != f.size, st.st_size
        if st.st_size <= f.pos:
            return False
        with open(f.path, "rb") as fh:
            fh.seek(f.pos)
            buf = fh.read(self.max_read)
            p = parse(buf, f.pos, f.cuts, f.seen)
            while p.resume == f.pos and len(buf) >= self.max_read:
                # A full read that ends no step: a record bigger than a read (a large image), or
                # one step's records longer than a read. Read on until one ends.
                need = record_end(buf, p.end - f.pos) if p.truncated else len(buf) + self.max_read
                got = fh.read(need - len(buf))
                if not got:
                    break
                buf += got
                p = parse(buf, f.pos, f.cuts, f.seen)
        for off, what in p.damaged:
            self._damaged += 1
            note(f"watch: {f.key} offset {off}: {what}")
        for kind, n in p.skipped.items():
            if self.verbose and not self._skipped[kind]:
                note(f"watch: skipping {kind} (only scalars are published; counted in status())")
            self._skipped[kind] += n
        more = f.pos + len(buf) < st.st_size  # this read stopped short of the end
        f.seen = max(f.seen, p.end)
        steps = p.steps
        tail = p.tail
        if tail is not None and not grew and not more:  # the writer is quiet: this step is all there is
            steps.append(tail)
            f.cuts.append(tail.end)
            self._dirty = True
            tail = None
        f.pos = tail.start if tail is not None else p.end
        if steps or f.pos > f.done:  # (no steps: skipped records, done once earlier steps are)
            self._publish(f, steps, f.pos)
        self._stalled(f, p.truncated, now)
        return more

    def _stalled(self, f: _File, truncated: bool, now: float) -> None:
        """Report once a last record that stays cut short (a writer killed mid-record)."""
        if not truncated:
            f.stalled_at = 0.0
            return
        if not f.stalled_at:
            f.stalled_at = now
        elif now - f.stalled_at >= self.stall and f.stall_told != f.pos:
            f.stall_told = f.pos
            self._damaged += 1
            note(f"watch: {f.key} has ended inside a record at offset {f.pos} for {self.stall:g} s "
                 "(truncated: a writer that died mid-record?); the steps before it are published, "
                 "the rest is read if the file grows")

    def _scan(self) -> None:
        found: list[Path] = []
        for root, dirs, files in os.walk(self.logdir):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found.extend(Path(root) / n for n in files if "tfevents" in n)
        for path in sorted(found):
            rel = path.relative_to(self.logdir).as_posix()
            if rel in self._files:
                continue
            run = path.parent.relative_to(self.logdir).as_posix()
            channel = run_channel(self.prefix, "" if run == "." else run)
            f = _File(path, rel, channel)
            saved = self._saved.get(rel)
            if saved is not None:
                f.gen, f.done, f.cuts = int(saved["gen"]), int(saved["done"]), [int(c) for c in saved["cuts"]]
                f.pos = f.seen = f.done
                f.ino = int(saved.get("ino", 0))
            self._files[rel] = f
            if channel not in self._channels:
                self._channels.add(channel)
                if self.verbose:
                    note(f"watch: run {run!r} -> channel {channel}")

    # --- delivery and state ------------------------------------------------------------------

    def _settled(self) -> int:
        return self.sender.sent + self.sender.rejected

    def _advance(self) -> None:
        """Move `done` past every step the server has answered for (the sender settles in order)."""
        settled = self._settled()
        moved = False
        while self._inflight and self._inflight[0][0] <= settled:
            _, key, upto = self._inflight.popleft()
            f = self._files.get(key)
            if f is not None and upto > f.done:
                f.done = upto
                f.cuts = [c for c in f.cuts if c > upto]
                moved = True
        if moved or self._dirty:
            self._save()

    def open(self) -> None:
        """Take the state file (one watcher per log dir, prefix and server) and read it; then
        call `poll_once()` yourself, or use `start()` / `run()`, which call this."""
        import fcntl

        if self._lock_file is not None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(str(self.state_path) + ".lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise WatchError(f"{self.logdir} is already watched with this prefix and server by another "
                             f"process (state {self.state_path})") from None
        self._lock_file = lock
        try:
            saved = json.loads(self.state_path.read_text())
            self._saved = dict(saved.get("files", {}))
        except FileNotFoundError:
            self._saved = {}
        except (ValueError, AttributeError) as e:
            raise WatchError(f"state file {self.state_path} is damaged ({e}); remove it to read every "
                             "run again from the start (the server drops what it already has)") from None

    def _save(self) -> None:
        files = {**self._saved, **{k: {"gen": f.gen, "done": f.done, "cuts": f.cuts, "ino": f.ino}
                                   for k, f in self._files.items()}}
        self._saved = files
        body = json.dumps({"version": 1, "logdir": str(self.logdir), "prefix": self.prefix, "files": files})
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(body)
        os.replace(tmp, self.state_path)
        self._dirty = False


_watchers: dict[tuple[str, str, str], Watcher] = {}


def watch(logdir: str | os.PathLike[str], prefix: str = "tb", url: str | None = None, token: str | None = None,
          **options: Any) -> Watcher:
    """Follow the TensorBoard runs under `logdir` in a background thread; returns the `Watcher`
    (`.status()`, `.stop()`). Watching the same log dir with the same prefix again returns the
    one already running. Options: `poll`, `rescan`, `state` (see `Watcher`)."""
    ident = (str(Path(logdir).expanduser().resolve()), prefix, url or "")
    w = _watchers.get(ident)
    if w is not None and w._thread is not None and w._thread.is_alive():
        return w
    w = Watcher(logdir, prefix, url, token, **options).start()
    _watchers[ident] = w
    return w


def main(logdir: str, prefix: str = "tb", url: str | None = None, token: str | None = None,
         state: str | None = None, poll: float = POLL) -> int:
    """`pulseboard watch`: runs until SIGTERM or SIGINT, then delivers what it read and saves its place."""
    import signal

    w = Watcher(logdir, prefix, url, token, state=state, poll=poll)

    def on_signal(signum: int, frame: object) -> None:
        w._stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    note(f"watch: following {w.logdir} into {prefix}.* (state {w.state_path}); Ctrl-C stops")
    with contextlib.suppress(KeyboardInterrupt):
        w.run()
    ok = w.stop()
    s = w.status()
    note(f"watch: stopped; {s.delivered} steps delivered" + ("" if ok else ", some not (server unreachable)"))
    return 0 if ok else 1
