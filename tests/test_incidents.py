"""Incidents: one validator and one atomic write for the department form, the HTTP intake and drill
injects; incidents belong to their reporter; reported times are bounded; strict strings and numbers.
Real Redis, the Flask app's test client, HTTP Basic with the demo accounts."""

from __future__ import annotations

import base64
import io
import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from command.config import Settings
from command.engine.consumer import Engine
from command.errors import InvalidInput
from command.keys import DRILL_CURSOR, Keys
from command.ops import drills, incidents
from command.ops.incidents import CATEGORIES, DRILL, FORM, INTAKE, Actor, validate_incident
from command.scenarios.replay import run_replay
from command.timeutil import parse_time, to_iso
from command.trust import audit

from .conftest import SCENARIOS

DAY = 86_400_000
FIRE = Actor("fire", "fire_rescue", "department")
WATER = Actor("water", "water_authority", "department")
OPERATOR = Actor("operator", "emergency_management", "operator")


@pytest.fixture
def app(redis_url, tmp_path, r):
    from app import create_app

    return create_app(Settings(data_dir=tmp_path / "var"), redis_url=redis_url)


@pytest.fixture
def client(app):
    return app.server.test_client()


def basic(user="operator", password="flood-demo"):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def ns(r):
    """A replayed namespace with a high-risk zone Z-HIGH and a zone-incident rule (red)."""
    return run_replay(r, SCENARIOS / "rule_zone_incident").namespace


def clock(r, keys) -> int:
    return int(r.get(keys.clock))


def drain(r, keys) -> None:
    eng = Engine(r, keys, consumer="test")
    eng.start()
    eng.drain()
    eng.release()


def report(keys, r, **over):
    """A good intake report in Z-HIGH, timed an hour before the namespace clock."""
    body = {"id": "CAD-7", "time": to_iso(clock(r, keys) - 3_600_000), "category": "trapped_people",
            "lat": 30.05, "lon": 114.05, "severity": "red", "description": "two people on a roof"}
    body.update(over)
    return body


def open_alert_of(r, keys, subject):
    for fp in r.zrange(keys.alerts_open, 0, -1):
        a = orjson.loads(r.get(keys.alert(fp.decode())))
        if a["subject"] == subject:
            return a
    return None


def audit_of(r, keys, incident_id):
    """The incident's audit entries, oldest first."""
    return [e for e in reversed(audit.entries(r, keys, count=10_000)) if e["details"].get("incident") == incident_id]


# ---- finding: incidents belong to their reporter --------------------------------------------------------
def test_other_department_cannot_overwrite_incident(client, r, ns):
    keys = Keys(ns)
    url = f"/api/{ns}/incidents"
    first = client.post(url, json=report(keys, r), headers=basic("water"))
    assert first.status_code == 201
    drain(r, keys)
    assert open_alert_of(r, keys, "CAD-7")["level"] == "red"  # the operator's red alert
    stored = r.hget(keys.incidents, "CAD-7")
    n_audit = len(audit.entries(r, keys))

    hijack = client.post(url, json=report(keys, r, status="closed", description="nothing here"), headers=basic("fire"))
    assert hijack.status_code == 403 and hijack.get_json()["error"] == "forbidden"
    assert r.hget(keys.incidents, "CAD-7") == stored  # nothing stored
    assert len(audit.entries(r, keys)) == n_audit
    drain(r, keys)
    assert open_alert_of(r, keys, "CAD-7") is not None  # the red alert is still there

    # the reporting department may change it, and so may the command centre
    assert client.post(url, json=report(keys, r, description="four people now"), headers=basic("water")).status_code == 201
    closed = client.post(url, json=report(keys, r, status="closed"), headers=basic("operator"))
    assert closed.status_code == 201
    drain(r, keys)
    assert open_alert_of(r, keys, "CAD-7") is None
    rec = orjson.loads(r.hget(keys.incidents, "CAD-7"))
    assert rec["reported_by"] == "water_authority" and rec["submitted_by"] == "water" and rec["status"] == "closed"
    assert [(h["by"], h["department"], h["status"]) for h in rec["history"]] == [
        ("water", "water_authority", "open"), ("water", "water_authority", "open"),
        ("operator", "emergency_management", "closed")]
    assert [e["who"] for e in audit_of(r, keys, "CAD-7")] == ["water", "water", "operator"]


