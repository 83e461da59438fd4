"""Exercise objectives (command/scoring/objectives.py) against hand-worked runs, their parsing with the
scenario (command/scenarios/load.py), and a whole exercise driven by scripted actions through a real
replay, scored in its after-action report."""

from __future__ import annotations

import json
import shutil

import pytest

from command.models import StatusUpdate, Task
from command.scoring.objectives import Objective, Run, overall, score_objectives

from .conftest import SCENARIOS

MIN = 60_000
T0 = 1_782_835_200_000  # 2026-07-01T00:00:00+08:00


def task(tid: str, dept: str, subject: str, created: int, history=(), resources=("P1",), fp: str = "fp-a") -> Task:
    return Task(id=tid, department=dept, dispatch_id=f"{fp}-red", fingerprint=fp, subject=subject, rule="river-stage",
                level="red", resource_ids=list(resources), created_at=created, updated_at=created,
                history=[StatusUpdate(status=s, at=at, by=by, note=note) for s, at, by, note in history])


def run(tasks=(), alerts=(), readings=None, end=T0 + 600 * MIN) -> Run:
    return Run(alerts=list(alerts), tasks=list(tasks), readings=readings or {},
               thresholds={"WL-A": {"yellow": 2.0, "orange": 2.5, "red": 3.0}},
               resource_types={"P1": "pump", "B1": "rescue_boat", "A1": "ambulance"}, end=end, tz="Asia/Shanghai")


def alert(fp: str, subject: str, opened_min: int, rule: str = "river-stage") -> dict:
    return {"fingerprint": fp, "rule": rule, "subject": subject, "opened_at": T0 + opened_min * MIN}


def one(obj: Objective, r: Run) -> dict:
    [res] = score_objectives([obj], r)
    return res


# ---- dispatch_within -------------------------------------------------------------------------------
DISPATCH = Objective(id="D", kind="dispatch_within", text="dispatch in 15 min", rule="river-stage", within_ms=15 * MIN)


def test_dispatch_within_met_when_every_alert_is_dispatched_in_time():
    res = one(DISPATCH, run(alerts=[alert("fp-a", "WL-A", 60), alert("fp-b", "WL-B", 90)],
                            tasks=[task("t1", "water_authority", "WL-A", T0 + 70 * MIN),
                                   task("t2", "fire_rescue", "WL-B", T0 + 105 * MIN, fp="fp-b")]))
    assert res["met"] is True
    assert [(e["subject"], e["after"], e["ok"]) for e in res["evidence"]] == [("WL-A", "10 min", True),
                                                                              ("WL-B", "15 min", True)]  # on the dot counts
    assert res["evidence"][0]["opened_at"] == "2026-07-01T01:00:00+08:00"
    assert res["evidence"][0]["dispatched_at"] == "2026-07-01T01:10:00+08:00" and res["evidence"][0]["task"] == "t1"


def test_dispatch_within_not_met_by_a_late_or_missing_dispatch():
    late = one(DISPATCH, run(alerts=[alert("fp-a", "WL-A", 60)], tasks=[task("t1", "water_authority", "WL-A", T0 + 76 * MIN)]))
    assert late["met"] is False and late["evidence"][0]["after"] == "16 min"
    never = one(DISPATCH, run(alerts=[alert("fp-a", "WL-A", 60), alert("fp-b", "WL-B", 60)],
                              tasks=[task("t1", "water_authority", "WL-A", T0 + 61 * MIN)]))
    assert never["met"] is False
    assert [(e["subject"], e["dispatched_at"], e["ok"]) for e in never["evidence"]] == [("WL-A", "2026-07-01T01:01:00+08:00", True),
                                                                                        ("WL-B", None, False)]


