"""Input streams are trimmed only below what every consumer group acknowledged (command/streams.py)."""

from __future__ import annotations

import threading
import time

from command.engine.consumer import Engine
from command.keys import ENGINE_GROUP
from command.scenarios.load import load_scenario
from command.scenarios.namespaces import load_namespace
from command.streams import StreamWriter, ensure_group, input_count, trim_acknowledged

from .conftest import SCENARIOS

T0 = 1_784_000_000_000


def _write(r, keys, n, start=0):
    w = StreamWriter(r, keys, 1)
    for i in range(start, start + n):
        w.reading("WL-001", "water_level", T0 + i * 60_000, 20.0 + (i % 7) / 10)
    w.flush()


def _ids(r, stream):
    return [eid.decode() for eid, _ in r.xrange(stream)]


def test_a_reading_is_never_trimmed_before_every_group_acknowledged_it(r, keys):
    stream = keys.shard_stream(0)
    ensure_group(r, stream)
    ensure_group(r, stream, group="other")
    _write(r, keys, 10)
    ids = _ids(r, stream)
    assert trim_acknowledged(r, stream) == 0  # nothing delivered yet: all unread

    got = r.xreadgroup(ENGINE_GROUP, "e1", {stream: ">"}, count=10)[0][1]
    assert len(got) == 10
    r.xack(stream, ENGINE_GROUP, *ids[:6])  # 4 delivered but pending
    assert trim_acknowledged(r, stream) == 0  # the other group has read nothing
    assert _ids(r, stream) == ids

    r.xreadgroup("other", "o1", {stream: ">"}, count=10)
    assert trim_acknowledged(r, stream) == 0  # read by both, but "other" acknowledged nothing
    r.xack(stream, "other", *ids)
    assert trim_acknowledged(r, stream) == 6  # everything below the engine's oldest pending entry
    assert _ids(r, stream) == ids[6:]

    r.xack(stream, ENGINE_GROUP, *ids[6:])
    _write(r, keys, 3, start=10)  # added after: unread by both groups
    assert trim_acknowledged(r, stream) == 4
    assert len(_ids(r, stream)) == 3 and trim_acknowledged(r, stream) == 0
    assert input_count(r, keys) == 13  # the count of what was ever added survives the trimming


def test_a_stream_with_no_consumer_group_is_never_trimmed(r, keys):
    stream = keys.shard_stream(0)
    _write(r, keys, 5)
    assert trim_acknowledged(r, stream) == 0 and r.xlen(stream) == 5


def test_a_recording_group_keeps_what_it_has_not_read_while_the_engine_trims(r, keys):
    stream = keys.shard_stream(0)
    ensure_group(r, stream)
    ensure_group(r, stream, group="record")  # feeds/record.py holds one while it records
    _write(r, keys, 20)
    r.xreadgroup(ENGINE_GROUP, "e1", {stream: ">"}, count=100)
    r.xack(stream, ENGINE_GROUP, *_ids(r, stream))
    assert trim_acknowledged(r, stream) == 0 and r.xlen(stream) == 20


def test_a_running_engine_keeps_its_input_stream_bounded_over_a_long_replay(r, keys):
    """200 batches of 250 readings while the engine runs and trims: the stream never holds more than a
    few batches, nothing is lost (every reading processed), and the count of entries added is exact."""
    sc = load_scenario(SCENARIOS / "jiangcheng_flood")
    load_namespace(r, keys, sc, shards=1)
    stream = keys.shard_stream(0)
    ensure_group(r, stream)
    eng = Engine(r, keys, consumer="trim", batch=500, block_ms=10, trim_every_s=0.02)
    stop = threading.Event()
    th = threading.Thread(target=eng.run, args=(stop,), daemon=True)
    th.start()
    batches, per = 200, 250
    longest = 0
    try:
        for b in range(batches):
            _write(r, keys, per, start=b * per)
            longest = max(longest, r.xlen(stream))
            time.sleep(0.005)
        deadline = time.monotonic() + 30
        while eng.processed < batches * per and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.1)
        eng.trim_inputs()
    finally:
        stop.set()
        th.join(10)
    assert eng.processed == batches * per
    assert input_count(r, keys) == batches * per
    assert r.xpending(stream, ENGINE_GROUP)["pending"] == 0
    assert r.xlen(stream) == 0
    assert eng.trimmed == batches * per
    assert longest <= 20 * per, longest  # bounded by the engine's lag, not by the history (50,000)