def test_incidents_without_an_owner_belong_to_the_system(r, ns):
    """A scenario's incidents (written by the replay, no owner) can be changed by the command centre
    and by drill injects, not by a department."""
    keys = Keys(ns)
    now = clock(r, keys)
    body = {"id": "I4", "time": to_iso(now), "category": "levee_breach", "lat": 30.09, "lon": 114.09,
            "status": "closed"}
    with pytest.raises(incidents.Forbidden):
        incidents.submit(r, keys, body, FIRE, INTAKE)
    assert incidents.submit(r, keys, body, OPERATOR, INTAKE).taken
    assert orjson.loads(r.hget(keys.incidents, "I4"))["reported_by"] == "system"


def test_history_is_bounded(r, ns):
    keys = Keys(ns)
    now = clock(r, keys)
    for i in range(incidents.HISTORY_LIMIT + 5):
        incidents.submit(r, keys, {"id": "H-1", "time": to_iso(now - DAY + i * 60_000), "category": "flooding",
                                   "lat": 30.0, "lon": 114.0}, WATER, INTAKE)
    hist = incidents.history(r, keys, "H-1")
    assert len(hist) == incidents.HISTORY_LIMIT and hist[-1]["time"] == now - DAY + (incidents.HISTORY_LIMIT + 4) * 60_000
    assert len(audit_of(r, keys, "H-1")) == incidents.HISTORY_LIMIT + 5  # the audit log keeps every change


# ---- finding: bounded times --------------------------------------------------------------------------------
def test_far_future_incident_refused_and_readers_survive(client, r, ns):
    keys = Keys(ns)
    url = f"/api/{ns}/incidents"
    now = clock(r, keys)
    for i, when in enumerate(("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00",
                              to_iso(now + DAY + 60_000), to_iso(now - 7 * DAY - 60_000))):
        resp = client.post(url, json=report(keys, r, id=f"T-{i}", time=when), headers=basic("fire"))
        assert resp.status_code == 422, when
        assert set(resp.get_json()["errors"]) == {"time"} and "7 days before" in resp.get_json()["errors"]["time"]
    assert not any(r.hexists(keys.incidents, f"T-{i}") for i in range(4))
    # the edges of the window are taken
    assert client.post(url, json=report(keys, r, id="E-1", time=to_iso(now + DAY)), headers=basic("fire")).status_code == 201
    assert client.post(url, json=report(keys, r, id="E-2", time=to_iso(now - 7 * DAY)), headers=basic("fire")).status_code == 201
    drain(r, keys)

    from command.publish.views import alert_queue

    assert any(a["subject"] == "E-1" for a in alert_queue(r, keys))
    assert client.get(f"/api/{ns}/geojson/alerts", headers=basic()).status_code == 200
    assert client.get(f"/api/{ns}/alerts.atom", headers=basic()).status_code == 200
    from command.publish.cap import alert_messages

    for fp in alert_messages(r, keys):
        assert client.get(f"/api/{ns}/cap/{fp}.xml", headers=basic()).status_code == 200
    client.post("/login", data={"username": "operator", "password": "flood-demo"})
    assert client.get(f"/exercise/report/{ns}").status_code == 200


def test_audit_records_server_time_not_client_time(client, r, ns):
    keys = Keys(ns)
    now = clock(r, keys)
    client_time = now - 3 * DAY
    resp = client.post(f"/api/{ns}/incidents", json=report(keys, r, time=to_iso(client_time)), headers=basic("fire"))
    assert resp.status_code == 201
    [entry] = audit_of(r, keys, "CAD-7")
    assert entry["action"] == "incident_intake" and entry["who"] == "fire"
    assert entry["at"] == now  # the namespace's clock, not what the client said
    assert entry["details"]["reported_time"] == client_time and entry["details"]["department"] == "fire_rescue"
    assert audit.verify(r, keys).ok


# ---- one path: drill injects and the form ----------------------------------------------------------------
def _run_commands(runner, r):
    last = r.xrevrange(drills.DRILL_COMMANDS, count=1)[0][0]
    for _ in range(200):
        runner.step(block_ms=1)
        if r.get(DRILL_CURSOR) == last:
            return
    raise AssertionError("the runner never handled the commands")


