"""The sample scenario's scripted actions (sample_data/generate.py ACTIONS) replayed through the real
engine: dispatches, the fire service's reports, and the two completions the sensors judge, as
`replay --out` writes them to tasks.jsonl (docs/dispatch.md)."""

from __future__ import annotations

import json

import pytest
import yaml

from command.keys import Keys
from command.scenarios.replay import run_replay

from .conftest import SCENARIOS

SAMPLE = SCENARIOS / "jiangcheng_flood"


@pytest.fixture(scope="module")
def tasks(redis_url, tmp_path_factory):
    import redis

    r = redis.Redis.from_url(redis_url)
    out = tmp_path_factory.mktemp("sample-out")
    res = run_replay(r, SAMPLE, out=out)
    rows = [json.loads(x) for x in (out / "tasks.jsonl").read_text(encoding="utf-8").splitlines()]
    quarantined = (out / "quarantine.jsonl").read_text(encoding="utf-8")
    yield {(t["rule"], t["subject"], t["department"]): t for t in rows}, rows, quarantined, Keys(res.namespace)
    r.close()


def test_the_sample_scripts_dispatches_and_reports():
    doc = yaml.safe_load((SAMPLE / "scenario.yaml").read_text(encoding="utf-8"))
    kinds = [a["type"] for a in doc["actions"]]
    assert kinds.count("dispatch") == 3 and "task_status" in kinds


def test_every_scripted_action_is_applied(tasks):
    by, rows, quarantined, _ = tasks
    assert "scenario.yaml: action" not in quarantined and "scripted" not in quarantined
    # three alerts dispatched: the incident to fire and rescue and to medical, each gauge to a rescue crew
    assert sorted(by) == [("incident-in-risk-zone", "INC-002", "fire_rescue"),
                          ("incident-in-risk-zone", "INC-002", "medical"),
                          ("rapid-rise", "WL-016", "fire_rescue"), ("rapid-rise", "WL-017", "fire_rescue")]
    assert all(t["resource_ids"] and t["task_id"] for t in rows)
    boat = by[("incident-in-risk-zone", "INC-002", "fire_rescue")]
    assert boat["status"] == "on_scene"
    assert [(h["status"], h["at"], h["by"]) for h in boat["history"]] == [
        ("en_route", "2026-07-14T11:40:00+08:00", "scripted"), ("on_scene", "2026-07-14T12:30:00+08:00", "scripted")]
    assert by[("incident-in-risk-zone", "INC-002", "medical")]["status"] == "acknowledged"


def test_wl017_keeps_rising_after_completion_and_its_task_is_reopened(tasks):
    by, _, _, _ = tasks
    t = by[("rapid-rise", "WL-017", "fire_rescue")]
    assert t["status"] == "reopened"
    done, back = t["history"][-2], t["history"][-1]
    assert (done["status"], done["at"], done["by"]) == ("completed", "2026-07-14T12:45:00+08:00", "scripted")
    assert back["status"] == "reopened" and back["by"] == "verification"
    assert back["note"].startswith("sensors disagree: WL-017 rose ") and back["note"].endswith(" after completion")
    assert "2026-07-14T12:45:00+08:00" < back["at"] <= "2026-07-14T13:45:00+08:00"  # within the hour's window


def test_wl016_falls_below_its_levels_and_its_task_is_verified(tasks):
    by, _, _, _ = tasks
    t = by[("rapid-rise", "WL-016", "fire_rescue")]
    assert t["status"] == "completed"
    last = t["history"][-1]
    assert last["status"] == "verified" and last["by"] == "verification"
    assert last["note"].startswith("WL-016 fell below its levels")
    assert "2026-07-14T18:00:00+08:00" < last["at"] <= "2026-07-14T19:00:00+08:00"