def test_dispatch_within_not_tested_without_an_alert_or_before_its_deadline():
    assert one(DISPATCH, run(alerts=[alert("fp-x", "WL-A", 60, rule="heavy-rain")]))["met"] is None
    # the run ended 5 min after the alert opened, nothing dispatched yet: it could still have been in time
    pending = one(DISPATCH, run(alerts=[alert("fp-a", "WL-A", 60)], end=T0 + 65 * MIN))
    assert pending["met"] is None and pending["evidence"][0]["ok"] is None
    # with a subject, only that subject's alerts count
    only_b = Objective(id="D2", kind="dispatch_within", text="t", rule="river-stage", subject="WL-B", within_ms=15 * MIN)
    assert one(only_b, run(alerts=[alert("fp-a", "WL-A", 60)]))["met"] is None


# ---- acknowledge_within ----------------------------------------------------------------------------
ACK = Objective(id="A", kind="acknowledge_within", text="ack in 10 min", department="fire_rescue", within_ms=10 * MIN)


def test_acknowledge_within_met_counts_any_answer_as_acknowledgement():
    tasks = [task("t1", "fire_rescue", "I4", T0, [("acknowledged", T0 + 4 * MIN, "fire", "")]),
             task("t2", "fire_rescue", "I5", T0 + 30 * MIN, [("en_route", T0 + 40 * MIN, "fire", "")]),  # implies it
             task("t3", "medical", "I5", T0 + 30 * MIN)]  # another department's: not this objective's
    res = one(ACK, run(tasks=tasks))
    assert res["met"] is True
    assert [(e["task"], e["after"]) for e in res["evidence"]] == [("t1", "4 min"), ("t2", "10 min")]


def test_acknowledge_within_not_met_late_or_never_and_a_reopening_is_no_answer():
    late = one(ACK, run(tasks=[task("t1", "fire_rescue", "I4", T0, [("acknowledged", T0 + 11 * MIN, "fire", "")])]))
    assert late["met"] is False and late["evidence"][0]["acknowledged_at"] == "2026-07-01T00:11:00+08:00"
    reopened_only = one(ACK, run(tasks=[task("t1", "fire_rescue", "I4", T0, [("reopened", T0 + 2 * MIN, "verification", "rose")])]))
    assert reopened_only["met"] is False and reopened_only["evidence"][0]["acknowledged_at"] is None


def test_acknowledge_within_not_tested_without_a_task_or_before_the_deadline():
    assert one(ACK, run(tasks=[task("t1", "medical", "I4", T0)]))["met"] is None
    assert one(ACK, run(tasks=[task("t1", "fire_rescue", "I4", T0)], end=T0 + 5 * MIN))["met"] is None


# ---- on_scene_before_level -------------------------------------------------------------------------
PUMP = Objective(id="P", kind="on_scene_before_level", text="pump before orange", resource_type="pump",
                 subject="WL-A", level="orange")
RISING = {"WL-A": [(T0 + 60 * MIN, 2.1), (T0 + 75 * MIN, 2.4), (T0 + 90 * MIN, 2.5), (T0 + 105 * MIN, 2.7)]}


def test_on_scene_before_level_met_when_the_unit_is_there_before_the_first_reading_at_the_level():
    pump = task("t1", "water_authority", "WL-A", T0 + 60 * MIN, [("on_scene", T0 + 80 * MIN, "water", "")])
    res = one(PUMP, run(tasks=[pump], readings=RISING))
    assert res["met"] is True
    [ev] = res["evidence"]
    assert (ev["level_reached_at"], ev["on_scene_at"], ev["task"], ev["resources"], ev["threshold"]) == (
        "2026-07-01T01:30:00+08:00", "2026-07-01T01:20:00+08:00", "t1", ["P1"], 2.5)
    assert "10 min before" in res["summary"]


def test_on_scene_before_level_not_met_late_wrong_type_or_elsewhere():
    late = task("t1", "water_authority", "WL-A", T0 + 60 * MIN, [("on_scene", T0 + 95 * MIN, "water", "")])
    res = one(PUMP, run(tasks=[late], readings=RISING))
    assert res["met"] is False and "5 min after" in res["summary"]
    boat = task("t2", "fire_rescue", "WL-A", T0 + 60 * MIN, [("on_scene", T0 + 70 * MIN, "fire", "")], resources=("B1",))
    elsewhere = task("t3", "water_authority", "WL-B", T0 + 60 * MIN, [("on_scene", T0 + 70 * MIN, "water", "")])
    res = one(PUMP, run(tasks=[boat, elsewhere], readings=RISING))
    assert res["met"] is False and res["evidence"][0]["on_scene_at"] is None