def test_drill_inject_goes_through_incident_validation(r):
    runner = drills.DrillRunner(r)
    ns = drills.start_drill(r, SCENARIOS / "rule_zone_incident", "1", by="planner")
    keys = Keys(ns)
    _run_commands(runner, r)
    drills.send(r, "pause", ns=ns, by="planner")
    _run_commands(runner, r)
    # a department's own report in the drill, which an inject may not overwrite
    mine = incidents.submit(r, keys, {"category": "flooding", "severity": "yellow", "lat": 30.0, "lon": 114.0,
                                      "description": "water in the street"}, FIRE, FORM).incident
    before = r.hget(keys.incidents, mine.id)
    bad = [{"incident_id": "B-1", "category": "meteor", "lat": 30.05, "lon": 114.02},
           {"incident_id": "B-2", "category": "levee_breach", "lat": 95, "lon": 114.02},
           {"incident_id": "B-3", "category": "levee_breach", "lat": 30.05, "lon": 114.02, "description": "a\x00b"},
           {"incident_id": "B-4\n", "category": "levee_breach", "lat": 30.05, "lon": 114.02},
           {"incident_id": "B-5", "category": "levee_breach", "lat": True, "lon": 114.02},
           {"incident_id": "B-6", "category": "levee_breach", "lat": 30.05, "lon": 114.02, "time": "9999-01-01T00:00:00Z"},
           {"incident_id": mine.id, "category": "levee_breach", "lat": 30.05, "lon": 114.02}]
    for data in bad:
        drills.send(r, "inject", ns=ns, type="incident", by="planner", data=data)
    drills.send(r, "inject", ns=ns, type="incident", by="planner",
                data={"incident_id": "X-1", "category": "levee_breach", "lat": 30.05, "lon": 114.02})
    drills.send(r, "inject", ns=ns, type="incident", by="planner",  # as the exercise page sends it
                data={"category": "levee_breach", "lat": 30.05, "lon": 114.02, "severity": "red",
                      "description": "Injected levee breach"})
    _run_commands(runner, r)

    assert not any(r.hexists(keys.incidents, f"B-{i}") for i in range(1, 7))
    assert r.hget(keys.incidents, mine.id) == before
    rec = orjson.loads(r.hget(keys.incidents, "X-1"))
    assert rec["reported_by"] == "system" and rec["submitted_by"] == "planner" and rec["severity"] == "red"
    assert rec["zone"] == "Z-HIGH" and rec["time"] == clock(r, keys)
    [entry] = audit_of(r, keys, "X-1")  # audited once, with the write
    assert entry["action"] == "inject_incident" and entry["at"] == clock(r, keys)
    events = [orjson.loads(f[b"data"]) for _, f in r.xrange(keys.events) if f[b"type"] == b"incident"]
    injected = [e["incident_id"] for e in events]
    assert "X-1" in injected and not any(i.startswith("B-") or i == mine.id for i in injected)
    generated = [i for i in injected if i.startswith("INJ-") and i != "INJ-1"]
    assert len(generated) == 1 and orjson.loads(r.hget(keys.incidents, generated[0]))["description"] == "Injected levee breach"
    drills.send(r, "stop", ns=ns, by="planner")
    _run_commands(runner, r)


def test_department_form_uses_the_same_path(app, r, ns):
    from layouts.department import report_incident

    keys = Keys(ns)
    fire = {"username": "fire", "department": "fire_rescue", "role": "department", "name": "Fire"}
    form = {"category": "trapped_people", "severity": "red", "lat": 30.05, "lon": 114.05,
            "description": "  family on a roof  "}
    with app.server.test_request_context("/"):
        msg, *errs = report_incident(r, keys, fire, form, "en")
        assert errs == ["", "", "", "", ""] and msg.id == "dept-inc-ok"
        bad = {"category": "meteor", "severity": "purple", "lat": True, "lon": float("nan"), "description": "a\x07"}
        msg, *errs = report_incident(r, keys, fire, bad, "en")
    assert all(errs) and "one of: flooding" in errs[0]
    [inc] = [json.loads(v) for v in r.hvals(keys.incidents) if json.loads(v)["id"].startswith("R-")]
    assert inc["reported_by"] == "fire_rescue" and inc["description"] == "family on a roof"
    assert inc["time"] == clock(r, keys)
    [entry] = audit_of(r, keys, inc["id"])
    assert entry["action"] == "incident_report" and entry["at"] == clock(r, keys)


