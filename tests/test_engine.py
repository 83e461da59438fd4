"""The engine consumer on a real Redis: crash and reclaim, shards shared by several engines, fencing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import orjson
import pytest

from command.engine.consumer import Engine
from command.keys import ENGINE_GROUP, Keys
from command.publish.report import collect_alerts, collect_recommendations
from command.scenarios.replay import run_replay

from .conftest import ROOT, SCENARIOS

SCENARIO = SCENARIOS / "jiangcheng_flood"
VOLATILE = ("updated_at",)


def alerts_of(r, ns):
    out = []
    for a in collect_alerts(r, Keys(ns)):
        out.append({k: v for k, v in a.items() if k not in VOLATILE})
    return sorted(out, key=lambda a: a["fingerprint"])


def recs_of(r, ns):
    """The units recommended in the end to each alert (its last recommendation, the one operators
    see), and every entry made twice. Units are planned over all open alerts once per instant
    (docs/dispatch.md): a batch that ends between two alerts of one instant adds a passing entry,
    never a different outcome."""
    last, seen, twice = {}, set(), []
    for rec in collect_recommendations(r, Keys(ns)):
        ids = tuple(i["resource_id"] for i in rec["items"])
        last[rec["fingerprint"]] = ids
        entry = (rec["fingerprint"], rec["level"], rec["created_at"], ids)
        if entry in seen:
            twice.append(entry)
        seen.add(entry)
    return sorted(last.items()), twice


def events_by_alert(r, ns):
    """Each alert's lifecycle events in order (the order across shards may interleave)."""
    out: dict[str, list] = {}
    for _, f in r.xrange(Keys(ns).alerts_stream):
        a = orjson.loads(f[b"alert"])
        out.setdefault(a["fingerprint"], []).append((f[b"event"], a["level"]))
    return out