def test_on_scene_before_level_not_tested_when_the_water_never_reached_the_level():
    pump = task("t1", "water_authority", "WL-A", T0 + 60 * MIN, [("on_scene", T0 + 80 * MIN, "water", "")])
    res = one(PUMP, run(tasks=[pump], readings={"WL-A": [(T0, 2.0), (T0 + 15 * MIN, 2.49)]}))
    assert res["met"] is None and res["evidence"][0]["on_scene_at"] == "2026-07-01T01:20:00+08:00"


# ---- no_unacknowledged -----------------------------------------------------------------------------
NONE_LEFT = Objective(id="N", kind="no_unacknowledged", text="nothing left unanswered")


def test_no_unacknowledged_met_not_met_and_not_tested():
    answered = task("t1", "fire_rescue", "I4", T0, [("completed", T0 + 9 * MIN, "fire", "")])
    silent = task("t2", "medical", "I4", T0 + MIN)
    assert one(NONE_LEFT, run(tasks=[answered]))["met"] is True
    res = one(NONE_LEFT, run(tasks=[answered, silent]))
    assert res["met"] is False
    assert [(e["task"], e["department"], e["assigned_at"]) for e in res["evidence"]] == [
        ("t2", "medical", "2026-07-01T00:01:00+08:00")]
    assert one(NONE_LEFT, run())["met"] is None


def test_overall_share_is_of_the_objectives_tested():
    results = [{"met": True}, {"met": False}, {"met": True}, {"met": None}]
    assert overall(results) == {"total": 4, "met": 2, "not_met": 1, "not_tested": 1, "share_met": 0.667}
    assert overall([{"met": None}])["share_met"] is None


