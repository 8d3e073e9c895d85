"""Durations ("30d", "12h", "90s") and sizes ("2GB", "512MiB") as the store's options spell them."""

from __future__ import annotations

import os
import re
from pathlib import Path

SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
BYTES = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
         "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}
_NUM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def duration(text: str) -> float:
    """Seconds in '30d', '12h', '15m', '90s' or a plain number of seconds; raises ValueError."""
    m = _NUM.match(str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in SECONDS or float(m.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration: use e.g. 30d, 12h, 15m or 90s")
    return float(m.group(1)) * SECONDS[unit]


def byte_size(text: str) -> int:
    """Bytes in '2GB', '512MiB', '100k' or a plain number; 0 means no cap; raises ValueError."""
    m = _NUM.match(str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in BYTES:
        raise ValueError(f"{text!r} is not a size: use e.g. 8GB, 512MiB or 0 for no cap")
    return int(float(m.group(1)) * BYTES[unit])


def default_data_dir() -> str:
    """$PULSEBOARD_DATA_DIR, else $XDG_DATA_HOME/pulseboard, else ~/.local/share/pulseboard."""
    env = os.environ.get("PULSEBOARD_DATA_DIR")
    if env:
        return env
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return str(base / "pulseboard")




def duration_arg(text: str) -> float:
    """`duration` for argparse."""
    import argparse

    try:
        return duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def size_arg(text: str) -> int:
    """`byte_size` for argparse."""
    import argparse

    try:
        return byte_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


__all__ = ["byte_size", "default_data_dir", "duration", "duration_arg", "size_arg"]
