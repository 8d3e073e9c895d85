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
from math import isfinite
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
_NEVER = 1 << 62  # no cut ahead

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
    cur: Step | None = None
    steps = out.steps
    # Offsets inside the loop are relative to `buf`; the steps' are made absolute at the end.
    pending_cuts = sorted(c - base for c in cuts if c > base)
    cut = pending_cuts.pop(0) if pending_cuts else _NEVER
    seen -= base
    crc, hdr, u32, decode = _crc, _header, _u32, _parse_event
    pos = end = 0  # end: after the last whole record (or skipped damage)
    # The loop is the watcher's hot path (one pass per record): the checksums are inlined, the
    # length's own checksum is checked only when the payload's fails or the record would end
    # past the buffer (a good payload checksum over the span a length gives vouches for that
    # length), and a summary's values are indexed (iterating a protobuf repeated field costs
    # as much as decoding the event).
    while pos + 12 <= size:
        start = pos
        if start >= cut:  # a step ended here before: end it here again
            if cur is not None:
                steps.append(cur)
                cur = None
            while start >= cut:
                cut = pending_cuts.pop(0) if pending_cuts else _NEVER
        length, check = hdr(buf, pos)
        stop = pos + 12 + length
        if stop + 4 <= size:
            payload = view[pos + 12:stop]
            x = crc(payload)
            good = (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF == u32(buf, stop)[0]
        else:
            good = False
        if not good:
            x = crc(view[pos:pos + 8])
            if (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF != check or length > MAX_RECORD:
                nxt = _resync(buf, view, pos + 1)
                if start >= seen:
                    out.damaged.append((base + start, f"bad record header; skipped {nxt - pos} bytes"))
                pos = end = nxt
                continue
            if stop + 4 > size:  # still being written, or cut short
                break
            pos = end = stop + 4
            if start >= seen:
                out.damaged.append((base + start, "bad record checksum; record skipped"))
            continue
        pos = end = stop + 4
        try:
            event = decode(payload)
        except DecodeError:
            if start >= seen:
                out.damaged.append((base + start, "not an Event protobuf; record skipped"))
            continue
        values = event.summary.value
        n = len(values)
        if n:
            step = event.step
            for i in range(n):
                value = values[i]
                v: float = value.simple_value
                # a non-zero simple_value is the oneof's; a zero one may stand for another kind
                if v == 0.0 and value.WhichOneof("value") != "simple_value":
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
    if base:
        for s in steps:
            s.start += base
            s.end += base
        if cur is not None:
            cur.start += base
            cur.end += base
    out.end = base + end
    out.truncated = pos < size
    out.tail = cur
    return out


def record_end(buf: bytes, at: int) -> int:
    """How long `buf` must be to hold the whole record that starts at `at` (at least its header)."""
    if len(buf) - at < 12:
        return at + 12
    length: int = _u64(buf, at)[0]
    return at + 16 + min(length, MAX_RECORD)


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
    """The message for a step: one field per tag, then `step` (which wins over a tag of that name).

    Plain JSON values as `Sender.log_checked` takes them: a NaN or infinity (a diverged loss)
    becomes None, no value (the chart skips it); the tags are UTF-8 the protobuf runtime checked."""
    fields = step.fields
    if isfinite(sum(fields.values())):  # one sum in C for the usual all-finite step
        return {**fields, "step": step.step}
    return {**{k: v if isfinite(v) else None for k, v in fields.items()}, "step": step.step}