# ---- parsing and validation with the scenario ------------------------------------------------------
def threshold_copy(tmp_path, extra: str):
    """rule_threshold in tmp_path with `extra` appended to its scenario.yaml."""
    for name in ("rule_threshold", "tiny_common"):
        shutil.copytree(SCENARIOS / name, tmp_path / name)
    sy = tmp_path / "rule_threshold" / "scenario.yaml"
    sy.write_text(sy.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return tmp_path / "rule_threshold"


def test_objectives_are_parsed_with_the_scenario(tmp_path):
    from command.scenarios.load import load_scenario

    sc = load_scenario(threshold_copy(tmp_path, """objectives:
  - {id: O1, kind: dispatch_within, text: River alerts dispatched in 15 min, text_zh: 河道预警15分钟内派遣, rule: river-stage, within: 15m}
  - {id: O2, kind: on_scene_before_level, text: A pump at WL-A before orange, resource_type: pump, subject: WL-A, level: orange}
  - {id: 3, kind: no_unacknowledged, text: Every task answered}
"""))
    assert [(o.id, o.kind, o.within_ms, o.subject) for o in sc.objectives] == [
        ("O1", "dispatch_within", 15 * MIN, None), ("O2", "on_scene_before_level", None, "WL-A"),
        ("3", "no_unacknowledged", None, None)]
    assert sc.objectives[0].text_zh == "河道预警15分钟内派遣"


@pytest.mark.parametrize("item, message", [
    ("{id: O1, kind: win_the_day, text: x}", r"\(O1\): `kind` must be one of dispatch_within, "),
    ("{id: O1, kind: dispatch_within, text: x, rule: river-stage}", r"\(O1, dispatch_within\): `within`: required"),
    ("{id: O1, kind: dispatch_within, text: x, rule: river-stage, within: soon}", r"`within`: invalid duration 'soon'"),
    ("{id: O1, kind: dispatch_within, text: x, rule: river-stag, within: 5m}", r"`rule`: no rule 'river-stag' in the rules"),
    ("{id: O1, kind: acknowledge_within, text: x, department: navy, within: 5m}", r"`department`: no resource of 'navy'"),
    ("{id: O1, kind: on_scene_before_level, text: x, resource_type: pump, subject: WL-Z, level: red}",
     r"`subject`: unknown station 'WL-Z'"),
    ("{id: O1, kind: on_scene_before_level, text: x, resource_type: pump, subject: RF-A, level: red}",
     r"`subject`: station RF-A has no red threshold"),
    ("{id: O1, kind: on_scene_before_level, text: x, resource_type: tank, subject: WL-A, level: red}",
     r"`resource_type`: no resource of type 'tank'"),
    ("{id: O1, kind: on_scene_before_level, text: x, resource_type: pump, subject: WL-A, level: purple}",
     r"`level`: must be one of yellow, orange, red, got 'purple'"),
    ("{id: O1, kind: no_unacknowledged, text: x, rule: river-stage}", r"unknown field rule"),
    ("{id: O1, kind: no_unacknowledged}", r"\(O1, no_unacknowledged\): `text`: required"),
    ("{kind: no_unacknowledged, text: x}", r": `id`: required"),
])
def test_a_bad_objective_names_the_file_the_objective_and_the_field(tmp_path, item, message):
    from command.scenarios.load import ScenarioError, load_scenario

    with pytest.raises(ScenarioError, match=r"scenario\.yaml: objective #1\b.*" + message):
        load_scenario(threshold_copy(tmp_path, f"objectives:\n  - {item}\n"))


def test_two_objectives_with_one_id_are_refused(tmp_path):
    from command.scenarios.load import ScenarioError, load_scenario

    with pytest.raises(ScenarioError, match=r"objective #2: `id`: 'O1' is used twice"):
        load_scenario(threshold_copy(tmp_path, "objectives:\n  - {id: O1, kind: no_unacknowledged, text: x}\n"
                                               "  - {id: O1, kind: no_unacknowledged, text: y}\n"))


# ---- a whole exercise driven by scripted actions, through a real replay ----------------------------
EXERCISE = """actions:
  - {at: 1h05m, type: dispatch, rule: river-stage, subject: WL-A}
  - {at: 1h10m, type: task_status, rule: river-stage, subject: WL-A, department: water_authority, status: acknowledged}
  - {at: 1h12m, type: task_status, rule: river-stage, subject: WL-A, department: water_authority, status: on_scene}
  - {at: 1h40m, type: dispatch, rule: river-stage, subject: WL-F}
objectives:
  - {id: O1, kind: dispatch_within, text: WL-A dispatched within 10 min, rule: river-stage, subject: WL-A, within: 10m}
  - {id: O2, kind: dispatch_within, text: WL-F dispatched within 30 min, rule: river-stage, subject: WL-F, within: 30m}
  - {id: O3, kind: acknowledge_within, text: Water authority acknowledges in 10 min, department: water_authority, within: 10m}
  - {id: O4, kind: acknowledge_within, text: Public works acknowledges in 15 min, department: public_works, within: 15m}
  - {id: O5, kind: acknowledge_within, text: Medical acknowledges in 10 min, department: medical, within: 10m}
  - {id: O6, kind: on_scene_before_level, text: A pump at WL-A before orange, resource_type: pump, subject: WL-A, level: orange}
  - {id: O7, kind: on_scene_before_level, text: A pump at WL-A before red, resource_type: pump, subject: WL-A, level: red}
  - {id: O8, kind: no_unacknowledged, text: No task left unanswered, text_zh: 无未确认任务}
"""


def test_objectives_of_a_scripted_exercise_in_its_after_action_report(r, tmp_path):
    from command.scenarios.replay import run_replay

    folder = threshold_copy(tmp_path, EXERCISE)
    out = tmp_path / "out"
    run_replay(r, folder, speed=None, out=out)
    report = json.loads((out / "after_action.json").read_text(encoding="utf-8"))
    verdicts = {o["id"]: o["met"] for o in report["objectives"]}
    assert verdicts == {"O1": True, "O2": False, "O3": True, "O4": False, "O5": None, "O6": True, "O7": None,
                        "O8": False}
    assert report["objectives_overall"] == {"total": 8, "met": 3, "not_met": 3, "not_tested": 2, "share_met": 0.5}
    ev = {o["id"]: o["evidence"] for o in report["objectives"]}
    # WL-A opened at 01:00 (30 min over yellow) and was dispatched by the script at 01:05
    assert [(e["opened_at"][11:16], e["dispatched_at"][11:16], e["after"]) for e in ev["O1"]] == [("01:00", "01:05", "5 min")]
    assert [(e["opened_at"][11:16], e["dispatched_at"][11:16], e["ok"]) for e in ev["O2"]] == [("01:00", "01:40", False)]
    # the pump was on scene at 01:12; WL-A first read 2.5 m (orange) at 01:15; it never reached red
    assert (ev["O6"][0]["on_scene_at"][11:16], ev["O6"][0]["level_reached_at"][11:16]) == ("01:12", "01:15")
    assert ev["O7"][0]["level_reached_at"] is None
    # public works' pump was dispatched to WL-F and never answered
    assert [(e["department"], e["subject"]) for e in ev["O8"]] == [("public_works", "WL-F")]
    html = (out / "after_action.html").read_text(encoding="utf-8")
    assert 'data-id="O4"' in html and "not met · 未达成" in html and "无未确认任务" in html


# ---- the sample's objectives (docs/drills.md) ------------------------------------------------------
SAMPLE = SCENARIOS / "jiangcheng_flood"
# A response to the sample's flood, scripted: the first two incident alerts dispatched in 10 min, the
# third in 30, the last three never; medical slow once and silent once; public works never answers;
# pumps sent to Riverside Park early and to the Bend Pumping Station too late.
RESPONSE = """
- {at: 11h30m, type: dispatch, rule: incident-in-risk-zone, subject: INC-002}
- {at: 11h35m, type: task_status, rule: incident-in-risk-zone, subject: INC-002, department: fire_rescue, status: acknowledged}
- {at: 11h50m, type: task_status, rule: incident-in-risk-zone, subject: INC-002, department: medical, status: acknowledged}
- {at: 14h20m, type: dispatch, rule: incident-in-risk-zone, subject: INC-005}
- {at: 14h25m, type: task_status, rule: incident-in-risk-zone, subject: INC-005, department: fire_rescue, status: acknowledged}
- {at: 14h28m, type: task_status, rule: incident-in-risk-zone, subject: INC-005, department: medical, status: en_route}
- {at: 16h20m, type: dispatch, rule: river-stage, subject: WL-003}
- {at: 16h25m, type: task_status, rule: river-stage, subject: WL-003, department: water_authority, status: acknowledged}
- {at: 17h30m, type: task_status, rule: river-stage, subject: WL-003, department: water_authority, status: on_scene}
- {at: 16h50m, type: dispatch, rule: river-stage, subject: WL-005}
- {at: 16h55m, type: task_status, rule: river-stage, subject: WL-005, department: water_authority, status: acknowledged}
- {at: 20h00m, type: task_status, rule: river-stage, subject: WL-005, department: water_authority, status: on_scene}
- {at: 22h00m, type: dispatch, rule: incident-in-risk-zone, subject: INC-009}
- {at: 22h05m, type: task_status, rule: incident-in-risk-zone, subject: INC-009, department: fire_rescue, status: acknowledged}
"""


def sample_with(dest, response: str | None):
    """The sample scenario (its data where they are) with `response` as its only scripted actions."""
    import yaml

    doc = yaml.safe_load((SAMPLE / "scenario.yaml").read_text(encoding="utf-8"))
    for key in ("stations", "zones", "resources", "rules", "rivers", "roads"):
        if doc.get(key):
            doc[key] = str((SAMPLE / doc[key]).resolve())
    doc["readings"], doc["incidents"] = str(SAMPLE / "readings.csv"), str(SAMPLE / "incidents.csv")
    doc.pop("actions", None)
    if response:
        doc["actions"] = yaml.safe_load(response)
    dest.mkdir(parents=True)
    (dest / "scenario.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return dest


def hm(iso):
    return None if iso is None else iso[11:16]


def test_the_sample_exercise_objectives(r, tmp_path):
    from command.scenarios.replay import run_replay

    def scored(name, response):
        out = tmp_path / f"{name}-out"
        run_replay(r, sample_with(tmp_path / name, response), speed=None, out=out)
        rep = json.loads((out / "after_action.json").read_text(encoding="utf-8"))
        assert not any(q["source"] == "action" for q in rep["quarantine"])  # every scripted action applied
        return rep, {o["id"]: o for o in rep["objectives"]}

    # nobody responds: what can be judged is not met, what needs a task is not tested
    rep, objs = scored("silent", None)
    assert {k: o["met"] for k, o in objs.items()} == {"O1": False, "O2": False, "O3": None, "O4": None, "O5": False,
                                                      "O6": False, "O7": None}
    assert rep["objectives_overall"] == {"total": 7, "met": 0, "not_met": 4, "not_tested": 3, "share_met": 0.0}

    rep, objs = scored("response", RESPONSE)
    assert {k: o["met"] for k, o in objs.items()} == {"O1": False, "O2": True, "O3": True, "O4": False, "O5": True,
                                                      "O6": False, "O7": False}
    assert rep["objectives_overall"] == {"total": 7, "met": 3, "not_met": 4, "not_tested": 0, "share_met": 0.429}
    assert [(e["subject"], hm(e["opened_at"]), hm(e["dispatched_at"]), e["ok"]) for e in objs["O1"]["evidence"]] == [
        ("INC-002", "11:20", "11:30", True), ("INC-005", "14:10", "14:20", True), ("INC-009", "21:30", "22:00", False),
        ("INC-010", "23:15", None, False), ("INC-011", "01:40", None, False), ("INJ-1", "04:00", None, False)]
    assert [(e["subject"], e["after"]) for e in objs["O3"]["evidence"]] == [
        ("INC-002", "5 min"), ("INC-005", "5 min"), ("INC-009", "5 min")]
    assert [(e["subject"], e["after"], e["ok"]) for e in objs["O4"]["evidence"]] == [
        ("INC-002", "20 min", False), ("INC-005", "8 min", True), ("INC-009", None, False)]
    o5, o6 = objs["O5"]["evidence"][0], objs["O6"]["evidence"][0]
    assert (hm(o5["on_scene_at"]), hm(o5["level_reached_at"]), o5["resources"]) == ("17:30", "18:45", ["WA-PUMP-03"])
    assert (hm(o6["on_scene_at"]), hm(o6["level_reached_at"])) == ("20:00", "19:45")
    assert [(e["department"], e["subject"]) for e in objs["O7"]["evidence"]] == [
        ("public_works", "WL-003"), ("public_works", "WL-005"), ("medical", "INC-009")]


def test_the_sample_as_shipped_scores_its_own_response(r, tmp_path):
    from command.scenarios.replay import run_replay

    out = tmp_path / "out"
    run_replay(r, SAMPLE, speed=None, out=out)
    rep = json.loads((out / "after_action.json").read_text(encoding="utf-8"))
    objs = {o["id"]: o for o in rep["objectives"]}
    assert {k: o["met"] for k, o in objs.items()} == {"O1": False, "O2": False, "O3": False, "O4": False, "O5": False,
                                                      "O6": False, "O7": True}
    assert rep["objectives_overall"]["met"] == 1 and rep["objectives_overall"]["not_tested"] == 0
    # fire and rescue answered WL-016 after 30 min; medical INC-002 after 15
    assert [(e["subject"], e["after"]) for e in objs["O3"]["evidence"]] == [
        ("INC-002", "10 min"), ("WL-017", "10 min"), ("WL-016", "30 min")]
    assert [(e["subject"], e["after"]) for e in objs["O4"]["evidence"]] == [("INC-002", "15 min")]
    # the sensors reopened WL-017's task after its completion
    assert [(x["subject"], x["department"], hm(x["at"])) for x in rep["reopened"]["tasks"]] == [
        ("WL-017", "fire_rescue", "13:15")]
    assert rep["department_figures"]["fire_rescue"]["reopened"] == 1
