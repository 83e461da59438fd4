"""The change gate (layouts/changes.py): what each page polls once a second instead of its callbacks.
The real app (Flask test client, real Redis): who may ask what, that a token changes exactly when what
a page shows changes, that crafted namespaces cannot grow a worker's memory, and that a Redis outage is
answered 503 with the time it began (not a 500), for the gate and for every callback."""

from __future__ import annotations

import socket
import time

import orjson
import pytest

from command.config import Settings
from command.keys import LIVE, Keys
from command.ops.dispatch import dispatch
from command.scenarios.replay import run_replay
from layouts.changes import MAX_TOKENS, TimedCache, department_parts, digest, map_parts, shell_parts

from .conftest import SCENARIOS


@pytest.fixture
def app(redis_url, tmp_path, r):
    from app import create_app

    return create_app(Settings(data_dir=tmp_path / "var"), redis_url=redis_url)


def client_as(app, user: str):
    c = app.server.test_client()
    assert c.post("/login", data={"username": user, "password": "flood-demo"}).status_code == 302
    return c


def ask(c, ns: str = LIVE, page: str = "map"):
    resp = c.get("/_changes", query_string={"ns": ns, "page": page})
    return resp.status_code, (orjson.loads(resp.data) if resp.data else None)


def fresh(app) -> None:
    """Forget the worker's tokens (they live `TTL_S`): the next question reads Redis."""
    tokens = app.server.extensions["ecd_changes"]
    tokens._items.clear()


# ---- pure parts --------------------------------------------------------------------------------------------
def test_tokens_are_cached_for_their_ttl_and_bounded():
    now = [0.0]
    tokens = TimedCache(ttl=0.25, size=3, clock=lambda: now[0])
    calls = []

    def compute(v):
        calls.append(v)
        return v

    assert tokens.get(("a",), lambda: compute(1)) == 1
    assert tokens.get(("a",), lambda: compute(2)) == 1  # within the TTL: not recomputed
    now[0] = 0.3
    assert tokens.get(("a",), lambda: compute(3)) == 3
    for k in "bcde":
        tokens.get((k,), lambda: compute(0))
    assert len(tokens) == 3 and calls == [1, 3, 0, 0, 0, 0]


def test_a_department_token_follows_its_tasks_the_incidents_and_the_clock_minute_only():
    tasks = [b'{"id": "t1", "status": "dispatched"}']
    base = digest(department_parts(tasks, 7, 120_000))
    assert digest(department_parts(tasks, 7, 179_999)) == base  # the same minute
    assert digest(department_parts(tasks, 7, 180_000)) != base
    assert digest(department_parts(tasks, 8, 120_000)) != base  # an incident changed
    assert digest(department_parts([b'{"id": "t1", "status": "on_scene"}'], 7, 120_000)) != base
    assert digest(department_parts([*tasks, b"{}"], 7, 120_000)) != base


def test_shell_and_map_tokens_follow_what_they_draw():
    drills = [{"namespace": "d1", "scenario": "s", "status": "running", "published": 10}]
    meta = [b"Asia/Shanghai", b"exercise", b"s"]
    base = digest(shell_parts(drills, 60_000, meta, {"speed": "10", "paused": "0"}))
    # a drill's progress is not in the view menu; its status, pause and speed are
    assert digest(shell_parts([{**drills[0], "published": 11}], 60_001, meta, {"speed": "10", "paused": "0"})) == base
    assert digest(shell_parts(drills, 60_000, meta, {"speed": "10", "paused": "1"})) != base
    assert digest(shell_parts([{**drills[0], "status": "finished"}], 60_000, meta, {"speed": "10", "paused": "0"})) != base
    ver = {"alerts": "1-0", "clock": 1}
    assert digest(map_parts(ver, {"closures": 0})) != digest(map_parts({**ver, "clock": 2}, {"closures": 0}))


# ---- the route ----------------------------------------------------------------------------------------------
def test_signed_out_asks_get_401_json_and_no_token(app):
    c = app.server.test_client()
    status, body = ask(c)
    assert status == 401 and body["error"] == "not_signed_in" and "s" not in body


def test_each_role_asks_only_about_pages_it_may_see(app):
    fire, op, planner, auditor = (client_as(app, u) for u in ("fire", "operator", "planner", "auditor"))
    assert ask(op, page="map")[0] == 200 and ask(planner, page="map")[0] == 200
    for c, page in ((fire, "map"), (planner, "department"), (auditor, "map"), (fire, "audit")):
        status, body = ask(c, page=page)
        assert status == 403 and body["error"] == "forbidden" and "p" not in body, (page, body)
    status, body = ask(auditor, page="audit")
    assert status == 200 and body["p"] is None and body["s"]  # no page token: only the top bar's
    for page in ("nope", "x" * 100):
        assert ask(op, page=page)[0] == 400
    assert op.get("/_changes?ns=" + "n" * 300 + "&page=map").status_code == 400


