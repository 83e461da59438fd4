"""Failover loses nothing: a master of the cluster is SIGKILLed in the middle of a replay, its replica
is promoted, the engine carries on, and the alerts equal those of an uninterrupted run.

Each test starts a cluster of its own (a killed master leaves the session's cluster without a spare)."""

from __future__ import annotations

import threading
import time

import pytest

from command.config import Settings
from command.engine.consumer import Engine
from command.keys import ENGINE_GROUP, Keys
from command.runtime.redis_client import client
from command.scenarios.replay import run_replay
from tests.test_engine import SCENARIO, alerts_of, events_by_alert

from .cluster import start_cluster

SHARDS = 4


def _reference(r) -> str:
    res = run_replay(r, SCENARIO, run_engine=False, shards=SHARDS)
    eng = Engine(r, Keys(res.namespace), consumer="reference")
    eng.start()
    eng.drain()
    eng.release()
    return res.namespace


@pytest.mark.parametrize("victim", ["namespace", "shard"])
def test_a_master_killed_mid_replay_loses_and_doubles_nothing(tmp_path, victim):
    """`namespace`: the master of the namespace's slot (alerts, the outbox cursor) dies; `shard`: the
    master of a shard's slot (its input stream, state, lease, outbox) dies."""
    with start_cluster(tmp_path, masters=3, replicas=1, node_timeout_ms=1000) as cluster:
        settings = Settings(redis_timeout=2.0, redis_connect_timeout=0.5)
        r = client(cluster.url, "app", settings=settings)
        reference = _reference(r)
        assert len(alerts_of(r, reference)) == 40

        res = run_replay(r, SCENARIO, run_engine=False, shards=SHARDS)  # every input entry published
        keys = Keys(res.namespace)
        published = sum(r.xlen(keys.shard_stream(s)) for s in range(SHARDS))
        # the input has reached the replicas before anything is killed: the test is about the engine
        for s in range(SHARDS):
            node = r.get_node_from_key(keys.shard_stream(s))
            assert r.wait(1, 5000, target_nodes=node) == 1

        loop = client(cluster.url, "loop", settings=settings)
        engine = Engine(loop, keys, consumer="e1", batch=5, lease_ms=5000, backoff=(0.05, 0.5))
        stop = threading.Event()
        runner = threading.Thread(target=engine.run, args=(stop,), kwargs={"exit_when_idle": 3.0})
        runner.start()
        try:
            deadline = time.monotonic() + 60
            while r.zcard(keys.alerts_index) < 8 and time.monotonic() < deadline:
                time.sleep(0.01)
            done_before = r.zcard(keys.alerts_index)
            assert 8 <= done_before < 40, "the kill must land mid-replay"
            key = keys.alerts_open if victim == "namespace" else keys.shard_stream(0)
            old = cluster.master_of(key)
            cluster.kill(old)
            killed_at = time.monotonic()
            cluster.wait_ok(timeout=30)
            promoted = cluster.master_of(key)
            assert promoted.port != old.port and promoted.role == "replica"
            failover_s = time.monotonic() - killed_at
            runner.join(120)
            assert not runner.is_alive()
        finally:
            stop.set()
            runner.join(10)
        assert engine.retries >= 1  # it did meet the outage, backed off and carried on
        for s in range(SHARDS):
            assert r.xpending(keys.shard_stream(s), ENGINE_GROUP)["pending"] == 0
        assert sum(r.xlen(keys.shard_stream(s)) for s in range(SHARDS)) == published  # no input lost
        assert alerts_of(r, res.namespace) == alerts_of(r, reference)
        assert events_by_alert(r, res.namespace) == events_by_alert(r, reference)  # none lost, none doubled
        print(f"failover of the {victim} master: {failover_s:.1f} s to a promoted replica; "
              f"{done_before}/40 alerts out at the kill; {engine.retries} retries")
        r.close()
        loop.close()
