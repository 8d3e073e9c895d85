"""Event files written by tensorboardX's real SummaryWriter, and reading a watched channel back."""

from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import Any

import numpy as np
from tensorboardX import SummaryWriter

from harness.channels import read_all
from pulseboard.tbevents import parse

Expected = dict[int, dict[str, float]]  # step -> tag -> value (as the file holds it: float32)


def f32(x: float) -> float:
    """What a value becomes in an event file (`simple_value` is a float32)."""
    return float(np.float32(x))


def writer(run_dir: Path, suffix: str = "") -> SummaryWriter:
    # flush_secs: the writer's thread flushes its file that often (the default is 120 s).
    # suffix: a second writer in the same folder within the same second would otherwise open
    # (and empty) the first one's file, whose name is the time in seconds and the host.
    return SummaryWriter(str(run_dir), flush_secs=0.05, filename_suffix=suffix)


def write_steps(w: SummaryWriter, steps: range, tags: int = 3, extras: bool = False,
                expected: Expected | None = None) -> Expected:
    """`tags` scalars per step (value = step * 0.5 + tag / 7), and with `extras` a histogram,
    an image and a text summary at each step, which the watcher must skip and count."""
    out: Expected = {} if expected is None else expected
    for s in steps:
        for k in range(tags):
            v = s * 0.5 + k / 7
            w.add_scalar(f"train/m{k}", v, s)
            out.setdefault(s, {})[f"train/m{k}"] = f32(v)
        if extras:
            w.add_histogram("weights", np.arange(20, dtype=np.float32) * s, s)
            w.add_image("sample", np.zeros((3, 4, 4), dtype=np.uint8), s)
            w.add_text("note", f"step {s}", s)
    return out


def event_file(run_dir: Path) -> Path:
    files = sorted(run_dir.glob("*tfevents*"))
    assert len(files) == 1, files
    return files[0]


def steps_on_disk(path: Path) -> int:
    """Whole steps in the file as it is now (for waiting until a writer's thread has written)."""
    p = parse(path.read_bytes())
    return len(p.steps) + (p.tail is not None)


def channel(url: str, ch: str) -> list[dict[str, Any]]:
    """Every message of a channel (none before it exists)."""
    try:
        return read_all(url, ch)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return []
        raise


def as_steps(msgs: list[dict[str, Any]]) -> list[tuple[int, dict[str, float]]]:
    """(step, tag -> value) per message, in channel order."""
    return [(m["data"]["step"], {k: v for k, v in m["data"].items() if k != "step"}) for m in msgs]


def merged(msgs: list[dict[str, Any]]) -> Expected:
    """Step -> tag -> value over all messages; fails if a tag of a step came twice."""
    out: Expected = {}
    for step, fields in as_steps(msgs):
        have = out.setdefault(step, {})
        assert not set(have) & set(fields), f"step {step}: {sorted(set(have) & set(fields))} published twice"
        have.update(fields)
    return out