def test_the_map_token_changes_when_an_alert_or_a_dispatch_lands_and_not_otherwise(app, r):
    res = run_replay(r, SCENARIOS / "rule_zone_incident")
    keys = Keys(res.namespace)
    op = client_as(app, "operator")
    _, first = ask(op, keys.ns)
    assert first["ns"] == keys.ns and first["p"]
    fresh(app)
    assert ask(op, keys.ns)[1] == first  # nothing changed: the same tokens
    a = orjson.loads(r.get(keys.alert(r.zrange(keys.alerts_open, 0, 0)[0].decode())))
    dispatch(r, keys, fingerprint=a["fingerprint"], level="red", resource_ids=["B1"], operator="op", now=1)
    fresh(app)
    _, after = ask(op, keys.ns)
    assert after["p"] != first["p"]


def test_a_department_token_changes_when_it_gets_a_task_not_when_another_does(app, r):
    res = run_replay(r, SCENARIOS / "rule_zone_incident")
    keys = Keys(res.namespace)
    fire, police = client_as(app, "fire"), client_as(app, "police")
    _, f0 = ask(fire, keys.ns, "department")
    _, p0 = ask(police, keys.ns, "department")
    assert f0["p"] != p0["p"]  # each department its own token
    # the dispatch board's unit B1 belongs to fire_rescue in this scenario
    a = orjson.loads(r.get(keys.alert(r.zrange(keys.alerts_open, 0, 0)[0].decode())))
    d = dispatch(r, keys, fingerprint=a["fingerprint"], level="red", resource_ids=["B1"], operator="op", now=1)
    depts = {t.rsplit("-", 1)[-1] for t in d.task_ids}
    fresh(app)
    _, f1 = ask(fire, keys.ns, "department")
    _, p1 = ask(police, keys.ns, "department")
    assert (f1["p"] != f0["p"]) == ("fire_rescue" in depts)
    assert (p1["p"] != p0["p"]) == ("police" in depts)
    assert depts and (f1["p"] != f0["p"] or p1["p"] != p0["p"])


def test_crafted_namespaces_are_answered_as_live_and_grow_nothing(app):
    op = client_as(app, "operator")
    _, live = ask(op, LIVE)
    tokens = app.server.extensions["ecd_changes"]
    size = len(tokens)
    for i in range(300):
        status, body = ask(op, f"no-such-{i}")
        assert status == 200 and body["ns"] == LIVE and body["p"] == live["p"]
    for bad in ("../../x", "a b", "{x}", ""):
        assert ask(op, bad)[1]["ns"] == LIVE
    assert len(tokens) == size <= MAX_TOKENS


def test_a_redis_outage_is_a_503_with_its_start_for_the_gate_and_the_callbacks(app):
    op = client_as(app, "operator")
    assert ask(op)[0] == 200
    with socket.socket() as s:  # a port nothing listens on: Redis "down"
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    live_url = app.server.config["ECD_REDIS_URL"]
    app.server.config["ECD_REDIS_URL"] = dead
    status, body = ask(op)
    assert status == 503 and body["error"] == "unavailable" and body["down_since"] > 0
    again = ask(op)[1]
    assert again["down_since"] == body["down_since"]  # since the first failure, not since each ask
    # a callback meets the same outage: a 503 with the reason, not a 500
    resp = op.post("/_dash-update-component", json={
        "output": "shell-banner.children...shell-clock.children",
        "outputs": [{"id": "shell-banner", "property": "children"}, {"id": "shell-clock", "property": "children"}],
        "inputs": [{"id": "chg-shell", "property": "data", "value": "x"}, {"id": "ns", "property": "data", "value": LIVE},
                   {"id": "lang", "property": "data", "value": "en"}],
        "changedPropIds": ["chg-shell.data"], "state": []}, headers={"Origin": "http://localhost"})
    assert resp.status_code == 503 and orjson.loads(resp.data)["error"] == "unavailable"
    # a page asked for meanwhile: a page that says so (not a 500, not JSON), and asks again by itself
    page = op.get("/department")
    assert page.status_code == 503 and page.mimetype == "text/html" and b"Data unavailable since" in page.data
    assert b'http-equiv="refresh"' in page.data
    # Redis back: answered again, and the next outage is dated from its own start
    app.server.config["ECD_REDIS_URL"] = live_url
    assert ask(op)[0] == 200
    time.sleep(0.01)
    app.server.config["ECD_REDIS_URL"] = dead
    assert ask(op)[1]["down_since"] > body["down_since"]


def test_while_redis_is_down_one_question_at_a_time_finds_out_and_the_others_are_answered_at_once(app, monkeypatch):
    """During an outage a worker's questions do not each wait out the probe client's timeout: while one
    is finding out whether Redis is back, the others get the 503 at once, without touching Redis."""
    from command.trust.sessions import SessionStore
    from layouts.changes import DOWN

    op = client_as(app, "operator")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    live_url = app.server.config["ECD_REDIS_URL"]
    app.server.config["ECD_REDIS_URL"] = dead
    first = ask(op)
    assert first[0] == 503
    loads = []
    real_load = SessionStore.load
    monkeypatch.setattr(SessionStore, "load", lambda self, sid: loads.append(sid) or real_load(self, sid))
    with DOWN.probe:  # another question is finding out
        status, body = ask(op)
        assert status == 503 and body["down_since"] == first[1]["down_since"] and loads == []
    app.server.config["ECD_REDIS_URL"] = live_url
    assert ask(op)[0] == 200 and len(loads) == 1  # no question finding out: this one does, and Redis is back
    assert DOWN.since is None and not DOWN.probe.locked()
