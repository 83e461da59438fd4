"""Checking that the work worked, through the real engine (Redis): a department's `completed` on a
station's alert is watched by the engine's commit, which reopens the task when the water keeps
rising and marks it verified when the station falls back below its levels (docs/dispatch.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from command.engine.consumer import Engine
from command.keys import Keys
from command.models import Task
from command.ops.dispatch import update_task
from command.scenarios.actions import collect_tasks
from command.scenarios.replay import run_replay
from command.trust import audit

from .conftest import SCENARIOS

TINY = SCENARIOS / "tiny_common"
# WL-A: yellow 2.0, orange 2.5, red 3.0 m (tiny_common/stations.geojson)
LEVELS = ["00:00 1.5", "00:15 2.1", "00:30 2.2", "00:45 2.2", "01:00 2.2", "01:15 2.22", "01:30 2.35",
          "01:45 2.3", "02:00 2.2", "02:15 1.9", "02:30 1.8"]
ACTIONS = [
    {"at": "20m", "type": "dispatch", "rule": "river-stage", "subject": "WL-A"},
    {"at": "30m", "type": "task_status", "rule": "river-stage", "subject": "WL-A", "department": "water_authority",
     "status": "on_scene"},
    {"at": "50m", "type": "task_status", "rule": "river-stage", "subject": "WL-A", "department": "water_authority",
     "status": "completed", "note": "pumping done"},
    # reopened at 01:30 (2.35 m is 0.15 m above the 2.2 m at completion); worked on again
    {"at": "1h40m", "type": "task_status", "rule": "river-stage", "subject": "WL-A", "department": "water_authority",
     "status": "en_route", "note": "back again"},
    {"at": "1h55m", "type": "task_status", "rule": "river-stage", "subject": "WL-A", "department": "water_authority",
     "status": "completed"},
]


def scenario(folder: Path, actions=ACTIONS, rule_extra: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rule = {"id": "river-stage", "kind": "threshold", "match": {"kind": "water_level"}, "above": "thresholds",
            "recommend": [{"type": "pump", "count": 2}], "verify_rise": 0.1, **(rule_extra or {})}
    (folder / "rules.yaml").write_text(yaml.safe_dump({"levels": ["yellow", "orange", "red"], "rules": [rule]}))
    rows = ["time,station_id,kind,value,unit"] + [
        f"2026-07-01T{x.split()[0]}:00+08:00,WL-A,water_level,{x.split()[1]},m" for x in LEVELS]
    (folder / "readings.csv").write_text("\n".join(rows) + "\n")
    (folder / "scenario.yaml").write_text(yaml.safe_dump({
        "name": "verify", "start": "2026-07-01T00:00:00+08:00", "timezone": "Asia/Shanghai",
        "stations": str(TINY / "stations.geojson"), "zones": str(TINY / "zones.geojson"),
        "resources": str(TINY / "resources.csv"), "rules": "rules.yaml", "actions": actions}))
    return folder


def task_of(r, keys: Keys, department="water_authority") -> Task:
    ids = [i.decode() for i in r.zrange(keys.department_tasks(department), 0, -1)]
    assert len(ids) == 1
    return Task.model_validate_json(r.get(keys.task(ids[0])))


@pytest.fixture
def replayed(r, tmp_path):
    res = run_replay(r, scenario(tmp_path / "verify"), batch=3)
    return r, Keys(res.namespace)


def test_a_rise_after_completion_reopens_the_task_with_its_reason(replayed):
    r, keys = replayed
    task = task_of(r, keys)
    steps = [(h.status, h.by, h.note) for h in task.history]
    reason = "sensors disagree: WL-A rose 0.15 m in 40 min after completion"
    assert steps[:4] == [("on_scene", "scripted", ""), ("completed", "scripted", "pumping done"),
                         ("reopened", "verification", reason), ("en_route", "scripted", "back again")]
    reopened = task.history[2]
    assert reopened.at == keys_time("01:30")  # the reading that rose, on the scenario's clock


def keys_time(hhmm: str) -> int:
    from command.timeutil import parse_time

    return parse_time(f"2026-07-01T{hhmm}:00+08:00")


def test_falling_below_the_levels_after_the_second_completion_verifies_it(replayed):
    r, keys = replayed
    task = task_of(r, keys)
    assert task.status == "completed" and task.flagged is None  # the department's answer cleared the flag
    last = task.history[-1]
    assert (last.status, last.by, last.at) == ("verified", "verification", keys_time("02:15"))
    assert last.note == "WL-A fell below its levels 20 min after completion"
    assert r.hlen(keys.verify_watch) == 0  # nothing left to watch
    # the audit trail records both, as done by the verification
    acts = [e["action"] for e in reversed(audit.entries(r, keys)) if e["who"] == "verification"]
    assert acts == ["task_reopened", "task_verified"]


def test_tasks_jsonl_carries_the_reopening(replayed, tmp_path):
    r, keys = replayed
    rows = collect_tasks(r, keys, "Asia/Shanghai")
    mine = [t for t in rows if t["department"] == "water_authority"]
    hist = mine[0]["history"]
    assert {"status": "reopened", "at": "2026-07-01T01:30:00+08:00", "by": "verification",
            "note": "sensors disagree: WL-A rose 0.15 m in 40 min after completion"} in hist
    json.dumps(rows)  # as written to tasks.jsonl


def test_the_outcome_does_not_depend_on_the_batch_size(replayed, tmp_path):
    r, keys = replayed
    big = run_replay(r, scenario(tmp_path / "big"), batch=5000)

    def hist(k):
        return [(h.status, h.by, h.at, h.note) for h in task_of(r, k).history]

    assert hist(Keys(big.namespace)) == hist(keys)


def test_an_escalation_reopens_the_task(r, tmp_path):
    # no rise threshold reached (verify_rise 1 m) but the alert goes from yellow to orange
    levels = [("00:00", 1.5), ("00:15", 2.1), ("00:30", 2.2), ("00:45", 2.2), ("01:00", 2.4), ("01:15", 2.6)]
    folder = scenario(tmp_path / "esc", ACTIONS[:3], {"verify_rise": 1.0})
    rows = ["time,station_id,kind,value,unit"] + [f"2026-07-01T{t}:00+08:00,WL-A,water_level,{v},m" for t, v in levels]
    (folder / "readings.csv").write_text("\n".join(rows) + "\n")
    keys = Keys(run_replay(r, folder).namespace)
    task = task_of(r, keys)
    assert task.status == "reopened"
    assert task.history[-1].note == "the alert on WL-A escalated 25 min after completion"
    assert task.flagged == task.history[-1].note


def test_past_the_window_nothing_is_decided(r, tmp_path):
    # verify_within 20m: the rise at 01:30 comes 40 min after completion, too late to reopen
    folder = scenario(tmp_path / "late", ACTIONS[:3], {"verify_within": "20m"})
    keys = Keys(run_replay(r, folder).namespace)
    task = task_of(r, keys)
    assert task.status == "completed" and [h.status for h in task.history] == ["on_scene", "completed"]
    assert r.hlen(keys.verify_watch) == 0


def test_a_batch_re_processed_after_a_crash_reopens_once(r, tmp_path):
    """The readings after completion are delivered to an engine that dies before its commit; the
    next engine re-processes them (XAUTOCLAIM) and reopens the task exactly once."""
    folder = scenario(tmp_path / "crash", ACTIONS[:3])
    rows = (folder / "readings.csv").read_text().splitlines()
    (folder / "readings.csv").write_text("\n".join(rows[:5]) + "\n")  # up to 00:45: completion at 00:50
    keys = Keys(run_replay(r, folder).namespace)
    task = task_of(r, keys)
    assert task.status == "completed" and r.hlen(keys.verify_watch) == 1
    from command.streams import StreamWriter
    from command.timeutil import parse_time

    w = StreamWriter(r, keys, 1)
    for hhmm, v in (("01:00", 2.2), ("01:15", 2.22), ("01:30", 2.35)):
        w.reading("WL-A", "water_level", parse_time(f"2026-07-01T{hhmm}:00+08:00"), v)
    w.flush()
    # a consumer takes the batch and dies before committing
    stream = keys.shard_stream(0)
    got = r.xreadgroup("engine", "dead", {stream: ">"}, count=100)
    assert got and len(got[0][1]) == 3
    for _ in range(2):  # two engines in turn: the first commits, the second finds nothing pending
        eng = Engine(r, keys, consumer="next", batch=100)
        eng.start()
        eng.drain()
        eng.release()
    task = Task.model_validate_json(r.get(keys.task(task.id)))
    assert [h.status for h in task.history].count("reopened") == 1 and task.status == "reopened"
    assert r.xrevrange(keys.status_stream, count=1)[0][1][b"status"] == b"reopened"


def test_a_department_cannot_reopen_or_assign_a_task_itself(replayed):
    from command.errors import InvalidInput

    r, keys = replayed
    task = task_of(r, keys)
    for status in ("reopened", "assigned", "verified"):
        with pytest.raises(InvalidInput):
            update_task(r, keys, task_id=task.id, department="water_authority", user="wa", status=status, now=0)


def _text(component) -> str:
    """Every string in a Dash component tree."""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return " ".join(_text(c) for c in component)
    children = getattr(component, "children", None)
    return "" if children is None else _text(children)


def test_the_department_card_and_the_dispatch_board_say_why_a_task_is_back(replayed, tmp_path):
    from layouts.department import task_card
    from layouts.operator.queue import _timeline

    r, _ = replayed
    keys = Keys(run_replay(r, scenario(tmp_path / "board", ACTIONS[:3])).namespace)
    task = task_of(r, keys)
    assert task.status == "reopened"
    reason = "sensors disagree: WL-A rose 0.15 m in 40 min after completion"
    card = _text(task_card(task, "en", "Asia/Shanghai", keys_time("01:40")))
    assert f"Reopened: {reason}" in card and "reopened" in card
    assert "已重新打开" in _text(task_card(task, "zh", "Asia/Shanghai", keys_time("01:40")))
    board = _text(_timeline(task.model_dump(), "en", "Asia/Shanghai", keys_time("01:40"), {}))
    assert f"Reopened: {reason}" in board and reason in board.replace(f"Reopened: {reason}", "", 1)
