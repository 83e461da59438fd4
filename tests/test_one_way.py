"""One way to do each thing: the clock a command is stamped with, the incident path of scenarios,
validation regexes, readers that survive an absurd stored time, the map's incident layer."""

from __future__ import annotations

import re
import shutil

import orjson
import pytest

from command.clock import command_time, namespace_now
from command.keys import Keys
from command.models import ExternalWarning, Incident
from command.ops.incidents import DRILL, validate_incident
from command.scenarios.load import load_scenario
from command.scenarios.replay import run_replay
from command.timeutil import MAX_MS, MIN_MS, now_ms, parse_time, to_iso

from .conftest import ROOT, SCENARIOS
from .feeds.test_cap import valid, xsd  # noqa: F401 - the OASIS CAP 1.2 schema fixture

BIG = parse_time("9999-12-31T23:59:59-14:00")  # year 10000 in UTC: parse_time took it, datetime cannot show it
TINY = parse_time("0001-01-01T00:00:00+14:00")  # year 0 in UTC


# ---- the clock a command is stamped with ---------------------------------------------------------------
def test_command_time_is_the_namespace_clock_else_the_wall_clock(r):
    keys = Keys("live")
    before = now_ms()
    assert namespace_now(r, keys) is None  # live before its first tick
    assert before <= command_time(r, keys) <= now_ms()  # the live edge's clock is the wall's
    r.set(keys.clock, 1_000)
    assert command_time(r, keys) == 1_000 == namespace_now(r, keys)


def test_operator_commands_are_stamped_with_command_time(r):
    from layouts.operator.actions import confirm_action, dispatch_recommended

    keys = Keys(run_replay(r, SCENARIOS / "rule_zone_incident").namespace)
    a = orjson.loads(r.get(keys.alert(r.zrange(keys.alerts_open, 0, 0)[0].decode())))
    op = {"username": "operator", "department": "emergency_management", "role": "operator"}
    confirm_action(r, keys, {"fp": a["fingerprint"], "level": a["level"], "action": "acknowledge"}, None, "", op, "en")
    notes = {k.decode(): v.decode() for k, v in r.hgetall(keys.alert_notes(a["fingerprint"])).items()}
    assert int(notes["acknowledged_at"]) == int(r.get(keys.clock))  # a drill: scenario time
    r.delete(keys.clock)  # as live before its first tick
    before = now_ms()
    dispatch_recommended(r, keys, a["fingerprint"], a["level"], op, "en", resource_ids=["B1"])
    d = orjson.loads(r.get(keys.dispatch(f"{a['fingerprint']}-{a['level']}")))
    assert before <= d["created_at"] <= now_ms()


# ---- one incident path for scenarios ---------------------------------------------------------------
@pytest.fixture
def scenario(tmp_path):
    """A copy of the zone-incident scenario, self-contained, to edit."""
    folder = tmp_path / "s"
    shutil.copytree(SCENARIOS / "rule_zone_incident", folder)
    doc = (folder / "scenario.yaml").read_text().replace("../tiny_common", str(SCENARIOS / "tiny_common"))
    (folder / "scenario.yaml").write_text(doc)
    return folder


def test_incident_rows_go_through_the_incident_validator(scenario):
    rows = [
        "2026-07-01T01:40:00+08:00,B1,meteor,30.05,114.05,red,falling star,open",
        "2026-07-01T01:41:00+08:00,B2,flooding,30.05,114.05,purple,water,open",
        "2026-07-01T01:42:00+08:00,,flooding,30.05,114.05,red,no id,open",
        "2026-07-01 01:43,B4,flooding,30.05,114.05,red,no offset,open",
        "2026-07-01T01:44:00+08:00,B 5,flooding,95,114.05,red,two problems,open",
        '2026-07-01T01:45:00+08:00,B6,flooding,30.05,114.05,red,"bell \x07 in it",open',
        "2026-07-01T01:46:00+08:00,B7,flooding,30.05,114.05,red,fine,reopened",
        "2026-07-01T01:47:00+08:00,OK-1,flooding,30.05,114.05,,a good row without severity,",
    ]
    with (scenario / "incidents.csv").open("a") as fh:
        fh.write("\n".join(rows) + "\n")
    sc = load_scenario(scenario)
    reasons = {q["row"]["incident_id"] or q["row"]["description"]: q["reason"] for q in sc.quarantine}
    assert reasons == {
        "I5": "lat: a number from -90 to 90",
        "B1": "category: one of: flooding, trapped_people, levee_breach, road_closed, power_outage, landslide, "
              "medical, other",
        "B2": "severity: one of: yellow, orange, red",
        "no id": "id: required",
        "B4": "time: invalid time '2026-07-01 01:43' (ISO 8601 with an offset)",
        "B 5": "id: letters, digits and _ . : - only (starting with a letter or digit), at most 64 characters; "
               "lat: a number from -90 to 90",
        "B6": "description: contains a control character or an invalid character",
        "B7": "status: open or closed",
    }
    ok = next(i for i in sc.incidents if i.id == "OK-1")
    t = parse_time("2026-07-01T01:47:00+08:00")
    same = validate_incident({"id": "OK-1", "category": "flooding", "lat": "30.05", "lon": "114.05", "severity": "",
                              "description": "a good row without severity", "status": "open"}, DRILL, now=t)
    assert ok == same.model_copy(update={"zone": "Z-HIGH"}) and ok.time == t


