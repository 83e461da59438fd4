"""Operators first: while a web worker's answers are slow, department and shell polls get 204 at once
(layouts/polling.py) and everything else is served. The real app (Flask test client, real Redis) with
the page requests recorded from Chromium (bench/recorded/requests.json)."""

from __future__ import annotations

import io
import json
import time

import pytest

from command.config import Settings
from command.scenarios.replay import run_replay
from layouts.polling import BUSY_LIMIT, SERVE_EVERY, PollShedder, low_priority

from .conftest import ROOT, SCENARIOS

RECORDED = ROOT / "bench" / "recorded" / "requests.json"


def _poll(page: str, interval: str, ns: str) -> dict:
    doc = json.loads(RECORDED.read_text())
    doc = json.loads(json.dumps(doc).replace(doc["namespace"], ns))
    return next(b for b in reversed(doc[page]["polls"]) if b.get("changedPropIds") == [f"{interval}.n_intervals"])


def test_only_department_and_shell_polls_are_low_priority():
    def body(*changed):
        return json.dumps({"output": "x.children", "changedPropIds": list(changed)}).encode()

    assert low_priority(body("dept-tick.n_intervals")) and low_priority(body("shell-tick.n_intervals"))
    assert not low_priority(body("map-tick.n_intervals"))
    assert not low_priority(body("dept-tick.n_intervals", '{"type":"dept-submit","task":"t1"}.n_clicks'))
    assert not low_priority(body()) and not low_priority(b"not json") and not low_priority(b"[1, 2]")


def _call(app, body: bytes) -> str:
    got = {}

    def start_response(status, headers):
        got["status"] = status

    environ = {"PATH_INFO": "/_dash-update-component", "REQUEST_METHOD": "POST",
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
    b"".join(app(environ, start_response))
    return got["status"]


def test_department_polls_are_shed_while_the_other_threads_are_busy():
    def downstream(environ, start_response):
        start_response("200 OK", [])
        return [b"{}"]

    shed = PollShedder(downstream, threshold_ms=100)
    dept = json.dumps({"output": "dept-tasks.children", "changedPropIds": ["dept-tick.n_intervals"]}).encode()
    op = json.dumps({"output": "map-graph.figure", "changedPropIds": ["map-tick.n_intervals"]}).encode()
    shed.in_flight = BUSY_LIMIT  # as while this worker's other threads answer callbacks
    assert _call(shed, dept).startswith("204") and _call(shed, op).startswith("200")
    shed.in_flight = BUSY_LIMIT - 1
    assert _call(shed, dept).startswith("200") and shed.shed == 1


def test_shedding_starts_when_answers_are_slow_and_stops_when_they_are_fast_again():
    delay = {"s": 0.03}
    seen = []

    def downstream(environ, start_response):
        seen.append(environ["wsgi.input"].read())  # the body arrives whole, as sent
        time.sleep(delay["s"])
        start_response("200 OK", [])
        return [b"{}"]

    shed = PollShedder(downstream, threshold_ms=10, alpha=0.5)
    dept = json.dumps({"output": "dept-tasks.children", "changedPropIds": ["dept-tick.n_intervals"]}).encode()
    op = json.dumps({"output": "map-graph.figure", "changedPropIds": ["map-tick.n_intervals"]}).encode()
    assert _call(shed, dept).startswith("200")  # not overloaded yet: served
    for _ in range(3):
        assert _call(shed, op).startswith("200")
    assert shed.overloaded()
    statuses = [_call(shed, dept)[:3] for _ in range(SERVE_EVERY * 2)]
    # shed, but one in SERVE_EVERY served all the same (the average keeps following the load)
    assert statuses.count("204") == shed.shed == (SERVE_EVERY - 1) * 2 and statuses.count("200") == 2
    assert _call(shed, op).startswith("200")  # the operator is always served
    delay["s"] = 0.0
    for _ in range(10):
        _call(shed, op)
    assert not shed.overloaded()
    assert _call(shed, dept).startswith("200") and shed.shed == (SERVE_EVERY - 1) * 2
    assert seen[0] == dept


@pytest.fixture
def app(redis_url, tmp_path, r):
    from app import create_app

    return create_app(Settings(data_dir=tmp_path / "var", web_shed_ms=100), redis_url=redis_url)


def test_the_real_app_sheds_department_polls_and_serves_the_operator_map(app, r):
    ns = run_replay(r, SCENARIOS / "jiangcheng_flood").namespace
    shedder = app.server.wsgi_app
    assert isinstance(shedder, PollShedder)
    phone, console = app.server.test_client(), app.server.test_client()
    for client, user in ((phone, "fire"), (console, "operator")):
        assert client.post("/login", data={"username": user, "password": "flood-demo"}).status_code == 302
    hdr = {"Origin": "http://localhost"}
    dept, shell, op = _poll("department", "dept-tick", ns), _poll("department", "shell-tick", ns), \
        _poll("operator", "map-tick", ns)
    assert phone.post("/_dash-update-component", json=dept, headers=hdr).status_code == 200

    shedder.average_s = 10.0  # as after slow answers
    assert phone.post("/_dash-update-component", json=dept, headers=hdr).status_code == 204
    assert phone.post("/_dash-update-component", json=shell, headers=hdr).status_code == 204
    assert shedder.shed == 2
    shedder.average_s = 10.0
    answer = console.post("/_dash-update-component", json=op, headers=hdr)
    assert answer.status_code == 200 and answer.get_json()["response"]  # served: the map page's answer

    shedder.average_s = 0.0
    assert phone.post("/_dash-update-component", json=dept, headers=hdr).status_code == 200
    assert shedder.shed == 2
