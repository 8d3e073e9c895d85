"""The event-file core without I/O: records -> steps, cuts, damage, and run names -> channels."""

from __future__ import annotations

import random
from itertools import pairwise
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from tbsupport import event_file, write_steps, writer
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboardX.record_writer import RecordWriter

from pulseboard.protocol import check_channel
from pulseboard.tbevents import Parsed, Step, message, parse, run_channel


def closed_file(tmp_path: Path, steps: range, extras: bool = False) -> tuple[bytes, dict[int, dict[str, float]]]:
    w = writer(tmp_path / "run")
    expected = write_steps(w, steps, extras=extras)
    w.close()
    return event_file(tmp_path / "run").read_bytes(), expected


def every(p: Parsed) -> list[Step]:
    """The whole steps and the tail, in order."""
    return [*p.steps, *([p.tail] if p.tail is not None else [])]


def fields(steps: list[Step]) -> dict[int, dict[str, float]]:
    return {s.step: s.fields for s in steps}


def test_one_step_per_message_values_as_written_and_other_kinds_counted(tmp_path: Path) -> None:
    buf, expected = closed_file(tmp_path, range(20), extras=True)
    p = parse(buf)
    assert not p.truncated and not p.damaged and p.end == len(buf)
    assert p.tail is not None
    steps = [*p.steps, p.tail]
    assert [s.step for s in steps] == list(range(20))
    assert fields(steps) == expected
    assert p.skipped == {"histograms": 20, "images": 20, "text": 20}
    assert all(a.end <= b.start for a, b in pairwise(steps))
    # read again from the start with `seen` past everything: nothing is counted twice
    assert parse(buf, seen=len(buf)).skipped == {}


def test_reading_in_pieces_with_cuts_gives_the_same_steps_as_a_replay(tmp_path: Path) -> None:
    """What the watcher does: read what is there, end the last step by waiting (a cut), go on
    from there later. A replay of the whole file with those cuts must make the same steps
    (same first offsets: the idempotency keys), and every value exactly once."""
    buf, expected = closed_file(tmp_path, range(30))
    rng = random.Random(7)
    for k in sorted(rng.sample(range(1, len(buf)), 40)):
        sent: list[Step] = []
        cuts: list[int] = []
        first = parse(buf[:k])
        sent += first.steps
        if first.tail is not None:
            sent.append(first.tail)
            cuts.append(first.tail.end)
        rest = parse(buf[first.end:], first.end, cuts)
        sent += rest.steps + ([rest.tail] if rest.tail else [])
        replay = parse(buf, 0, cuts)
        assert [(s.start, s.fields) for s in sent] == [(s.start, s.fields) for s in every(replay)]
        merged: dict[int, dict[str, float]] = {}
        for s in sent:
            assert not set(merged.get(s.step, {})) & set(s.fields)
            merged.setdefault(s.step, {}).update(s.fields)
        assert merged == expected


def test_a_damaged_record_is_reported_once_and_skipped(tmp_path: Path) -> None:
    buf, expected = closed_file(tmp_path, range(10))
    whole = parse(buf)
    victim = every(whole)[4]
    bad = bytearray(buf)
    bad[victim.start + 14] ^= 0xFF  # inside the payload of step 4's first record: its checksum fails
    p = parse(bytes(bad))
    assert [off for off, _ in p.damaged] == [victim.start]
    assert "checksum" in p.damaged[0][1]
    got = fields(every(p))
    assert got[4] == {k: v for k, v in expected[4].items() if k != "train/m0"}
    assert {s: f for s, f in got.items() if s != 4} == {s: f for s, f in expected.items() if s != 4}
    assert parse(bytes(bad), seen=len(bad)).damaged == []  # read again: not reported again


def test_a_bad_length_is_skipped_up_to_the_next_record(tmp_path: Path) -> None:
    buf, expected = closed_file(tmp_path, range(10))
    whole = parse(buf)
    victim = every(whole)[6]
    bad = bytearray(buf)
    bad[victim.start + 2] ^= 0x40  # the length's checksum fails: where does the next record start?
    p = parse(bytes(bad))
    assert len(p.damaged) == 1 and "header" in p.damaged[0][1]
    got = fields(every(p))
    assert got[6] == {k: v for k, v in expected[6].items() if k != "train/m0"}
    assert got[9] == expected[9] and p.end == len(buf)