def test_one_list_of_categories_for_every_path(r, ns):
    now = clock(r, Keys(ns))
    for cat in CATEGORIES:
        validate_incident({"id": "C-1", "time": to_iso(now), "category": cat, "lat": 1, "lon": 1}, INTAKE, now=now)
        validate_incident({"category": cat, "severity": "red", "lat": 1, "lon": 1, "description": "x"}, FORM, now=now)
        validate_incident({"category": cat, "lat": 1, "lon": 1}, DRILL, now=now)
    for source, body in ((INTAKE, {"id": "C-1", "time": to_iso(now), "lat": 1, "lon": 1}),
                         (FORM, {"severity": "red", "lat": 1, "lon": 1, "description": "x"}),
                         (DRILL, {"lat": 1, "lon": 1})):
        with pytest.raises(InvalidInput) as exc:  # the intake used to take any lower-case word
            validate_incident({**body, "category": "meteor"}, source, now=now)
        assert set(exc.value.errors) == {"category"}


# ---- finding: strict strings and numbers on the intake route -----------------------------------------------
HOSTILE = [  # (field, JSON text of its value)
    ("id", json.dumps("CAD-1\n")),
    ("id", json.dumps("CAD-1\r")),
    ("id", json.dumps("A" * 65)),
    ("id", json.dumps("\ud800")),
    ("id", "12"),
    ("id", "[]"),
    ("time", json.dumps("2026-07-01T02:00:00+08:00\n")),
    ("time", json.dumps("2026-07-01T02:00:00+08:00\x00")),
    ("time", "1782842400000"),
    ("time", json.dumps("x" * 5000)),
    ("category", json.dumps("trapped_people\n")),
    ("category", json.dumps("road_closure")),
    ("category", "true"),
    ("lat", "true"),
    ("lat", "NaN"),
    ("lat", "Infinity"),
    ("lat", "-Infinity"),
    ("lat", "1e999"),
    ("lat", "90.0001"),
    ("lat", json.dumps("30.5\n")),
    ("lat", json.dumps("nan")),
    ("lat", json.dumps("1e3")),
    ("lat", "[30]"),
    ("lat", '{"a": 1}'),
    ("lon", "180.5"),
    ("lon", "-1" + "0" * 400),
    ("lon", "false"),
    ("severity", json.dumps("red\n")),
    ("severity", json.dumps("catastrophic")),
    ("description", json.dumps("fine\n")),
    ("description", json.dumps("a\x1bb")),
    ("description", json.dumps("a\u202eb")),
    ("description", json.dumps("a\ud800b")),
    ("description", json.dumps("x" * 2001)),
    ("description", "12"),
    ("status", json.dumps("open\n")),
    ("status", "null"),
]


@pytest.mark.parametrize(("field", "value"), HOSTILE, ids=[f"{f}={v[:20]}" for f, v in HOSTILE])
def test_hostile_values_are_refused_per_field(client, r, ns, field, value):
    keys = Keys(ns)
    good = report(keys, r)
    good.pop(field, None)
    text = json.dumps(good)[:-1] + f', "{field}": {value}}}'
    resp = client.post(f"/api/{ns}/incidents", data=text, content_type="application/json", headers=basic("fire"))
    assert resp.status_code == 422, resp.data
    assert set(resp.get_json()["errors"]) == {field}
    assert not r.hexists(keys.incidents, "CAD-7")


def test_good_values_at_the_edges_are_taken(client, r, ns):
    keys = Keys(ns)
    url = f"/api/{ns}/incidents"
    for i, over in enumerate([{"lat": "30.05", "lon": "114.05"}, {"lat": -90, "lon": 180}, {"lat": 90.0, "lon": -180.0},
                              {"severity": ""}, {"description": "line one\nline two"}, {"description": "洪水 🌊"},
                              {"id": "A" * 64}, {"status": "closed"}]):
        resp = client.post(url, json=report(keys, r, **{"id": f"G-{i}", **over}), headers=basic("fire"))
        assert resp.status_code == 201, (over, resp.get_json())


