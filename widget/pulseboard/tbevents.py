"""TensorBoard event files, read into one message per step (pure: bytes in, steps out).

An event file is a TFRecord stream: each record is an 8-byte little-endian length, the
masked CRC-32C of those 8 bytes, the payload (one serialized `tensorboard.Event` protobuf)
and the masked CRC-32C of the payload. The payload is decoded by TensorBoard's own
generated protobuf classes (`tensorboard.compat.proto.event_pb2`, the format's owner keeps
them in step with what TensorFlow, `torch.utils.tensorboard` and tensorboardX write) on the
`protobuf` runtime, and the checksums by the `crc32c` package (hardware CRC; the pure-Python
one in TensorBoard's stub reader manages a few MB/s). TensorBoard's own record iterator
is not used: it gives no byte offsets (the watcher's resume points and idempotency keys),
cannot start at an offset, and stops for good at a damaged record.

`parse(buf, base, ...)` groups consecutive scalar events of one step into a `Step`: a new
step number, a tag that repeats, or a recorded cut (see `Step`) starts the next one.
Events of other kinds (histograms, images, text, graphs) are counted, never errors.
"""

from __future__ import annotations

import hashlib
import struct
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

try:
    import crc32c as _crc32c
    from tensorboard.compat.proto.event_pb2 import Event
except ImportError as e:  # pragma: no cover - the message is the point
    raise ImportError(
        f"reading TensorBoard event files needs the tensorboard extra: pip install 'pulseboard[tensorboard]' ({e})"
    ) from None

from google.protobuf.message import DecodeError

from .protocol import check_channel

_crc = _crc32c.crc32c
_u64 = struct.Struct("<Q").unpack_from
_u32 = struct.Struct("<I").unpack_from
_header = struct.Struct("<QI").unpack_from  # length, masked CRC of the length
_parse_event = Event.FromString
MAX_RECORD = 256 * 1024 * 1024  # a length over this is damage, not a record

# Summary.Value's `value` oneof, and the plugins whose tensors are not scalars, by the name
# the counts use.
_SKIPPED_KINDS = {"histo": "histograms", "image": "images", "audio": "audio",
                  "obsolete_old_style_histogram": "histograms"}
_PLUGIN_KINDS = {"histograms": "histograms", "images": "images", "audio": "audio", "text": "text"}
# TensorProto dtype -> (repeated field, struct code for tensor_content)
_DTYPES = {1: ("float_val", "<f"), 2: ("double_val", "<d"), 3: ("int_val", "<i"), 9: ("int64_val", "<q"),
           19: ("half_val", "<e"), 10: ("bool_val", "<?")}


