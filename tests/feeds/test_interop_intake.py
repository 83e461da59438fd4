"""GeoJSON map layers and incident intake, on a real Redis."""

from __future__ import annotations

import pytest

from command.engine.consumer import Engine
from command.errors import InvalidInput
from command.keys import Keys
from command.models import ExternalWarning
from command.ops.incidents import INTAKE, Actor, validate_incident, with_zone, write_incident
from command.publish.geojson import (
    collect_open_alerts,
    collect_resources,
    collect_stations,
    collect_warnings,
    collect_zones,
)
from command.publish.report import collect_alerts
from command.scenarios.replay import run_replay
from command.streams import input_count
from command.timeutil import parse_time

from ..conftest import SCENARIOS


def test_geojson_layers_of_a_drill_mid_flood(r):
    res = run_replay(r, SCENARIOS / "jiangcheng_flood", namespace="geo-test")
    keys = Keys(res.namespace)
    # the map shows the state at a moment: reopen one alert as if the flood were still on
    alerts = collect_alerts(r, keys)
    a = next(x for x in alerts if x["subject_type"] == "station" and x["peak_level"] == "red")
    a = dict(a, status="open", level="red", resolved_at=None)
    import orjson

    r.set(keys.alert(a["fingerprint"]), orjson.dumps(a))
    r.zadd(keys.alerts_open, {a["fingerprint"]: a["opened_at"]})
    st = collect_stations(r, keys)
    assert st["type"] == "FeatureCollection" and len(st["features"]) == 32
    f = next(f for f in st["features"] if f["id"] == a["subject"])
    assert f["properties"]["level"] == "red" and f["properties"]["open_alerts"] >= 1
    assert f["geometry"]["type"] == "Point" and -180 <= f["geometry"]["coordinates"][0] <= 180
    zones = collect_zones(r, keys)
    zf = next(z for z in zones["features"] if z["id"] == a["zone"])
    assert zf["properties"]["level"] == "red" and zf["geometry"]["type"] in ("Polygon", "MultiPolygon")
    oa = collect_open_alerts(r, keys)
    ids = [x["id"] for x in oa["features"]]
    assert a["fingerprint"] in ids and len(ids) == r.zcard(keys.alerts_open)
    assert oa["features"][0]["properties"]["opened_at"].endswith("+08:00")
    rs = collect_resources(r, keys)
    assert rs["features"] and {"id", "department", "type", "status"} <= set(rs["features"][0]["properties"])


def test_geojson_warning_layer_and_zone_warnings(r, keys):
    r.hset(keys.zones, "Z", '{"id":"Z","geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1],[0,0]]]},'
                            '"geocodes":{"UGC":["ORZ004"]}}')
    w = ExternalWarning(id="nws:1", source="nws", sent=0, event="Flood Watch", geocodes={"UGC": ["ORZ004"]})
    r.hset(keys.warnings, w.id, w.model_dump_json())
    assert collect_zones(r, keys)["features"][0]["properties"]["warnings"] == ["nws:1"]
    layer = collect_warnings(r, keys)
    assert layer["features"][0]["geometry"] is None and layer["features"][0]["properties"]["event"] == "Flood Watch"


GOOD = {"id": "CAD-2026-0142", "time": "2026-07-01T02:40:00+08:00", "category": "trapped_people",
        "lat": 30.02, "lon": 114.02, "severity": "red", "description": "Family on a roof"}
NOW = parse_time("2026-07-01T03:00:00+08:00")  # the namespace clock the reports are checked against
WATER = Actor("water", "water_authority", "department")


def test_intake_validates_every_field_at_once():
    with pytest.raises(InvalidInput) as exc:
        validate_incident({"id": "bad id!", "time": "2026-07-01 02:40", "category": "Trapped People",
                           "lat": 95, "lon": "east", "colour": "red", "status": "maybe"}, INTAKE, now=NOW)
    assert set(exc.value.errors) == {"id", "time", "category", "lat", "lon", "colour", "status"}
    assert "UTC offset" in exc.value.errors["time"] and "unknown field" in exc.value.errors["colour"]
    with pytest.raises(InvalidInput) as exc:
        validate_incident({}, INTAKE, now=NOW)
    assert exc.value.errors == {k: "required" for k in ("id", "time", "category", "lat", "lon")}
    with pytest.raises(InvalidInput):
        validate_incident(["not", "an", "object"], INTAKE, now=NOW)
    inc = validate_incident(GOOD, INTAKE, now=NOW)
    assert inc.time == parse_time(GOOD["time"]) and inc.status == "open"


def test_intake_submit_is_atomic_idempotent_and_reaches_the_engine(r):
    res = run_replay(r, SCENARIOS / "rule_zone_incident", namespace="intake-test")
    keys = Keys(res.namespace)
    before = len(collect_alerts(r, keys))
    inc = with_zone(r, keys, validate_incident(GOOD, INTAKE, now=NOW))
    assert write_incident(r, keys, inc, WATER, INTAKE, now=NOW) is True
    assert write_incident(r, keys, inc, WATER, INTAKE, now=NOW) is False  # the same post again: nothing written
    stored = r.hget(keys.incidents, inc.id)
    assert b'"zone":"Z-HIGH"' in stored  # the zone is found on intake
    n_entries = input_count(r, keys)
    eng = Engine(r, keys, consumer="intake")
    eng.start()
    eng.drain()
    eng.release()
    alerts = collect_alerts(r, keys)
    assert len(alerts) == before + 1 and alerts[-1]["subject"] == "CAD-2026-0142" and alerts[-1]["level"] == "red"
    closed = validate_incident({**GOOD, "status": "closed", "time": "2026-07-01T03:40:00+08:00"}, INTAKE, now=NOW)
    assert write_incident(r, keys, closed, WATER, INTAKE, now=NOW) is True
    assert input_count(r, keys) == n_entries + 1