def test_body_too_big_too_deep_or_not_json_is_4xx(client, r, ns):
    url = f"/api/{ns}/incidents"
    n = r.hlen(Keys(ns).incidents)
    h = basic("fire")
    cases = [
        ("[" * 100_000 + "]" * 100_000, 413),  # over the size limit
        ("[" * 5000 + "]" * 5000, 400),  # deep, under the size limit
        ('{"id": ' + "[" * 10 + "]" * 10 + "}", 400),
        ('{"description": "' + "x" * 20_000 + '"}', 413),
        ("not json", 400),
        ('{"id": "x",', 400),
        ('{"lat": 1' + "0" * 5000 + "}", 400),  # an integer too long to convert
    ]
    for body, status in cases:
        resp = client.post(url, data=body, content_type="application/json", headers=h)
        assert resp.status_code == status, (body[:30], resp.status_code)
        assert resp.get_json()["errors"]["body"]
    assert client.post(url, data=b'{"id": "\xff"}', content_type="application/json", headers=h).status_code == 400
    assert client.post(url, data="{}", content_type="text/plain", headers=h).status_code == 400
    # a body with no Content-Length (chunked) is bounded too
    chunked = client.post(url, input_stream=io.BytesIO(b"[" * 100_000), content_type="application/json",
                          headers={**h, "Transfer-Encoding": "chunked"})
    assert 400 <= chunked.status_code < 500
    assert r.hlen(Keys(ns).incidents) == n  # nothing taken


# ---- properties ------------------------------------------------------------------------------------------
NOW = parse_time("2026-07-01T03:00:00+08:00")
_scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80)
            | st.sampled_from(list(CATEGORIES) + ["red", "open", "closed", "30.5", to_iso(NOW), "CAD-1"]))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                       max_leaves=6)
_payloads = st.dictionaries(st.sampled_from(list(incidents.FIELDS)) | st.text(max_size=10), _values, max_size=10)


def _clean(s: str, multiline: bool = False) -> bool:
    import unicodedata

    return s == s.strip() and not any(
        (unicodedata.category(c) in ("Cc", "Cs") and not (multiline and c == "\n")) for c in s)


@settings(max_examples=400, deadline=None)
@given(payload=_payloads, source=st.sampled_from([INTAKE, FORM, DRILL]))
def test_property_validator_refuses_or_returns_a_clean_incident(payload, source):
    import math

    try:
        inc = validate_incident(payload, source, now=NOW)
    except InvalidInput as exc:
        assert exc.errors and all(isinstance(v, str) and v for v in exc.errors.values())
        return
    assert NOW - 7 * DAY <= inc.time <= NOW + DAY
    assert inc.category in CATEGORIES and inc.severity in ("", "yellow", "orange", "red")
    assert inc.status in ("open", "closed")
    assert math.isfinite(inc.lat) and -90 <= inc.lat <= 90 and math.isfinite(inc.lon) and -180 <= inc.lon <= 180
    assert _clean(inc.id) and len(inc.id) <= 64 and _clean(inc.description, multiline=True)
    inc.model_dump_json().encode("utf-8")  # storable


@settings(max_examples=200, deadline=None)
@given(text=st.text(min_size=1, max_size=30), bad=st.sampled_from(["\n", "\r", "\x00", "\x1f", "\x7f", "\x85",
                                                                   "\ud800", "\udfff", "\u202e", "\u2028"]))
def test_property_a_control_character_anywhere_is_refused(text, bad):
    for field, value in (("id", f"A{text}{bad}"), ("description", f"x{bad}{text}x" if bad != "\n" else f"{text}{bad}")):
        body = {"id": "CAD-1", "time": to_iso(NOW), "category": "flooding", "lat": 1, "lon": 1, field: value}
        with pytest.raises(InvalidInput) as exc:
            validate_incident(body, INTAKE, now=NOW)
        assert field in exc.value.errors


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(_payloads.map(lambda p: json.dumps(p, allow_nan=True)), st.text(max_size=200),
                      st.binary(max_size=200)))
def test_property_intake_never_answers_5xx(client, r, ns, body):
    resp = client.post(f"/api/{ns}/incidents", data=body, content_type="application/json", headers=basic("fire"))
    assert resp.status_code in (200, 201, 400, 403, 413, 422), resp.data
