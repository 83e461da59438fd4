"""The web app without a browser: sign-in, authorisation, the map callback's logic, the interop routes."""

from __future__ import annotations

import base64
import subprocess
import sys

import orjson
import pytest
from dash import Patch, no_update
from lxml import etree

from command.config import Settings
from command.keys import Keys
from command.ops.dispatch import dispatch
from command.scenarios.replay import run_replay
from command.trust.auth import authenticate, load_users

from .conftest import ROOT, SCENARIOS


@pytest.fixture
def app(redis_url, tmp_path, r):
    from app import create_app

    return create_app(Settings(data_dir=tmp_path / "var"), redis_url=redis_url)


@pytest.fixture
def client(app):
    return app.server.test_client()


def sign_in(client, user="operator", password="flood-demo"):
    return client.post("/login", data={"username": user, "password": password})


def basic(user="operator", password="flood-demo"):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_every_page_needs_sign_in(client):
    for path in ("/", "/department", "/exercise", "/feeds"):
        resp = client.get(path)
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/login")
    assert client.post("/_dash-update-component", json={}).status_code == 401
    assert client.get("/api/live/geojson/stations").status_code == 401


def test_sign_in_sends_each_role_home(client):
    assert sign_in(client, "wrong", "x").status_code == 401
    assert sign_in(client, "operator", "nope").status_code == 401
    assert sign_in(client, "operator").headers["Location"] == "/"
    assert sign_in(client, "fire").headers["Location"] == "/department"
    assert sign_in(client, "planner").headers["Location"] == "/exercise"


def test_login_refuses_to_redirect_off_site(client):
    resp = client.post("/login", data={"username": "operator", "password": "flood-demo", "next": "//evil.example/"})
    assert resp.headers["Location"] == "/"


