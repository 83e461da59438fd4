"""The after-action report people read (command/publish/report.py, report_charts.py): its exercise
sections computed from a real replay of a small scenario with scripted actions, and the HTML's charts
(plotly inline, no network), both languages and the print stylesheet."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from command.keys import Keys
from command.models import StatusUpdate, Task
from command.publish.report import (
    after_action,
    collect_alerts,
    collect_quarantine,
    collect_recommendations,
    render_html,
)
from command.scenarios.replay import run_replay

from .conftest import SCENARIOS

SCRIPT = """injects:
  - {at: 3h50m, type: reading, station_id: WL-A, kind: water_level, value: 1.4, unit: m}
actions:
  - {at: 1h05m, type: dispatch, rule: river-stage, subject: WL-A}
  - {at: 1h10m, type: task_status, rule: river-stage, subject: WL-A, department: water_authority, status: acknowledged}
  - {at: 1h12m, type: task_status, rule: river-stage, subject: WL-A, department: water_authority, status: on_scene}
  - {at: 1h40m, type: dispatch, rule: river-stage, subject: WL-F}
objectives:
  - {id: O1, kind: on_scene_before_level, text: A pump at WL-A before orange, text_zh: 东桥橙色前水泵到场, resource_type: pump, subject: WL-A, level: orange}
  - {id: O2, kind: no_unacknowledged, text: No task left unanswered, text_zh: 无未确认任务}
