"""The engine reads its next batch ahead (command/engine/slots.py `ReadAhead`) while it evaluates and
commits the current one: the same outputs as reading one batch at a time, nothing lost or doubled
when an engine stops or fails with a read ahead in flight, and nothing read for a lost shard."""

from __future__ import annotations

import orjson
import pytest

from command.engine import slots
from command.engine.consumer import Engine
from command.keys import ENGINE_GROUP, Keys
from command.scenarios.replay import run_replay

from .conftest import SCENARIOS
from .test_engine import alerts_of, events_by_alert, recs_of

SCENARIO = SCENARIOS / "jiangcheng_flood"


def _outputs(r, ns):
    keys = Keys(ns)
    recs = [orjson.loads(f[b"recommendation"]) for _, f in r.xrange(keys.recommendations_stream)]
    return alerts_of(r, ns), events_by_alert(r, ns), recs_of(r, ns), recs


def _published(r, shards=1):
    return Keys(run_replay(r, SCENARIO, run_engine=False, shards=shards).namespace)


def _pending(r, keys, shards=1):
    return sum(r.xpending(keys.shard_stream(s), ENGINE_GROUP)["pending"] for s in range(shards))


@pytest.mark.parametrize("shards", [1, 3])
def test_reading_ahead_changes_no_output(r, shards):
    outs = []
    for read_ahead in (False, True):
        keys = _published(r, shards)
        eng = Engine(r, keys, consumer="e", batch=37, read_ahead=read_ahead)
        eng.start()
        n = eng.drain()
        eng.release()
        assert n > 37 * 3  # several full batches: reads ahead happened
        assert _pending(r, keys, shards) == 0
        outs.append(_outputs(r, keys.ns))
    assert outs[0] == outs[1]
    assert outs[0][0]  # alerts came out


def test_a_full_batch_reads_the_next_one_ahead(r):
    keys = _published(r)
    eng = Engine(r, keys, consumer="e", batch=20)
    eng.start()
    assert eng.poll() == 20
    assert eng._ahead is not None
    # the next batch is delivered (pending) but not acknowledged, the first one is
    assert _pending(r, keys) == 20
    assert eng.poll() == 20
    eng.release()
    assert eng._ahead is None


@pytest.mark.parametrize("stop", ["release", "forget"])
def test_stopping_with_a_read_ahead_in_flight_loses_nothing(r, stop):
    ref = _published(r)
    eng = Engine(r, ref, consumer="ref", batch=20)
    eng.start()
    eng.drain()
    eng.release()

    keys = _published(r)
    first = Engine(r, keys, consumer="first", batch=20)
    first.start()
    first.poll()
    assert first._ahead is not None
    if stop == "release":  # a clean stop: the next engine reclaims what the read ahead delivered
        first.release()
        nxt = Engine(r, keys, consumer="second", batch=20)
        nxt.start()
    else:  # an error mid-batch: the same engine takes its shards again and reclaims first
        first.forget()
        assert first._ahead is None
        nxt = first
    nxt.drain()
    nxt.release()
    assert _pending(r, keys) == 0
    assert alerts_of(r, keys.ns) == alerts_of(r, ref.ns)
    assert events_by_alert(r, keys.ns) == events_by_alert(r, ref.ns)


def test_a_read_ahead_for_a_lost_shard_reads_nothing(r):
    keys = _published(r)
    eng = Engine(r, keys, consumer="a", batch=20)
    eng.start()
    leases = {keys.shard_stream(0): keys.shard_lease(0)}
    r.set(keys.shard_lease(0), "b")  # another engine holds the shard now
    ahead = slots.ReadAhead(r, "a", leases, 20)
    assert ahead.result() == []
    assert _pending(r, keys) == 0
    assert r.xlen(keys.shard_stream(0)) > 0  # there was something to read
    r.set(keys.shard_lease(0), "a")
    ahead = slots.ReadAhead(r, "a", leases, 20)  # ours again: it reads
    assert len(ahead.result()[0][1]) == 20
    eng.release()


def test_a_discarded_read_ahead_leaves_the_connection_pool_usable(r):
    keys = _published(r)
    r.set(keys.shard_lease(0), "a")
    ahead = slots.ReadAhead(r, "a", {keys.shard_stream(0): keys.shard_lease(0)}, 5)
    ahead.discard()
    ahead.discard()  # twice: harmless
    assert ahead.result() == []
    assert r.ping()
    r.delete(keys.shard_lease(0))