def start_engine(cli_env, ns, *extra):
    return subprocess.Popen([sys.executable, "-m", "command", "engine", "--namespace", ns,
                             "--exit-when-idle", "2", *extra],
                            cwd=ROOT, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def acked(r, keys, shard=0):
    stream = keys.shard_stream(shard)
    length = r.xlen(stream)
    pending = r.xpending(stream, ENGINE_GROUP)["pending"]
    info = [g for g in r.xinfo_groups(stream) if g["name"] == ENGINE_GROUP.encode()]
    delivered = info[0]["last-delivered-id"] if info else b"0-0"
    return length, pending, delivered


@pytest.fixture
def reference(r):
    """The alerts of an uninterrupted engine over the whole scenario published first (as the engines
    under test see it: recommendations depend on the units' status, which injects change)."""
    res = run_replay(r, SCENARIO, run_engine=False)
    eng = Engine(r, Keys(res.namespace), consumer="reference")
    eng.start()
    eng.drain()
    eng.release()
    return res.namespace


def _kill_while_pending(r, cli_env, ns) -> bool:
    """Start an engine, freeze it (SIGSTOP) at a moment it holds an uncommitted batch well into the
    stream, then SIGKILL it. False if it finished before such a moment was caught."""
    keys = Keys(ns)
    proc = start_engine(cli_env, ns, "--batch", "5")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            _, pending, _ = acked(r, keys)
            if pending and r.zcard(keys.alerts_index) >= 5:
                proc.send_signal(signal.SIGSTOP)
                if acked(r, keys)[1]:  # still pending now that it cannot move: a real mid-batch kill
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(10)
                    return True
                proc.send_signal(signal.SIGCONT)
            time.sleep(0.001)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_sigkill_mid_replay_neither_loses_nor_doubles(r, cli_env, reference):
    for _ in range(5):
        res = run_replay(r, SCENARIO, run_engine=False)
        if _kill_while_pending(r, cli_env, res.namespace):
            break
    else:
        pytest.fail("no kill landed while a batch was pending")
    keys = Keys(res.namespace)
    stream = keys.shard_stream(0)
    assert r.xpending(stream, ENGINE_GROUP)["pending"] > 0
    assert r.zcard(keys.alerts_index) < 40  # mid-replay: not all alerts were out yet
    assert r.get(keys.shard_lease(0)) is not None  # the dead engine's lease is still there...
    r.delete(keys.shard_lease(0))  # ...until it expires; expire it now rather than wait 10 s
    proc = start_engine(cli_env, res.namespace)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert r.xpending(stream, ENGINE_GROUP)["pending"] == 0
    assert alerts_of(r, res.namespace) == alerts_of(r, reference)
    assert recs_of(r, res.namespace) == recs_of(r, reference)
    assert events_by_alert(r, res.namespace) == events_by_alert(r, reference)
    assert len(alerts_of(r, reference)) == 40


def test_four_shards_shared_by_two_engines(r, cli_env, reference):
    res = run_replay(r, SCENARIO, run_engine=False, shards=4)
    keys = Keys(res.namespace)
    assert sum(r.xlen(keys.shard_stream(s)) for s in range(4)) > 0
    procs = [start_engine(cli_env, res.namespace, "--max-shards", "2", "--consumer", f"e{i}") for i in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    owned = [o[0].split("shards ")[1].split(" of")[0] for o in outs]
    # each engine took two whole shards, and no shard twice
    shards = sorted(int(s) for o in owned for s in o.strip("[]").split(", "))
    assert shards == [0, 1, 2, 3]
    assert alerts_of(r, res.namespace) == alerts_of(r, reference)
    assert events_by_alert(r, res.namespace) == events_by_alert(r, reference)


def test_an_engine_that_lost_its_lease_writes_nothing(r):
    res = run_replay(r, SCENARIOS / "rule_threshold", run_engine=False)
    keys = Keys(res.namespace)
    eng = Engine(r, keys, consumer="a", batch=5)
    eng.start()
    assert 0 in eng.shards
    # another engine took over while "a" was paused, between its last lease check and its commit
    r.set(keys.shard_lease(0), "b")
    eng._last_lease_check = time.monotonic()
    assert eng.poll() == 0
    assert 0 not in eng.shards
    assert r.zcard(keys.alerts_index) == 0
    assert r.xpending(keys.shard_stream(0), ENGINE_GROUP)["pending"] == 5  # left for "b" to reclaim
    other = Engine(r, keys, consumer="b")
    other.start()
    other.drain()
    assert r.zcard(keys.alerts_index) == 2
    assert r.xpending(keys.shard_stream(0), ENGINE_GROUP)["pending"] == 0


def test_a_second_engine_waits_for_a_held_shard(r):
    res = run_replay(r, SCENARIOS / "rule_threshold", run_engine=False)
    keys = Keys(res.namespace)
    a = Engine(r, keys, consumer="a")
    a.start()
    b = Engine(r, keys, consumer="b")
    b.start()
    assert list(a.shards) == [0] and list(b.shards) == []
    a.drain()
    a.release()  # a clean stop hands the shard over at once
    b._last_lease_check = 0
    b.poll()
    assert list(b.shards) == [0]


def test_state_lives_in_redis_so_a_new_engine_resumes(r):
    """Process half the stream, stop, and let a brand-new engine finish: the same alerts."""
    ref = run_replay(r, SCENARIOS / "rule_threshold")
    res = run_replay(r, SCENARIOS / "rule_threshold", run_engine=False)
    keys = Keys(res.namespace)
    first = Engine(r, keys, consumer="first", batch=20)
    first.start()
    first.poll()
    first.release()
    assert 0 < r.xlen(keys.shard_stream(0)) - 20
    second = Engine(r, keys, consumer="second", batch=20)
    second.start()
    second.drain()
    assert alerts_of(r, res.namespace) == alerts_of(r, ref.namespace)


def test_live_ticks_evaluate_staleness_with_no_readings(r):
    """In live mode the engine's own clock ticks open a silence alert with no reading arriving."""
    res = run_replay(r, SCENARIOS / "rule_stale", run_engine=False)
    keys = Keys(res.namespace)
    r.delete(keys.shard_stream(0))  # no scenario data at all: only the live clock
    start = 1_900_000_000_000
    now = [start]
    eng = Engine(r, keys, consumer="live", live_tick_s=0.0, clock=lambda: now[0])
    eng.start()
    eng.poll()
    assert r.zcard(keys.alerts_open) == 0
    now[0] = start + 61 * 60_000
    eng.poll()
    eng.poll()
    assert r.zcard(keys.alerts_open) == 2  # WL-A and WL-F, both silent for an hour
    assert int(r.get(keys.clock)) == now[0]


def test_reclaim_happens_before_new_entries(r):
    """Entries left pending by a dead consumer are processed first, in order."""
    res = run_replay(r, SCENARIOS / "rule_threshold", run_engine=False)
    keys = Keys(res.namespace)
    stream = keys.shard_stream(0)
    r.xreadgroup(ENGINE_GROUP, "dead", {stream: ">"}, count=7)  # delivered to a consumer that then died
    eng = Engine(r, keys, consumer="new", batch=1000)
    eng.start()
    eng.drain()
    assert r.xpending(stream, ENGINE_GROUP)["pending"] == 0
    assert r.zcard(keys.alerts_index) == 2


def test_results_do_not_depend_on_the_batch_size(r):
    """An alert that changes after a lifecycle event in the same batch is stored in its newest state."""
    one = run_replay(r, SCENARIOS / "rule_stale", batch=1)
    big = run_replay(r, SCENARIOS / "rule_stale", batch=1000)
    assert alerts_of(r, one.namespace) == alerts_of(r, big.namespace)
    wlf = [a for a in alerts_of(r, big.namespace) if a["subject"] == "WL-F"][0]
    assert wlf["peak_value"] == 240.0  # silent from 00:00 to the end at 04:00


def test_run_is_the_one_loop_it_stops_when_idle_and_gives_its_shards_back(r):
    """`Engine.run` (the loop `python -m command engine` runs): started callback, work, idle exit, release."""
    import threading

    ref = run_replay(r, SCENARIOS / "rule_threshold")
    res = run_replay(r, SCENARIOS / "rule_threshold", run_engine=False)
    keys = Keys(res.namespace)
    eng = Engine(r, keys, consumer="batch", block_ms=10)
    seen = []
    t0 = time.monotonic()
    eng.run(threading.Event(), exit_when_idle=0.3, on_start=lambda e: seen.append(sorted(e.shards)))
    assert time.monotonic() - t0 < 10
    assert seen == [[0]]
    assert alerts_of(r, res.namespace) == alerts_of(r, ref.namespace)
    assert eng.shards == {} and r.get(keys.shard_lease(0)) is None  # a clean stop hands the shard over
    stop = threading.Event()
    stop.set()
    eng.run(stop)  # told to stop: returns at once, nothing left held
    assert r.get(keys.shard_lease(0)) is None