def test_users_are_hashed_and_added_by_command(tmp_path):
    path = tmp_path / "users.yaml"
    proc = subprocess.run([sys.executable, "-m", "command", "users", "add", "duty2", "--department", "medical",
                           "--file", str(path)], input="s3cret-pass\n", text=True, capture_output=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    text = path.read_text()
    assert "s3cret-pass" not in text and "scrypt:" in text
    users = load_users(path)
    assert authenticate(users, "duty2", "s3cret-pass").department == "medical"
    assert authenticate(users, "duty2", "wrong") is None
    bad = subprocess.run([sys.executable, "-m", "command", "users", "add", "x1", "--department", "navy",
                          "--file", str(path)], input="longenough\n", text=True, capture_output=True, cwd=ROOT)
    assert bad.returncode == 2 and "unknown department 'navy'" in bad.stderr


# ---- the map callback's logic ------------------------------------------------------------------------
def test_map_update_sends_nothing_when_nothing_changed_and_a_patch_when_something_did(app, r):
    from layouts.operator.figure import map_update

    res = run_replay(r, SCENARIOS / "rule_zone_incident")
    keys = Keys(res.namespace)
    with app.server.test_request_context("/"):
        fig, ver = map_update(r, keys, "en", None)
        assert isinstance(fig, dict) and len(fig["data"][0]["lon"]) == 3 and len(fig["data"][2]["lon"]) == 8
        again = map_update(r, keys, "en", ver)
        assert again == (no_update, no_update)
        a = orjson.loads(r.get(keys.alert(r.zrange(keys.alerts_open, 0, 0)[0].decode())))
        dispatch(r, keys, fingerprint=a["fingerprint"], level="red", resource_ids=["B1"], operator="op", now=1)
        patch, ver2 = map_update(r, keys, "en", ver)
        assert isinstance(patch, Patch) and ver2["resources"] != ver["resources"]
        ops = patch.to_plotly_json()["operations"]
        # only the resources layer and the routes of units on their way are sent
        assert [op["location"] for op in ops] == [["data", 2], ["data", 3]]
        # another language, or another namespace, gets the whole map again
        assert isinstance(map_update(r, keys, "zh", ver2)[0], dict)


def test_station_values_are_patched_point_by_point(app, r):
    from command.streams import StreamWriter
    from layouts.operator.figure import map_update

    res = run_replay(r, SCENARIOS / "rule_threshold")
    keys = Keys(res.namespace)
    with app.server.test_request_context("/"):
        _, ver = map_update(r, keys, "en", None)
        w = StreamWriter(r, keys, 1, record=True)
        w.reading("WL-F", "water_level", 1_900_000_000_000, 1.0)
        w.flush()
        patch, _ = map_update(r, keys, "en", ver)
        locs = [op["location"] for op in patch.to_plotly_json()["operations"]]
        assert ["data", 0, "customdata", 2] in locs  # WL-F is the third station in id order (RF-A, WL-A, WL-F)
        assert all(loc[:2] == ["data", 0] for loc in locs)


def test_department_form_cannot_touch_another_departments_task(app, r):
    from layouts.department import submit_status

    res = run_replay(r, SCENARIOS / "rule_zone_incident")
    keys = Keys(res.namespace)
    a = orjson.loads(r.get(keys.alert(r.zrange(keys.alerts_open, 0, 0)[0].decode())))
    d = dispatch(r, keys, fingerprint=a["fingerprint"], level="red", resource_ids=["B1"], operator="op", now=1)
    police = {"username": "police", "department": "police", "role": "department"}
    with app.server.test_request_context("/"):
        theirs = submit_status(r, keys, police, f"{d.id}-fire_rescue", "completed", "", None, None, None, "en")
        unknown = submit_status(r, keys, police, f"{d.id}-police", "completed", "", None, None, None, "en")
    # the same answer as for a task that does not exist: no oracle for other departments' task ids
    assert theirs[1] == {"": f"unknown task {d.id}-fire_rescue"} and unknown[1] == {"": f"unknown task {d.id}-police"}
    assert orjson.loads(r.get(keys.task(f"{d.id}-fire_rescue")))["status"] == "assigned"


# ---- interop routes ------------------------------------------------------------------------------------
@pytest.fixture
def drill_ns(r):
    return run_replay(r, SCENARIOS / "rule_threshold").namespace


def test_geojson_layers(client, drill_ns):
    resp = client.get(f"/api/{drill_ns}/geojson/stations", headers=basic())
    assert resp.status_code == 200 and resp.mimetype == "application/geo+json"
    fc = resp.get_json()
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 3
    assert {f["geometry"]["type"] for f in fc["features"]} == {"Point"}
    for layer in ("zones", "alerts", "resources", "warnings"):
        assert client.get(f"/api/{drill_ns}/geojson/{layer}", headers=basic()).get_json()["type"] == "FeatureCollection"
    assert client.get(f"/api/{drill_ns}/geojson/rivers", headers=basic()).status_code == 404
    assert client.get("/api/no-such-ns/geojson/zones", headers=basic()).status_code == 404
    assert client.get(f"/api/{drill_ns}/geojson/zones", headers=basic(password="wrong")).status_code == 401


def test_atom_and_cap_routes_serve_valid_cap(client, drill_ns, r):
    from command.publish.cap import alert_messages

    sign_in(client)
    atom = client.get(f"/api/{drill_ns}/alerts.atom")
    assert atom.status_code == 200 and atom.mimetype == "application/atom+xml"
    etree.fromstring(atom.data)
    fp = next(iter(alert_messages(r, Keys(drill_ns))))
    cap = client.get(f"/api/{drill_ns}/cap/{fp}.xml")
    assert cap.status_code == 200
    root = etree.fromstring(cap.data)
    assert root.tag == "{urn:oasis:names:tc:emergency:cap:1.2}alert"
    assert root.findtext("{urn:oasis:names:tc:emergency:cap:1.2}status") == "Exercise"


def test_incident_intake_validates_every_field_and_takes_once(client, drill_ns, r):
    keys = Keys(drill_ns)
    url = f"/api/{drill_ns}/incidents"
    bad = client.post(url, json={"id": "CAD 1", "time": "yesterday", "lat": 91, "lon": 114}, headers=basic())
    assert bad.status_code == 422
    assert set(bad.get_json()["errors"]) == {"id", "time", "category", "lat"}
    assert r.hlen(keys.incidents) == 0
    assert client.post(url, data="not json", headers=basic()).status_code == 400
    good = {"id": "CAD-1", "time": "2026-07-01T02:00:00+08:00", "category": "trapped_people", "lat": 30.05,
            "lon": 114.05, "severity": "red", "description": "two people on a roof"}
    first = client.post(url, json=good, headers=basic("fire"))
    assert first.status_code == 201 and first.get_json() == {"id": "CAD-1", "taken": True}
    again = client.post(url, json=good, headers=basic("fire"))
    assert again.status_code == 200 and again.get_json()["taken"] is False
    assert orjson.loads(r.hget(keys.incidents, "CAD-1"))["zone"] == "Z-HIGH"
    from command.trust.audit import entries

    assert [e["action"] for e in entries(r, keys)] == ["incident_intake"]


def test_queue_draws_the_most_severe_first_and_counts_the_rest(app, r):
    """Past 30 alerts the queue draws 30 cards (most severe, then oldest) and says how many more."""
    from command.publish.views import alert_queue
    from layouts.operator.queue import QUEUE_SHOWN, queue_view

    res = run_replay(r, SCENARIOS / "rule_threshold")
    keys = Keys(res.namespace)
    # 40 extra open alerts, as the engine writes them (only the fields the queue reads)
    for i in range(40):
        fp = f"fake{i:03d}"
        a = {"fingerprint": fp, "rule": "river-stage", "rule_kind": "threshold", "subject": f"X{i}",
             "subject_type": "incident", "status": "open", "level": "yellow" if i % 4 else "red", "peak_level": "red",
             "value": 1.0, "peak_value": 1.0, "unit": "m", "first_breach_at": i, "opened_at": 1000 + i,
             "updated_at": 1000 + i, "resolved_at": None, "lon": 114.0, "lat": 30.0, "zone": None,
             "trend_per_h": None, "next_level": None, "next_level_eta": None, "message": f"X{i}"}
        r.set(keys.alert(fp), orjson.dumps(a))
        r.zadd(keys.alerts_open, {fp: 1000 + i})
    full = alert_queue(r, keys)
    assert len(full) == 40
    with app.server.test_request_context("/"):
        cards = queue_view(r, keys, "en")
        assert len(cards) == QUEUE_SHOWN + 1
        assert [c.id["fp"] for c in cards[:10]] == [a["fingerprint"] for a in full[:10]]
        assert full[0]["level"] == "red" and full[9]["level"] == "red" and full[10]["level"] == "yellow"
        more = cards[-1].children
        assert more.id == "map-queue-toggle" and more.children.startswith("10 more alerts (10 yellow)")
        assert len(queue_view(r, keys, "en", show_all=True)) == 40 + 1


def test_password_guessing_is_slowed(client, r):
    for _ in range(5):
        assert sign_in(client, "operator", "guess").status_code == 401
    locked = sign_in(client, "operator", "flood-demo")  # even the right password waits now
    assert locked.status_code == 429 and b"Too many failed attempts" in locked.data
    assert sign_in(client, "fire").status_code == 302  # other users are not affected
    from command.keys import login_failures

    r.delete(login_failures("operator"))
    assert sign_in(client, "operator").status_code == 302


def test_operator_actions_show_the_domains_refusals(app, r, monkeypatch):
    """A refusal reaches the operator as its message: dispatch's own errors and command/errors.py's."""
    from command import errors
    from layouts.operator import actions

    res = run_replay(r, SCENARIOS / "rule_zone_incident")
    keys = Keys(res.namespace)
    a = orjson.loads(r.get(keys.alert(r.zrange(keys.alerts_open, 0, 0)[0].decode())))
    op = {"username": "operator", "department": "emergency_management", "role": "operator"}
    target = {"fp": a["fingerprint"], "level": a["level"]}
    with app.server.test_request_context("/"):
        # nothing chosen: the dialog closes, the toast says why nothing was dispatched
        is_open, err, toast, changed = actions.confirm_action(r, keys, {**target, "action": "change"}, [], "", op, "en")
        assert (is_open, err, toast.color, changed) == (False, "", "warning", True) and toast.children
        # resolving without a reason: the dialog stays open with the message
        is_open, err, toast, changed = actions.confirm_action(r, keys, {**target, "action": "resolve"}, None, "", op, "en")
        assert is_open and err and toast is None and not changed

        def refuse(*_a, **_k):
            raise errors.Conflict("the alert moved on: look again")

        monkeypatch.setattr(actions, "dispatch", refuse)
        monkeypatch.setattr(actions, "alert_action", refuse)
        toast = actions.dispatch_recommended(r, keys, a["fingerprint"], a["level"], op, "en", resource_ids=["B1"])
        assert toast.children == "the alert moved on: look again" and toast.color == "warning"
        assert actions.confirm_action(r, keys, {**target, "action": "acknowledge"}, None, "", op, "en")[:2] == \
            (True, "the alert moved on: look again")
