"""Tokens read from a file that something else keeps fresh (`PULSEBOARD_TOKEN_FILE`).

Long runs outlive their token: tokens are short-lived on purpose (an hour by default), so a
run of days needs a new one every so often without a person. The file is that hand-over
point, as with Kubernetes' projected service-account tokens or a Vault agent's sink: a
rotator that holds the signing secret (`pulseboard token ... --out FILE --renew`, or your
own) rewrites the file atomically before the old token expires, and every reader here
re-reads it when it changed. The training process never holds the secret or a long-lived
token; stopping the rotator ends its access within one token lifetime (docs/security.md).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from .protocol import UNAUTHORIZED, PulseboardError

ENV = "PULSEBOARD_TOKEN_FILE"
MAX_BYTES = 64 * 1024  # a JWT is a few hundred bytes; anything far bigger is the wrong file


class TokenFileError(PulseboardError):
    """The token file can't be read or holds no token; `detail` says which file and why."""


class TokenFile:
    """One token file, re-read only when its size or modification time changed."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._stamp: tuple[int, int, int] | None = None
        self._token = ""
        self._lock = threading.Lock()

    def token(self) -> str:
        """The file's token now; raises `TokenFileError` (missing, unreadable, empty)."""
        with self._lock:
            try:
                st = self.path.stat()
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
                if stamp != self._stamp:
                    if st.st_size > MAX_BYTES:
                        raise TokenFileError(UNAUTHORIZED, f"{ENV} {self.path}: {st.st_size} bytes is not a token")
                    text = self.path.read_text(encoding="utf-8").strip()
                    if not text:
                        raise TokenFileError(UNAUTHORIZED, f"{ENV} {self.path} is empty: is its rotator running?")
                    self._token, self._stamp = text, stamp
            except OSError as e:
                raise TokenFileError(
                    UNAUTHORIZED, f"cannot read {ENV} {self.path}: {e.strerror or e}"
                ) from None
            return self._token


_files: dict[str, TokenFile] = {}
_files_lock = threading.Lock()


def file_token(env: Mapping[str, str]) -> str | None:
    """The token in `env`'s `PULSEBOARD_TOKEN_FILE`, None when it is not set."""
    path = env.get(ENV)
    if not path:
        return None
    with _files_lock:
        tf = _files.get(path)
        if tf is None:
            tf = _files[path] = TokenFile(path)
    return tf.token()


def write_token(path: str | os.PathLike[str], token: str) -> None:
    """Replace the file's content atomically (readers see the old token or the new, never half),
    readable by its owner only."""
    target = Path(path).expanduser()
    fd, tmp = tempfile.mkstemp(prefix=".pulseboard-token-", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


RENEW_SHARE = 0.5  # the rotator writes a new token when half of the current one's life has passed


def rotate(path: str | os.PathLike[str], mint: Callable[[], str], ttl: float,
           stop: threading.Event, on_write: Callable[[str], None] | None = None) -> None:
    """Write `mint()` to `path` now and again every `ttl * RENEW_SHARE` seconds until `stop` is set.

    Half the lifetime leaves readers the other half to pick the new token up (they re-read on
    a 401, and the kernel before handing a token to the browser).
    """
    while True:
        token = mint()
        write_token(path, token)
        if on_write is not None:
            on_write(token)
        if stop.wait(max(0.5, ttl * RENEW_SHARE)):
            return
