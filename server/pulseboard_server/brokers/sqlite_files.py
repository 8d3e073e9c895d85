"""The store's folder and files on disk: only the server's own user may read or write them.

A Hub with local accounts keeps everyone's runs in one store: a file other users can read
bypasses every grant, and a folder or file they can write (or a symlink they planted)
lets them swap the store or make the server write through the link. So:

- the data dir is resolved (a symlinked folder is fine, its target is checked), created
  0700 when missing, and refused when another user owns it or others may write to it;
- `pulseboard.db` and its `.lock` are opened with `O_NOFOLLOW` (a symlink is refused, not
  followed), must be regular files owned by this user with no other hard link, are made
  0600 (SQLite gives the -wal and -shm files the database's mode), and are refused when
  others may write to them.

Every refusal is a `StoreError`: one line at start, the server does not run.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .sqlite_store import StoreError

SIDE_FILES = ("-wal", "-shm", "-journal")


def _who(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (KeyError, ImportError):
        return f"uid {uid}"


def _check(what: Path, st: os.stat_result, kind: str) -> None:
    me = os.geteuid()
    if st.st_uid != me:
        raise StoreError(f"{kind} {what} belongs to {_who(st.st_uid)}, not to this user ({_who(me)}): "
                         "use a folder of your own (--data-dir)")
    if st.st_mode & 0o022:
        raise StoreError(f"{kind} {what} can be written by other users (mode {stat.S_IMODE(st.st_mode):04o}): "
                         f"chmod go-w it, or use another --data-dir")


def secure_dir(folder: Path) -> Path:
    """The data dir, resolved; made 0700 when missing; refused when others own or may write it."""
    folder = Path(os.path.abspath(folder))
    try:
        if not os.path.lexists(folder):
            folder.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.mkdir(folder, 0o700)
            except FileExistsError:
                pass
        real = folder.resolve(strict=True)
        st = os.stat(real)
    except OSError as e:
        raise StoreError(f"cannot use the store folder {folder}: {e.strerror or e}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise StoreError(f"the store folder {folder} is not a folder")
    _check(real, st, "the store folder")
    return real


def open_private(path: Path, create: bool) -> int | None:
    """An fd on `path` (a regular file of ours, no symlink, no other hard link, made 0600);
    None when it is missing and `create` is false."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        if create:
            raise StoreError(f"cannot create {path}") from None
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise StoreError(f"{path} is a symbolic link: the store's files must be plain files "
                             "in its folder (remove the link)") from None
        raise StoreError(f"cannot use {path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"{path} is not a regular file: move it away")
        _check(path, st, "the store file")
        if st.st_nlink > 1:
            raise StoreError(f"{path} has another hard link: another store may share it (copy it instead)")
        if stat.S_IMODE(st.st_mode) != 0o600:
            os.fchmod(fd, 0o600)  # earlier builds left 0644: readable by every local user
    except BaseException:
        os.close(fd)
        raise
    return fd


def secure_store(path: Path) -> Path:
    """`path` with its folder resolved and checked, its database file created 0600 and its
    side files checked; the caller then opens the lock with `open_private(..., create=True)`."""
    real = secure_dir(path.parent) / path.name
    fd = open_private(real, create=True)
    assert fd is not None
    os.close(fd)  # SQLite opens it by name: the folder is ours alone, so the name stays this file
    for suffix in SIDE_FILES:
        side = open_private(real.with_name(real.name + suffix), create=False)
        if side is not None:
            os.close(side)
    return real


__all__ = ["open_private", "secure_dir", "secure_store"]