def test_bad_injects_are_quarantined_with_the_validators_reasons(r, scenario):
    doc = (scenario / "scenario.yaml").read_text()
    doc += """  - {at: 1h, type: incident, incident_id: INJ-2, category: trapped_people, lat: 91, lon: 114.02}
  - {at: 1h, type: incident, incident_id: INJ-3, category: trapped_people, lat: 30.02, lon: 114.02, note: x}
  - {at: 1h, type: incident, incident_id: 7, category: flooding, lat: 30.02, lon: 114.02, description: "  roof  "}
  - {at: 1h, type: reading, station_id: WL-A, kind: water_level, value: NaN, unit: m}
  - {at: 1h, type: reading, station_id: WL-A, kind: water_level, value: true, unit: m}
  - {at: 1h, type: reading, station_id: WL-A, kind: water_level, value: " 1.5 ", unit: m}
"""
    (scenario / "scenario.yaml").write_text(doc)
    res = run_replay(r, scenario)
    keys = Keys(res.namespace)
    dead = [(orjson.loads(f[b"record"]), f[b"reason"].decode()) for _, f in r.xrange(keys.deadletter)
            if f[b"source"] == b"inject"]
    assert [(rec.get("incident_id") or rec.get("value"), why) for rec, why in dead] == [
        ("INJ-2", "lat: a number from -90 to 90"),
        ("INJ-3", "note: unknown field (allowed: id, category, lat, lon, severity, description, status, "
                  "reporter)"),
        ("NaN", "non-finite value 'NaN'"),
        (True, "non-numeric value True"),
    ]
    entries = [orjson.loads(f[b"i"]) for _, f in r.xrange(keys.shard_stream(0)) if b"i" in f]
    seven = [e for e in entries if e["id"] == "7"]
    assert seven and seven[0]["description"] == "roof" and seven[0]["time"] == parse_time("2026-07-01T01:00:00+08:00")
    readings = [orjson.loads(f[b"r"]) for _, f in r.xrange(keys.shard_stream(0)) if b"r" in f]
    assert ["WL-A", "water_level", parse_time("2026-07-01T01:00:00+08:00"), 1.5] in readings


# ---- regexes: fullmatch or \Z, never a `$` that lets a trailing newline through ------------------------
def test_offset_and_measure_patterns_refuse_a_trailing_newline():
    from command.scenarios.load import _OFFSET_RE
    from feeds.ea import _measure_info

    assert re.search(_OFFSET_RE, "2026-07-01T00:00:00+08:00")
    assert not re.search(_OFFSET_RE, "2026-07-01T00:00:00+08:00\n")
    assert _measure_info("E1-level-stage-i-15_min-mASD")["unit"] == "mASD"
    _measure_info.cache_clear()
    assert _measure_info("E1-level-stage-i-15_min-mASD\n") is None


def test_no_validation_regex_ends_in_a_dollar():
    offending = []
    for path in sorted(p for pkg in ("command", "feeds", "layouts") for p in (ROOT / pkg).rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"""\$["']""", line) and re.search(r"""\br["']""", line):  # a raw string ending in `$`
                offending.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offending == []


# ---- readers survive a stored time out of datetime's range -----------------------------------------------
def test_to_iso_clamps_rather_than_raises():
    assert to_iso(BIG) == to_iso(MAX_MS) == "9999-12-30T23:59:59.999000+00:00"
    assert to_iso(BIG, "Pacific/Kiritimati") == "9999-12-31T13:59:59.999000+14:00"
    assert to_iso(TINY, "Etc/GMT+12") == to_iso(MIN_MS, "Etc/GMT+12") == "0001-01-01T12:00:00-12:00"
    assert to_iso(10**30) == to_iso(float("inf")) and to_iso(-(10**30)) == to_iso(float("nan")) == to_iso(MIN_MS)
    assert to_iso(1_782_842_400_123, "Asia/Shanghai") == "2026-07-01T02:00:00.123000+08:00"  # as before
    assert to_iso(None) is None


