"""The classification at the web app's edges: /api/ (sessions, HTTP Basic, tokens by scope), the
after-action report route, and what the operator and department pages draw. Flask test client, real Redis."""

from __future__ import annotations

import base64

import orjson
import pytest

from command.config import Settings
from command.trust import audit
from command.trust.classification import Viewer
from command.trust.tokens import add_token

from .test_classification_readers import MASKED, NAME, PHONE, WHOLE, reads
from .test_classification_readers import world as world  # noqa: F401, PLC0414 - the shared fixture

WATER = Viewer("water", "internal", "water_authority")
OPERATOR = Viewer("operator", "secret", "emergency_management")


@pytest.fixture
def app(redis_url, tmp_path, r):
    from app import create_app

    return create_app(Settings(data_dir=tmp_path / "var"), redis_url=redis_url)


@pytest.fixture
def client(app):
    return app.server.test_client()


def basic(user):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:flood-demo".encode()).decode()}


def bearer(tmp_path, name, *scopes):
    _, token = add_token(tmp_path / "var" / "tokens.yaml", name, list(scopes))
    return {"Authorization": f"Bearer {token}"}


def incident_props(resp):
    assert resp.status_code == 200, resp.data
    return {f["id"]: f["properties"] for f in orjson.loads(resp.data)["features"]}


def test_geojson_incidents_layer_over_the_api(client, world, r, tmp_path):  # noqa: F811
    keys = world[0]
    url = f"/api/{keys.ns}/geojson/incidents"
    assert incident_props(client.get(url, headers=basic("water")))["CAD-9"]["reporter"] == MASKED
    assert reads(r, keys) == []
    assert incident_props(client.get(url, headers=basic("police")))["CAD-9"]["reporter"] == WHOLE
    [entry] = reads(r, keys)
    assert entry["who"] == "police" and entry["details"]["view"] == "geojson:incidents"
    internal = bearer(tmp_path, "gis", "read_internal")
    assert incident_props(client.get(url, headers=internal))["CAD-9"]["reporter"] == MASKED
    assert client.get(url, headers=bearer(tmp_path, "web", "read_public")).status_code == 403
    assert client.get(f"{url}.geojson", headers=basic("water")).status_code == 200


def test_atom_and_cap_over_the_api_by_clearance(client, world, r, tmp_path):  # noqa: F811
    keys, fp, _task, _dept = world
    public = bearer(tmp_path, "web", "read_public")
    text = client.get(f"/api/{keys.ns}/alerts.atom", headers=public).get_data(as_text=True)
    assert fp in text and "two people on a roof" not in text and "138" not in text
    text = client.get(f"/api/{keys.ns}/alerts.atom", headers=basic("water")).get_data(as_text=True)
    assert "two people on a roof" in text and "138****8000" in text and PHONE not in text
    cap = client.get(f"/api/{keys.ns}/cap/{fp}.xml", headers=basic("police")).get_data(as_text=True)
    assert f"{NAME} {PHONE}" in cap
    assert client.get(f"/api/{keys.ns}/cap/{fp}.xml", headers=public).get_data(as_text=True).count("<contact>") == 0


def test_the_after_action_report_route(client, world, r):  # noqa: F811
    keys = world[0]
    client.post("/login", data={"username": "planner", "password": "flood-demo"})
    html = client.get(f"/exercise/report/{keys.ns}").get_data(as_text=True)
    assert "138****8000" in html and PHONE not in html
    client.get("/logout")
    client.post("/login", data={"username": "operator", "password": "flood-demo"})
    html = client.get(f"/exercise/report/{keys.ns}").get_data(as_text=True)
    assert PHONE in html
    assert [e["details"]["view"] for e in audit.entries(r, keys) if e["action"] == audit.READ_ACTION] == ["after_action"]


def test_the_pages_draw_what_the_viewer_may_see(app, world, r):  # noqa: F811
    from layouts.department import tasks_view
    from layouts.operator.figure import build_figure
    from layouts.operator.queue import dispatch_view, queue_view

    keys, fp, task_id, dept = world

    def text(component) -> str:
        return str(component)

    with app.server.test_request_context("/"):
        for viewer, shown, hidden in ((WATER, "138****8000", PHONE), (OPERATOR, PHONE, "138****8000")):
            assert shown in text(queue_view(r, keys, "en", viewer=viewer))
            assert hidden not in text(queue_view(r, keys, "en", viewer=viewer))
            board = text(dispatch_view(r, keys, "en", viewer))
            assert shown in board and hidden not in board
            assert ("+86****5678" if viewer is WATER else "+8613912345678") in board
            page = text(tasks_view(r, keys, dept, "zh", viewer))
            assert shown in page and hidden not in page and "报告人" in page and "获救人员" in page
            fig, _ = build_figure(r, keys, "en", viewer=viewer)
            hover = [c for c in fig["data"][1]["customdata"] if c[0] == "CAD-9"][0][4]
            assert shown in hover and hidden not in hover


def test_the_department_forms_take_a_reporter_and_a_person_assisted(app, world, r):  # noqa: F811
    from layouts.department import _person_typed, report_incident, submit_status

    keys, _fp, task_id, dept = world
    user = {"username": "crew", "department": dept, "role": "department", "clearance": "internal"}
    with app.server.test_request_context("/"):
        msg, problems = submit_status(r, keys, user, task_id, "on_scene", "", None, None, None, "en",
                                      person_name=" 赵六 ", person_phone="137 0000 1111")
        assert problems == {} and msg.id == "dept-saved"
        msg, problems = submit_status(r, keys, user, task_id, "on_scene", "", None, None, None, "en",
                                      person_name="x", person_phone="not a phone")
        assert "people[0].phone" in problems[""] and "not a phone" not in problems[""]
        msg, errs = submit_status(r, keys, user, task_id, "on_scene", "", None, None, None, "en",
                                  person_name=["crafted"], person_phone=None)
        assert "people[0].name" in errs[""]
        form = {"category": "flooding", "severity": "red", "lat": 30.05, "lon": 114.05, "description": "x",
                "reporter": _person_typed("Jane Doe", "+44 20 7946 0000")}
        msg, *errs = report_incident(r, keys, user, form, "en")
        assert msg.id == "dept-inc-ok" and errs == ["", "", "", "", ""]
        bad = {**form, "reporter": _person_typed("", "12")}
        msg, *errs = report_incident(r, keys, user, bad, "en")
        assert "reporter.phone" in msg.children and errs == ["", "", "", "", ""]
    people = orjson.loads(r.get(keys.task(task_id)))["people"]
    assert people[-1] == {"name": "赵六", "phone": "13700001111"}
    [mine] = [orjson.loads(v) for v in r.hvals(keys.incidents) if orjson.loads(v)["id"].startswith("R-")]
    assert mine["reporter"] == {"name": "Jane Doe", "phone": "+442079460000"}
    assert _person_typed(None, "") is None and _person_typed("  ", None) is None


def test_the_after_action_report_allows_its_own_chart_scripts_and_no_other(client, world):  # noqa: F811
    from command.publish.report import inline_script_hashes

    keys = world[0]
    client.post("/login", data={"username": "planner", "password": "flood-demo"})
    resp = client.get(f"/exercise/report/{keys.ns}")
    csp = resp.headers["Content-Security-Policy"]
    script_src = next(p for p in csp.split("; ") if p.startswith("script-src"))
    hashes = inline_script_hashes(resp.get_data(as_text=True))
    assert hashes and all(h in script_src for h in hashes)
    assert "unsafe-inline" not in script_src and "frame-ancestors 'none'" in csp