def test_a_truncated_last_record_ends_the_read_before_it(tmp_path: Path) -> None:
    buf, expected = closed_file(tmp_path, range(5))
    p = parse(buf[:-3])
    assert p.truncated and not p.damaged
    assert p.tail is not None and p.tail.step == 4 and "train/m2" not in p.tail.fields
    assert p.resume == p.tail.start
    assert fields(p.steps) == {s: expected[s] for s in range(4)}


def test_tf2_tensor_scalars_are_scalars_and_other_tensors_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "events.out.tfevents.1.host"
    rw = RecordWriter(str(path))

    def tensor_event(step: int, tag: str, plugin: str, t: TensorProto) -> bytes:
        meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=plugin))
        event = Event(step=step, wall_time=100.0 + step,
                     summary=Summary(value=[Summary.Value(tag=tag, metadata=meta, tensor=t)]))
        return bytes(event.SerializeToString())

    rw.write(Event(wall_time=1.0, file_version="brain.Event:2").SerializeToString())
    rw.write(tensor_event(1, "loss", "scalars", TensorProto(dtype=1, float_val=[0.25])))
    rw.write(tensor_event(1, "lr", "scalars", TensorProto(dtype=2, double_val=[1e-3])))
    rw.write(tensor_event(1, "note", "text", TensorProto(dtype=7, string_val=[b"hi"])))
    rw.write(tensor_event(2, "loss", "scalars", TensorProto(dtype=1, tensor_content=b"\x00\x00\x80\x3e")))
    rw.close()
    p = parse(path.read_bytes())
    assert [(s.step, s.ts, s.fields) for s in [*p.steps, p.tail]] == [  # type: ignore[union-attr]
        (1, 101.0, {"loss": 0.25, "lr": 1e-3}), (2, 102.0, {"loss": 0.25})]
    assert p.skipped == {"text": 1}


def test_run_channels() -> None:
    assert run_channel("tb", "") == "tb"
    assert run_channel("tb", "version_0") == "tb.version_0"
    assert run_channel("tb", "exp1/lr-3") == "tb.exp1.lr-3"
    assert run_channel("tb", "a.b") == "tb.a:2eb"
    assert run_channel("tb", "a/b") == "tb.a.b"
    assert run_channel("tb", "Dec06_10-00-00 my run") == "tb.Dec06_10-00-00:20my:20run"
    assert run_channel("tb", "ü:x") == "tb.:c3:bc:3ax"
    long = run_channel("tb", "x" * 300)
    assert len(long) == 200 and "::" in long and long != run_channel("tb", "x" * 301)


segment = st.text(st.characters(codec="utf-8", exclude_characters="/\x00"), min_size=1, max_size=30).filter(
    lambda s: s != ".")


@given(st.lists(st.lists(segment, min_size=1, max_size=4), min_size=2, max_size=6, unique_by=tuple))
def test_run_channels_never_collide_and_are_valid(runs: list[list[str]]) -> None:
    names = [run_channel("tb", "/".join(r)) for r in runs]
    assert len(set(names)) == len(names)
    for n in names:
        check_channel(n)


def test_a_damaged_length_checksum_before_an_intact_record_loses_nothing(tmp_path: Path) -> None:
    """The length's own checksum is checked only when the payload's fails (the watcher's hot
    path): a payload whose checksum holds over the span the length gives vouches for both."""
    buf, expected = closed_file(tmp_path, range(10))
    victim = every(parse(buf))[3]
    bad = bytearray(buf)
    bad[victim.start + 9] ^= 0xFF  # a byte of the length's checksum; length and payload intact
    p = parse(bytes(bad))
    assert p.damaged == [] and fields(every(p)) == expected


def test_a_nan_or_infinite_value_is_a_gap_in_the_message() -> None:
    step = Step(0, 10, 3, 1.5, {"loss": float("nan"), "grad": float("inf"), "lr": 0.5})
    assert message(step) == {"loss": None, "grad": None, "lr": 0.5, "step": 3}
    assert message(Step(0, 10, 4, 1.5, {"lr": 0.25})) == {"lr": 0.25, "step": 4}