def masked_crc(data: bytes | memoryview) -> int:
    """TFRecord's masked CRC-32C (rotate right by 15, add a constant)."""
    x = _crc(data)
    return (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@dataclass(slots=True)
class Step:
    """One message: the scalars of consecutive events that share a step number.

    `start` is the file offset of its first record: with the file's name it is the message's
    idempotency key, so the same step read again after a restart is numbered once. A step
    ended by waiting (the writer went quiet mid-step) records its `end` as a cut, so that a
    restart that reads past it ends the step at the same place."""

    start: int
    end: int
    step: int
    ts: float
    fields: dict[str, float]


@dataclass(slots=True)
class Parsed:
    steps: list[Step]  # whole steps, in file order
    tail: Step | None  # the last step: more records of the same step may still join it
    end: int  # offset after the last whole record (or skipped damage) in the buffer
    skipped: Counter[str] = field(default_factory=Counter)  # non-scalar summaries, by kind
    damaged: list[tuple[int, str]] = field(default_factory=list)  # (offset, what), each once
    truncated: bool = False  # the buffer ends inside a record (still being written, or cut short)

    @property
    def resume(self) -> int:
        """Where the next read must start: the tail's first record, else after the last one."""
        return self.tail.start if self.tail is not None else self.end


def parse(buf: bytes, base: int = 0, cuts: Collection[int] = (), seen: int = 0) -> Parsed:
    """Steps in `buf`, which holds a file's bytes from offset `base` (a record boundary).

    `cuts`: offsets where a step must end (recorded earlier, see `Step`). `seen`: records
    starting before this offset were read before, so their skipped summaries and damage are
    not counted again. Never raises on bad bytes: damage is reported in `damaged` and skipped
    (a bad length checksum: up to the next valid record header).
    """
    out = Parsed([], None, base)
    view = memoryview(buf)
    size = len(buf)
    pos = 0
    cur: Step | None = None
    steps = out.steps
    pending_cuts = sorted(c for c in cuts if c > base)
    cut = pending_cuts.pop(0) if pending_cuts else -1
    crc, hdr, u32 = _crc, _header, _u32
    end = base  # offset after the last whole record (or skipped damage)
    # The loop is the watcher's hot path (one pass per record): the checksums are inlined.
    while pos + 12 <= size:
        start = base + pos
        if 0 <= cut <= start:  # a step ended here before: end it here again
            if cur is not None:
                steps.append(cur)
                cur = None
            while 0 <= cut <= start:
                cut = pending_cuts.pop(0) if pending_cuts else -1
        length, check = hdr(buf, pos)
        x = crc(view[pos:pos + 8])
        if (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF != check or length > MAX_RECORD:
            nxt = _resync(buf, view, pos + 1)
            if start >= seen:
                out.damaged.append((start, f"bad record header; skipped {nxt - pos} bytes"))
            pos = nxt
            end = base + pos
            continue
        stop = pos + 12 + length
        if stop + 4 > size:
            break
        payload = view[pos + 12:stop]
        pos = stop + 4
        end = base + pos
        x = crc(payload)
        if (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF != u32(buf, stop)[0]:
            if start >= seen:
                out.damaged.append((start, "bad record checksum; record skipped"))
            continue
        try:
            event = _parse_event(payload)
        except DecodeError:
            if start >= seen:
                out.damaged.append((start, "not an Event protobuf; record skipped"))
            continue
        if event.HasField("summary"):
            step = event.step
            for value in event.summary.value:
                if value.WhichOneof("value") == "simple_value":
                    v: float = value.simple_value
                else:
                    other = _scalar(value, out.skipped if start >= seen else None)
                    if other is None:
                        continue
                    v = other
                tag = value.tag
                if cur is None or cur.step != step or tag in cur.fields:
                    if cur is not None:
                        steps.append(cur)
                    cur = Step(start, end, step, event.wall_time, {})
                cur.fields[tag] = v
        if cur is not None:
            cur.end = end
    out.end = end
    out.truncated = pos < size
    out.tail = cur
    return out


def _resync(buf: bytes, view: memoryview, pos: int) -> int:
    """The next offset from `pos` where a valid record header starts (or where the scan must
    resume once more bytes arrive)."""
    size = len(buf)
    while pos + 12 <= size:
        if masked_crc(view[pos:pos + 8]) == _u32(buf, pos + 8)[0] and _u64(buf, pos)[0] <= MAX_RECORD:
            return pos
        pos += 1
    return pos


def _scalar(value: Any, skipped: Counter[str] | None) -> float | None:
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return float(value.simple_value)
    if kind == "tensor":
        plugin = value.metadata.plugin_data.plugin_name
        if plugin in ("scalars", ""):
            x = _tensor_scalar(value.tensor)
            if x is not None:
                return x
        name = _PLUGIN_KINDS.get(plugin, plugin or "tensors")
    else:
        name = _SKIPPED_KINDS.get(kind or "", kind or "empty")
    if skipped is not None:
        skipped[name] += 1
    return None


def _tensor_scalar(t: Any) -> float | None:
    """The one number in a scalar tensor (TF 2's `tf.summary.scalar` writes these), else None."""
    if len(t.tensor_shape.dim) != 0:
        return None
    kind = _DTYPES.get(t.dtype)
    if kind is None:
        return None
    vals = getattr(t, kind[0])
    if len(vals) == 1:
        return float(vals[0])
    if t.tensor_content and len(t.tensor_content) == struct.calcsize(kind[1]):
        return float(struct.unpack(kind[1], t.tensor_content)[0])
    return None


# --- run names -> channel names ---------------------------------------------------------

_KEEP = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
MAX_CHANNEL = 200


def run_channel(prefix: str, run: str) -> str:
    """The channel for the run in folder `run` (relative to the log dir, `/`-separated; `""` is
    the log dir itself, whose channel is `prefix`).

    Folder levels are joined with `.`; in each name, characters other than `A-Z a-z 0-9 _ -`
    (the `.` and `:` included) become `:` and two lowercase hex digits per UTF-8 byte, so two
    different folders never share a channel (`a/b` is `tb.a.b`, `a.b` is `tb.a:2eb`). A channel
    over 200 characters keeps its first 186 and ends in `::` and 12 hex digits of the SHA-1 of
    the whole name (`::` appears in no other channel)."""
    check_channel(prefix)
    parts = [p for p in run.split("/") if p not in ("", ".")]
    if not parts:
        return prefix
    name = prefix + "." + ".".join(_escape(p) for p in parts)
    if len(name) > MAX_CHANNEL:
        name = name[:MAX_CHANNEL - 14] + "::" + hashlib.sha1(name.encode()).hexdigest()[:12]
    return name


def _escape(part: str) -> str:
    return "".join(c if c in _KEEP else "".join(f":{b:02x}" for b in c.encode()) for c in part)


def message(step: Step) -> dict[str, Any]:
    """The message for a step: one field per tag, then `step` (which wins over a tag of that name)."""
    return {**step.fields, "step": step.step}