def test_every_reader_answers_with_absurd_times_stored(r, tmp_path, xsd):  # noqa: F811 - the fixture
    from command.ops.dispatch import dispatch, update_task
    from command.publish import cap, geojson, report, views
    from layouts.operator.figure import build_figure, station_panel
    from layouts.operator.queue import dispatch_view, queue_view

    keys = Keys(run_replay(r, SCENARIOS / "rule_zone_incident").namespace)
    r.hset(keys.meta, "timezone", "Pacific/Kiritimati")  # +14:00, the far end of the offsets
    # what older code could store: an open alert, its events, an incident, a warning, a reading, a dispatch
    fp = r.zrange(keys.alerts_open, 0, 0)[0].decode()
    a = orjson.loads(r.get(keys.alert(fp)))
    a.update(opened_at=BIG, updated_at=BIG, first_breach_at=TINY, next_level="red", next_level_eta=BIG)
    r.set(keys.alert(fp), orjson.dumps(a))
    r.xadd(keys.alerts_stream, {"event": "raise", "fingerprint": fp, "alert": orjson.dumps(a)})
    gone = {**a, "fingerprint": "old-fp", "status": "resolved", "resolved_at": TINY, "updated_at": TINY}
    r.xadd(keys.alerts_stream, {"event": "resolve", "fingerprint": "old-fp", "alert": orjson.dumps(gone)})
    r.xadd(keys.events, {"type": "incident", "at": BIG, "data": b"{}"})
    r.hset(keys.incidents, "OLD-1", Incident(id="OLD-1", time=BIG, category="flooding", lat=30.05,
                                             lon=114.05).model_dump_json())
    r.hset(keys.warnings, "W-OLD", ExternalWarning(id="W-OLD", source="cap", sent=TINY, onset=BIG, expires=BIG,
                                                   ends=BIG).model_dump_json())
    r.hset(keys.latest, "WL-A", orjson.dumps({"water_level": [BIG, 1.0]}))
    r.xadd(keys.series("WL-A"), {"t": BIG, "k": "water_level", "v": 1.0})
    d = dispatch(r, keys, fingerprint=fp, level=a["level"], resource_ids=["B1"], operator="op", now=BIG)
    update_task(r, keys, task_id=d.task_ids[0], department=d.departments[0], user="x", status="acknowledged", now=TINY)
    r.set(keys.clock, BIG)

    queue = views.alert_queue(r, keys)
    assert fp in {q["fingerprint"] for q in queue}
    assert queue_view(r, keys, "en") and dispatch_view(r, keys, "en")
    alerts = geojson.collect_open_alerts(r, keys)
    opened = {f["id"]: f["properties"]["opened_at"] for f in alerts["features"]}
    assert opened[fp] == "9999-12-31T13:59:59.999000+14:00"
    stations = geojson.collect_stations(r, keys)
    assert {f["id"]: f["properties"]["time"] for f in stations["features"]}["WL-A"].startswith("9999-12-31")
    warnings = geojson.collect_warnings(r, keys)
    assert warnings["features"][0]["properties"]["sent"].startswith("0001-01-0")
    geojson.collect_zones(r, keys)
    chains = cap.alert_messages(r, keys)
    for chain in chains.values():
        for _ident, xml in chain:
            valid(xsd, xml)  # still valid CAP 1.2
    assert [ident for ident, _ in chains["old-fp"]] == [f"{keys.cap_prefix}.old-fp"]
    feed = cap.atom_feed(r, keys)
    assert b"<updated>9999-12-31T13:59:59+14:00</updated>" in feed
    rep = report.write_outputs(r, keys, tmp_path / "out")
    assert any(e["time"].startswith("9999-12-31") for e in rep["timeline"])
    assert (tmp_path / "out" / "after_action.html").exists()
    build_figure(r, keys, "en")
    station_panel(r, keys, "WL-A", "en")


# ---- the map redraws its incident layer when an incident changes -----------------------------------------
def test_closing_an_incident_redraws_the_map_incident_layer(r):
    from command.ops.incidents import INTAKE, Actor, submit
    from command.publish import views
    from layouts.operator.figure import build_figure, map_update

    keys = Keys(run_replay(r, SCENARIOS / "rule_zone_incident").namespace)
    water = Actor("water", "water_authority", "department")
    report = {"id": "CAD-1", "time": to_iso(int(r.get(keys.clock))), "category": "road_closed", "lat": 30.06,
              "lon": 114.15, "severity": "yellow", "description": "underpass"}
    submit(r, keys, report, water, INTAKE)
    _, ver = build_figure(r, keys, "en")
    ver["lang"] = "en"
    assert map_update(r, keys, "en", ver)[0] is not None  # a no_update
    before = views.versions(r, keys)
    submit(r, keys, {**report, "status": "closed"}, water, INTAKE)  # same count of incidents, one changed
    after = views.versions(r, keys)
    assert r.hlen(keys.incidents) == 1 and after["incidents"] != before["incidents"]
    assert {k: v for k, v in after.items() if k != "incidents"} == {k: v for k, v in before.items() if k != "incidents"}
    patch, new_ver = map_update(r, keys, "en", ver)
    ops = patch.to_plotly_json()["operations"]
    layer = next(op for op in ops if op["location"] == ["data", 1])
    assert layer["params"]["value"]["customdata"] == [["CAD-1", "road closed", "underpass", "closed", ""]]
    assert layer["params"]["value"]["marker"]["color"] == ["#bdbdbd"]  # drawn closed
    assert map_update(r, keys, "en", new_ver)[0] == map_update(r, keys, "en", new_ver)[1]  # nothing new since