"""
# WL-A's valid rows of readings.csv (the quarantined and repeated ones left out), then the inject
WL_A = [1.5, 1.8, 2.1, 2.2, 2.3, 2.6, 2.7, 2.8, 2.95, 2.4, 2.35, 1.95, 1.85, 2.05, 1.5, 1.5, 1.4]


@pytest.fixture
def exercise(r, tmp_path):
    """rule_threshold with the script above, replayed into a kept namespace; then the WL-A task is
    completed at 02:30 and reopened by verification at 02:45, as history entries (written here, after
    the run, so that the figures do not depend on what verification would decide)."""
    for name in ("rule_threshold", "tiny_common"):
        shutil.copytree(SCENARIOS / name, tmp_path / name)
    sy = tmp_path / "rule_threshold" / "scenario.yaml"
    sy.write_text(sy.read_text(encoding="utf-8") + SCRIPT, encoding="utf-8")
    res = run_replay(r, tmp_path / "rule_threshold", speed=None, out=tmp_path / "out")
    keys = Keys(res.namespace)
    [tid] = [t.decode() for t in r.zrange(keys.department_tasks("water_authority"), 0, -1)]
    task = Task.model_validate_json(r.get(keys.task(tid)))
    task.history += [StatusUpdate(status="completed", by="water", at=task.created_at + 85 * 60_000),
                     StatusUpdate(status="reopened", by="verification", at=task.created_at + 100 * 60_000,
                                  note="the alert on WL-A escalated 45 min after completion")]
    r.set(keys.task(tid), task.model_dump_json())
    report = after_action(r, keys, collect_alerts(r, keys), collect_recommendations(r, keys), collect_quarantine(r, keys))
    return keys, report, tmp_path / "out"


def test_the_report_json_has_the_exercise_sections(exercise):
    _, rep, out = exercise
    assert rep["end"] == "2026-07-01T03:50:00+08:00"  # the last thing that happened: the reading inject
    # each alert's chain, in minutes: over yellow at 00:30, alert at 01:00 (`for: 30m`), then the script
    chain = {c["subject"]: c for c in rep["response_chain"]}
    assert [(c["breach_to_alert_min"], c["alert_to_dispatch_min"], c["dispatch_to_on_scene_min"])
            for c in (chain["WL-A"], chain["WL-F"])] == [(30.0, 5.0, 7.0), (30.0, 40.0, None)]
    assert (chain["WL-A"]["dispatched_at"], chain["WL-A"]["on_scene_at"]) == ("2026-07-01T01:05:00+08:00",
                                                                               "2026-07-01T01:12:00+08:00")
    figs = rep["department_figures"]
    assert figs["water_authority"] == {"tasks": 1, "acknowledged": 1, "unacknowledged": 0, "on_scene": 1, "completed": 1,
                                       "reopened": 1, "median_acknowledge_min": 5.0, "median_on_scene_min": 7.0,
                                       "median_completed_min": 85.0}
    assert figs["public_works"]["unacknowledged"] == 1 and figs["public_works"]["median_acknowledge_min"] is None
    assert rep["reopened"]["count"] == 1
    [x] = rep["reopened"]["tasks"]
    assert (x["department"], x["subject"], x["at"], x["reason"]) == (
        "water_authority", "WL-A", "2026-07-01T02:45:00+08:00", "the alert on WL-A escalated 45 min after completion")
    # each task's statuses as periods, the last to the end of the run: completed at 02:30, reopened at 02:45
    lanes = {t["subject"]: t for t in rep["task_timeline"]}
    assert [(s["status"], s["from"][11:16], s["to"][11:16]) for s in lanes["WL-A"]["segments"]] == [
        ("assigned", "01:05", "01:10"), ("acknowledged", "01:10", "01:12"), ("on_scene", "01:12", "02:30"),
        ("completed", "02:30", "02:45"), ("reopened", "02:45", "03:50")]
    assert lanes["WL-A"]["completed_at"][11:16] == "02:30"
    assert [(s["status"], s["from"][11:16], s["to"][11:16]) for s in lanes["WL-F"]["segments"]] == [
        ("assigned", "01:40", "03:50")]
    # the hydrograph of every station that alerted, with its thresholds in SI
    hydro = {h["station"]: h for h in rep["hydrographs"]}
    assert sorted(hydro) == ["WL-A", "WL-F"]
    assert hydro["WL-A"]["values"] == WL_A and hydro["WL-A"]["times"][-1] == "2026-07-01T03:50:00+08:00"
    assert hydro["WL-A"]["thresholds"] == {"yellow": 2.0, "orange": 2.5, "red": 3.0}
    assert hydro["WL-F"]["thresholds"]["yellow"] == pytest.approx(6.0 * 0.3048)
    assert hydro["WL-F"]["values"][0] == pytest.approx(5.0 * 0.3048, abs=1e-4)
    assert [(a["level"], a["opened_at"][11:16]) for a in hydro["WL-A"]["alerts"]] == [("orange", "01:00")]
    # the objectives and the overall figure; the written file holds the same
    assert [(o["id"], o["met"]) for o in rep["objectives"]] == [("O1", True), ("O2", False)]
    assert rep["objectives_overall"] == {"total": 2, "met": 1, "not_met": 1, "not_tested": 0, "share_met": 0.5}
    written = json.loads((out / "after_action.json").read_text(encoding="utf-8"))
    assert [(o["id"], o["met"], o["evidence"]) for o in written["objectives"]] == [
        (o["id"], o["met"], o["evidence"]) for o in rep["objectives"]]


def charts_of(html: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="aar-charts">(.*?)</script>', html, re.S).group(1))


def test_the_html_draws_the_charts_offline_in_both_languages(exercise):
    _, rep, out = exercise
    html = render_html(rep)
    charts = charts_of(html)
    assert sorted(charts) == ["chain", "hydro:WL-A", "hydro:WL-F", "timeline"]
    assert all(f'data-chart="{cid}"' in html for cid in charts)  # each has its place on the page
    # the timeline: open alerts stacked by level, a lane per task, the inject marked
    tl = charts["timeline"]["data"]
    assert {t["name"] for t in tl if t.get("stackgroup") == "alerts"} == {"yellow · 黄色", "orange · 橙色", "red · 红色"}
    assert {t["y"][0] for t in tl if t.get("yaxis") == "y2"} == {"water_authority · WL-A", "public_works · WL-F"}
    [inj] = [t for t in tl if t["name"] == "inject · 注入事件"]
    assert inj["x"] == ["2026-07-01 03:50:00"]
    chain = charts["chain"]["data"]
    assert [t["x"] for t in chain] == [[30.0, 30.0], [5.0, 40.0], [7.0, 0]]
    wla = charts["hydro:WL-A"]["data"]
    assert wla[0]["y"] == WL_A and [t["y"] for t in wla[1:]] == [[2.0, 2.0], [2.5, 2.5], [3.0, 3.0]]
    # plotly.js is inside the file, once; nothing is fetched from the network
    assert html.count("Plotly.newPlot") == 1 and "plotly.js v" in html
    assert not re.search(r'<script[^>]+src=', html) and not re.search(r'<link[^>]+href=', html)
    # both languages, the objectives with their evidence, and a stylesheet for paper
    for text in ("Objectives · 演练目标", "Departments · 部门", "Breach → alert → dispatch → on scene", "超警 → 预警 → 派遣 → 到场",
                 "东桥橙色前水泵到场", "met · 达成", "not met · 未达成", "tasks reopened by verification · 核查后重开任务",
                 "the alert on WL-A escalated 45 min after completion", "East bridge gauge · 东桥水位站"):
        assert text in html, text
    assert "@media print" in html and "break-inside: avoid" in html
    assert (out / "after_action.html").read_text(encoding="utf-8").count('id="aar-charts"') == 1


def test_chart_text_cannot_close_the_script_it_is_in(exercise):
    _, rep, _ = exercise
    rep["timeline"].append({"time": rep["end"], "t": 0, "event": "inject:incident", "rule": "", "subject": "", "level": "",
                            "value": None, "unit": "", "detail": {"description": "</script><script>window.pwned=1</script>"}})
    html = render_html(rep)
    assert "<script>window.pwned=1" not in html
    assert "window.pwned=1" in json.dumps(charts_of(html), ensure_ascii=False)  # still there, as text


def test_a_live_drills_report_scores_its_objectives(r, exercise):
    from layouts.exercise import report_html

    keys, _, _ = exercise
    html = report_html(r, keys.ns)
    assert 'data-id="O1"' in html and 'data-id="O2"' in html and "1 / 2" in html
    assert sorted(charts_of(html)) == ["chain", "hydro:WL-A", "hydro:WL-F", "timeline"]


def test_a_viewer_not_cleared_for_tasks_gets_no_objectives(r, exercise):
    from command.trust.classification import PUBLIC

    keys, full, _ = exercise
    rep = after_action(r, keys, collect_alerts(r, keys), [], [], viewer=PUBLIC)
    assert rep["objectives"] == [] and "not cleared" in rep["objectives_error"]
    assert rep["task_timeline"] == [] and rep["reopened"] == {"count": 0, "tasks": []}
    assert rep["department_figures"] == {} and full["department_figures"]  # the tasks are there, not shown
    assert not any(c["dispatched_at"] for c in rep["response_chain"])
    assert "not cleared" in render_html(rep)


def test_a_completion_verification_confirms_ends_the_tasks_lane(r, exercise):
    keys, _, _ = exercise
    [tid] = [t.decode() for t in r.zrange(keys.department_tasks("public_works"), 0, -1)]
    task = Task.model_validate_json(r.get(keys.task(tid)))  # WL-F's, assigned at 01:40
    task.history += [StatusUpdate(status="completed", by="works", at=task.created_at + 20 * 60_000),
                     StatusUpdate(status="verified", by="verification", at=task.created_at + 50 * 60_000,
                                  note="WL-F stayed below yellow")]
    r.set(keys.task(tid), task.model_dump_json())
    rep = after_action(r, keys, collect_alerts(r, keys), [], [])
    lanes = {t["subject"]: t for t in rep["task_timeline"]}
    assert [(s["status"], s["from"][11:16], s["to"][11:16]) for s in lanes["WL-F"]["segments"]] == [
        ("assigned", "01:40", "02:00")]
    assert lanes["WL-F"]["completed_at"][11:16] == "02:00"
    assert rep["reopened"]["count"] == 1  # only WL-A's reopening; a verification is not one
