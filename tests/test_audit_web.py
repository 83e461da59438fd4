"""The /audit page and /audit/export.csv: for auditors only, checked on the server; and the drill controls
the exercise page sends are on the trail under the signed-in user's name."""

from __future__ import annotations

import csv
import io
import json
from contextlib import contextmanager
from contextvars import copy_context

import pytest

from command.keys import Keys
from command.ops import drills
from command.trust import audit, audit_keys
from layouts import audit as audit_page

from .conftest import SCENARIOS
from .test_web import app, client, sign_in  # noqa: F401 - fixtures


@pytest.fixture(autouse=True)
def _own_keys(monkeypatch):
    """create_app points this process's audit keys at its data folder: undo that afterwards."""
    monkeypatch.delenv(audit_keys.KEY_ENV, raising=False)
    monkeypatch.setattr(audit, "_store", None)


@contextmanager
def signed_in(app, client, user):  # noqa: F811
    """A request of `user`'s real signed-in session, in which to call the page's callbacks directly (each
    checks its declared policy itself too, layouts/access.py; over HTTP see tests/test_access.py)."""
    resp = sign_in(client, user)
    assert resp.status_code == 302
    cookies = "; ".join(c.split(";", 1)[0] for c in resp.headers.getlist("Set-Cookie"))  # the session's
    with app.server.test_request_context("/", headers={"Cookie": cookies}):
        assert app.server.preprocess_request() is None  # the sign-in gate lets it through
        yield


def triggered(prop_id, value=1):
    """Run a callback as Dash does when `prop_id` changed (Dash's documented way to test callbacks)."""
    from dash._callback_context import context_value
    from dash._utils import AttributeDict

    def run(func, *args):
        def inner():
            context_value.set(AttributeDict(triggered_inputs=[{"prop_id": prop_id, "value": value}]))
            return func(*args)
        return copy_context().run(inner)
    return run


def search(ns, **filters):
    return audit_page._search(1, *(filters.get(f) for f in ("user", "department", "action", "from", "to")), ns, "en")


def seed(r, keys):
    audit.record(r, keys, who="operator", action="dispatch", at=1_782_864_000_000,  # 2026-07-01 00:00 UTC
                 details={"alert": "a1"})
    audit.record(r, keys, who="fire", action="task_status", at=1_782_867_600_000,  # 01:00
                 details={"status": "on_scene", "comment": "=HYPERLINK(\"http://evil\")"})
    audit.record(r, keys, who="planner", action="drill_pause", at=1_782_871_200_000, details={})  # 02:00
    audit.record(r, keys, who="system", action="escalate_unacknowledged", at=1_782_874_800_000, details={})


@pytest.mark.parametrize("user", ["operator", "planner", "fire", "admin"])
def test_the_audit_page_and_its_export_refuse_other_roles(app, client, r, keys, user):  # noqa: F811
    seed(r, keys)
    assert client.get(f"/audit/export.csv?ns={keys.ns}").status_code == 302  # not signed in: to the sign-in
    assert client.get("/audit").status_code == 302
    with signed_in(app, client, user):
        for call in (lambda: audit_page.layout("en", keys.ns), lambda: search(keys.ns),
                     lambda: audit_page._verify(1, keys.ns, "en")):
            with pytest.raises(PermissionError):  # command.errors.Forbidden is one
                call()
    resp = client.get(f"/audit/export.csv?ns={keys.ns}")
    assert resp.status_code == 403 and b"dispatch" not in resp.data
    assert not [e for e in audit.entries(r, keys) if e["action"] == "audit_export"]


def test_the_page_is_listed_for_auditors_only():
    from layouts.audit import AUDIT_ROLES
    from layouts.shell import PAGE_ROLES, PAGES

    assert PAGES["/audit"] == "audit" and PAGE_ROLES["audit"] == AUDIT_ROLES == ("auditor",)


