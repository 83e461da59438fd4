"""The drill runner, driven through Redis exactly as the exercise page drives it."""

from __future__ import annotations

import orjson

from command.keys import Keys
from command.ops import drills

from .conftest import SCENARIOS


def run_until(runner, cond, steps=2000):
    for _ in range(steps):
        runner.step(block_ms=1)
        if cond():
            return
    raise AssertionError("the runner never got there")


def test_start_pause_inject_resume_finish(r):
    runner = drills.DrillRunner(r)
    ns = drills.start_drill(r, SCENARIOS / "rule_zone_incident", "36000", by="planner")
    keys = Keys(ns)
    run_until(runner, lambda: drills.drill_state(r, ns).get("status") == "running")
    assert drills.is_drill(r, ns) and r.hget(keys.meta, "mode") == b"exercise"
    drills.send(r, "pause", ns=ns, by="planner")
    run_until(runner, lambda: drills.drill_state(r, ns).get("paused") == "1")
    clock = drills.drill_state(r, ns)["clock"]
    for _ in range(20):
        runner.step(block_ms=1)
    assert drills.drill_state(r, ns)["clock"] == clock
    # inject a levee breach inside the high-risk zone, and a breakdown
    drills.send(r, "inject", ns=ns, type="incident", by="planner",
                data={"incident_id": "X-1", "category": "levee_breach", "lat": 30.05, "lon": 114.02})
    drills.send(r, "inject", ns=ns, type="resource_status", by="planner", data={"resource_id": "B2", "status": "out_of_service"})
    drills.send(r, "inject", ns=ns, type="resource_status", by="planner", data={"resource_id": "NOPE", "status": "out_of_service"})
    drills.send(r, "resume", ns=ns, by="planner")
    run_until(runner, lambda: drills.drill_state(r, ns).get("status") is None or ns not in runner.active)
    assert drills.drill_state(r, ns)["status"] == "finished"
    assert orjson.loads(r.hget(drills.DRILLS, ns))["status"] == "finished"
    subjects = {orjson.loads(r.get(keys.alert(fp.decode())))["subject"] for fp in r.zrange(keys.alerts_index, 0, -1)}
    assert {"I1", "I4", "INJ-1", "X-1"} <= subjects  # the injected breach opened an alert like any other
    assert orjson.loads(r.hget(keys.resources, "B2"))["status"] == "out_of_service"
    events = [f[b"type"] for _, f in r.xrange(keys.events)]
    assert events.count(b"incident") >= 2 and b"resource_status" in events
    assert r.zcard(Keys("live").alerts_index) == 0  # nothing leaked into live


def test_a_bad_scenario_fails_the_drill_with_a_reason(r, tmp_path):
    runner = drills.DrillRunner(r)
    (tmp_path / "scenario.yaml").write_text("name: x\n")
    ns = drills.start_drill(r, tmp_path, "60", by="planner")
    runner.step(block_ms=1)
    rec = orjson.loads(r.hget(drills.DRILLS, ns))
    assert rec["status"] == "failed" and "missing `start`" in rec["error"]


def test_a_restarted_runner_does_not_replay_old_commands(r):
    first = drills.DrillRunner(r)
    ns = drills.start_drill(r, SCENARIOS / "rule_accumulation", "max", by="planner")
    run_until(first, lambda: ns in first.active or drills.drill_state(r, ns).get("status") == "finished")
    second = drills.DrillRunner(r)
    second.step(block_ms=1)
    assert ns not in second.active  # the start command was handled once, by the first runner


def _writes_to(r, keys_of_interest: set[str], runner, seconds: float) -> list[str]:
    """The commands that touched `keys_of_interest` while `runner` stepped for `seconds` (via MONITOR)."""
    import time

    seen = []
    with r.monitor() as m:
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            runner.step()
        r.set("monitor-end-marker", 1)
        for cmd in m.listen():
            words = [w.strip('"') for w in cmd["command"].split()]
            if words[:2] == ["SET", "monitor-end-marker"]:
                break
            if len(words) > 1 and words[1] in keys_of_interest:
                seen.append(" ".join(words[:2]))
    r.delete("monitor-end-marker")
    return seen


def test_drill_state_is_written_only_when_it_changed(r):
    runner = drills.DrillRunner(r)
    ns = drills.start_drill(r, SCENARIOS / "rule_zone_incident", "60", by="planner")
    keys = Keys(ns)
    run_until(runner, lambda: drills.drill_state(r, ns).get("status") == "running")
    drills.send(r, "pause", ns=ns, by="planner")
    run_until(runner, lambda: drills.drill_state(r, ns).get("paused") == "1")
    # paused for 2 s (about 20 steps): neither its replay state nor its clock is written again
    assert _writes_to(r, {keys.replay_control, keys.clock}, runner, 2.0) == []
    assert drills.drill_state(r, ns)["status"] == "paused"
    # running (fast), the clock and the replay state still move on
    clock, published = int(r.get(keys.clock)), int(drills.drill_state(r, ns)["published"])
    drills.send(r, "speed", ns=ns, speed="36000", by="planner")
    drills.send(r, "resume", ns=ns, by="planner")
    run_until(runner, lambda: int(r.get(keys.clock)) > clock)
    st = drills.drill_state(r, ns)
    assert int(st["published"]) > published and st["speed"] == "36000" and st["paused"] == "0"
    assert int(st["clock"]) > clock