def test_an_auditor_searches_and_exports_the_filtered_rows(app, client, r, keys):  # noqa: F811
    seed(r, keys)

    def rows(**filters):
        data, msg, href = search(keys.ns, **filters)
        return data, json.dumps(msg.to_plotly_json(), default=str), href

    with signed_in(app, client, "auditor"):
        page = json.dumps(audit_page.layout("zh", keys.ns).to_plotly_json(), default=str, ensure_ascii=False)
        assert "审计日志" in page and "task_status" in page  # the action menu
        state = audit_page._verify(1, keys.ns, "en")
        assert state.className == "audit-state-intact"
        assert "Intact: 4 entries" in str(state.children[0].children)
        data, msg, _ = rows()
        assert [x["who"] for x in data] == ["system", "planner", "fire", "operator"]  # newest first
        assert [x["who"] for x in rows(user="FIR")[0]] == ["fire"]
        assert [x["department"] for x in rows(department="fire_rescue")[0]] == ["fire_rescue"]
        assert [x["who"] for x in rows(department="system")[0]] == ["system"]
        assert [x["action"] for x in rows(action="dispatch")[0]] == ["dispatch"]
        data, msg, _ = rows(**{"from": "2026-07-01 01:00", "to": "2026-07-01T02:00:00+00:00"})
        assert [x["who"] for x in data] == ["fire"] and "1 matching entries" in msg  # from inclusive, to exclusive
        assert len(rows(**{"from": "2026-07-01", "to": "2026-07-01"})[0]) == 4  # a date as the end: the whole day
        data, msg, _ = rows(**{"from": "yesterday"})
        assert data == [] and "Not a time: yesterday" in msg
        href = rows(department="fire_rescue")[2]
    # the export link carries the filters; the CSV has the same rows, and is itself on the record
    assert href == f"/audit/export.csv?ns={keys.ns}&department=fire_rescue"
    resp = client.get(href)
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    table = list(csv.DictReader(io.StringIO(resp.data.decode())))
    assert [x["who"] for x in table] == ["fire"] and table[0]["action"] == "task_status"
    assert "=HYPERLINK" in table[0]["details"] and not table[0]["details"].startswith("=")
    everything = client.get(f"/audit/export.csv?ns={keys.ns}").data.decode()
    assert [x["who"] for x in csv.DictReader(io.StringIO(everything))] == \
        ["operator", "fire", "planner", "system", "auditor", "auditor"]  # oldest first; both exports, this one too
    exported = [e for e in audit.entries(r, keys) if e["action"] == "audit_export"]
    assert [e["who"] for e in exported] == ["auditor", "auditor"]
    assert exported[-1]["details"] == {"department": "fire_rescue"}
    assert client.get(f"/audit/export.csv?ns={keys.ns}&from=nope").status_code == 400
    assert client.get("/audit/export.csv?ns=a:b").status_code == 404
    assert audit.verify(r, keys).ok


def test_the_page_shows_a_broken_chain(app, client, r, keys):  # noqa: F811
    seed(r, keys)
    _, f = r.xrange(keys.audit)[1]
    r.xadd(keys.audit, {**f, b"body": audit.body_of("fire", "task_status", 0, {})}, id="9999999999999-0")
    with signed_in(app, client, "auditor"):
        state = audit_page._verify(1, keys.ns, "en")
    assert state.className == "audit-state-broken"
    assert "BROKEN at entry 9999999999999-0" in str(state.children[0].children)


def test_drill_controls_are_audited_under_the_signed_in_user(app, client, r):  # noqa: F811
    from layouts import exercise

    runner = drills.DrillRunner(r)
    ns = drills.start_drill(r, SCENARIOS / "rule_zone_incident", "60", by="planner")
    for _ in range(200):
        runner.step(block_ms=1)
        if ns in runner.active:
            break

    def press(cmd, speed=""):
        trig = {"type": "ex-ctl", "ns": ns, "cmd": cmd, "speed": speed}
        with signed_in(app, client, "planner"):
            # the row's click, as the browser passes it on (assets/clicks.js)
            shown = triggered("ex-click.data")(exercise._control, {"id": trig, "n": 1, "at": 1}, "en")
            if cmd == "stop":  # Stop asks first: the confirmation sends it
                assert shown[1] is True and shown[3] == ns
                exercise._stop_confirmed(1, ns)
        for _ in range(20):
            runner.step(block_ms=1)

    press("pause")
    assert drills.drill_state(r, ns)["paused"] == "1"
    press("speed", "600")
    press("resume")
    press("stop")
    keys = Keys(ns)
    trail = list(reversed(audit.entries(r, keys)))
    controls = [(e["who"], e["action"], e["details"].get("speed")) for e in trail if e["action"].startswith("drill_")]
    assert controls == [("planner", "drill_start", "60"), ("planner", "drill_pause", None),
                        ("planner", "drill_speed", "600"), ("planner", "drill_resume", None),
                        ("planner", "drill_stop", None)]
    assert all(e["details"].get("drill") == ns for e in trail if e["action"] != "drill_start")
    assert audit.verify(r, keys).ok


def test_drill_controls_by_another_user_name_that_user(r):
    """The runner audits the `by` of the command (the page puts the signed-in user there), not a role."""
    runner = drills.DrillRunner(r)
    ns = drills.start_drill(r, SCENARIOS / "rule_zone_incident", "60", by="planner")
    for _ in range(200):
        runner.step(block_ms=1)
        if ns in runner.active:
            break
    drills.send(r, "pause", ns=ns, by="duty-2")
    drills.send(r, "resume", ns=ns)  # a command without `by` is not put on anyone
    drills.send(r, "speed", ns=ns, speed="fast", by="duty-2")  # refused: not audited
    for _ in range(20):
        runner.step(block_ms=1)
    actions = [(e["who"], e["action"]) for e in reversed(audit.entries(r, Keys(ns)))]
    assert actions[1:] == [("duty-2", "drill_pause"), ("unknown", "drill_resume")]
