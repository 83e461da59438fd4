"""Buttons inside a list the server draws again (an alert card's Dispatch and actions on the operator's
map, a drill's row on the exercise page) reach the server through a relay the browser runs
(`relayClick`, assets/clicks.js) and a store outside the list: a click in the instant of a redraw keeps
its answer (tests/browser/test_clicks_during_redraw.py holds an answer while the list is redrawn).

Here, through the real callback endpoint: what the relay hands on is hostile input like any other, the
server never runs the relay, and no server callback listens on those buttons themselves.
"""

from __future__ import annotations

import json

import orjson

from command.keys import Keys
from command.scenarios.replay import run_replay
from layouts.inputs import clicked

from .conftest import SCENARIOS
from .test_access import UPDATE, app, callback_body, clients, rr  # noqa: F401 - fixtures

RELAYED = {"map-dispatch": "map-click", "map-action": "map-click", "ex-ctl": "ex-click", "ex-view": "ex-click",
           "exb-show": "exb-click"}
DISPATCH = "..map-toast.children...map-poke.data.."


def test_no_server_callback_listens_on_a_relayed_button(app):  # noqa: F811
    from layouts import access

    listeners = [(cid, json.loads(dep["id"])["type"]) for cid, entry in app.callback_map.items()
                 for dep in entry["inputs"] if dep["id"].startswith("{") and json.loads(dep["id"])["type"] in RELAYED]
    assert {kind for _, kind in listeners} == set(RELAYED)
    assert [cid for cid, _ in listeners if cid not in access.BROWSER_ONLY] == []
    # each store is read by server callbacks only (the relay itself writes it)
    for store in set(RELAYED.values()):
        readers = [cid for cid, e in app.callback_map.items() if any(d["id"] == store for d in e["inputs"])]
        assert readers and not set(readers) & access.BROWSER_ONLY, store


def test_a_relay_is_not_served_to_anyone(app, clients):  # noqa: F811
    from layouts import access

    assert {"map-click.data", "ex-click.data", "exb-click.data"} <= access.BROWSER_ONLY
    for output, allowed, refused in (("map-click.data", "operator", "fire"), ("ex-click.data", "planner", "fire"),
                                     ("exb-click.data", "planner", "operator")):
        body = callback_body(app, output, trigger=[1])
        resp = clients(allowed).post(UPDATE, json=body)
        assert resp.status_code == 400 and "runs in the browser" in resp.get_json()["message"], output
        assert clients(refused).post(UPDATE, json=body).status_code == 403
        assert app.server.test_client().post(UPDATE, json=body).status_code == 401


def test_clicked_reads_only_a_button_of_its_kind():
    button = {"type": "map-dispatch", "fp": "a", "level": "red"}
    assert clicked({"id": button, "n": 1, "at": 5}, "map-dispatch") == button
    for odd in (None, 1, "x", [button], {"id": "map-dispatch"}, {"id": [button]}, {"n": 1}, {"id": {"type": ["map-dispatch"]}}):
        assert clicked(odd, "map-dispatch") is None
    assert clicked({"id": button}, "map-action") is None


def test_a_relayed_dispatch_dispatches_and_a_crafted_one_dispatches_nothing(app, clients, rr):  # noqa: F811
    keys = Keys(run_replay(rr, SCENARIOS / "rule_zone_incident").namespace)
    fp = rr.zrange(keys.alerts_open, 0, 0)[0].decode()
    level = orjson.loads(rr.get(keys.alert(fp)))["level"]
    output = next(o for o in app.callback_map if o.startswith(DISPATCH))

    def ask(user, click):
        body = callback_body(app, output, {("inputs", 0): click, ("state", 0): keys.ns, ("state", 1): "en",
                                           ("state", 2): 0})
        return clients(user).post(UPDATE, json=body)

    for crafted in (None, 0, "x", [fp], {"id": fp}, {"id": {"type": "map-action", "fp": fp, "action": "resolve"}},
                    {"id": {"type": "map-dispatch", "fp": ["x"], "level": level}},
                    {"id": {"type": "map-dispatch", "fp": "0" * 16, "level": level}},
                    {"id": {"type": "map-dispatch", "fp": "x" * 5000, "level": level}}):
        resp = ask("operator", crafted)
        assert resp.status_code in (200, 204), (crafted, resp.status_code)
    assert rr.zcard(keys.dispatches_index) == 0
    real = {"id": {"type": "map-dispatch", "fp": fp, "level": level}, "n": 1, "at": 1}
    assert ask("fire", real).status_code == 403 and ask("auditor", real).status_code == 403
    assert rr.zcard(keys.dispatches_index) == 0
    done = ask("operator", real)
    assert done.status_code == 200 and "Dispatched" in json.dumps(done.get_json()["response"]["map-toast"])
    assert rr.zcard(keys.dispatches_index) == 1


POLL = "..exb-progress.children...exb-result.children...exb-recent.children...exb-recent-drawn.data.."


def test_recent_backtests_are_drawn_once_and_a_relayed_show_opens_one(app, clients):  # noqa: F811
    from layouts.exercise_files import settings

    with app.server.app_context():
        root = settings().backtests_dir
    bid = "bt-0123456789ab"
    (root / bid).mkdir(parents=True, exist_ok=True)
    (root / bid / "meta.json").write_text(json.dumps({"id": bid, "at": "2026-11-30T10:00:00Z", "scenario": "s",
                                                      "rule_sets": ["scenario"], "by": "planner"}))
    planner = clients("planner")
    first = planner.post(UPDATE, json=callback_body(app, POLL, {("state", 1): "en"}))
    assert first.status_code == 200
    got = first.get_json()["response"]
    assert bid in json.dumps(got["exb-recent"]["children"])
    drawn = got["exb-recent-drawn"]["data"]
    # the next second, nothing new: the list (and its Show buttons) is left as drawn
    again = planner.post(UPDATE, json=callback_body(app, POLL, {("state", 1): "en", ("state", 2): drawn}))
    assert again.status_code == 200 and "exb-recent" not in again.get_json()["response"]
    # in Chinese, it is drawn again
    zh = planner.post(UPDATE, json=callback_body(app, POLL, {("state", 1): "zh", ("state", 2): drawn}))
    assert "exb-recent" in zh.get_json()["response"]

    show = next(o for o in app.callback_map if o.startswith("exb-current.data")
                and any(d["id"] == "exb-click" for d in app.callback_map[o]["inputs"]))
    opened = planner.post(UPDATE, json=callback_body(app, show, {("inputs", 0): {"id": {"type": "exb-show", "id": bid},
                                                                                   "n": 1}}))
    assert opened.status_code == 200 and opened.get_json()["response"]["exb-current"]["data"] == bid
    for crafted in (None, {"id": {"type": "exb-show", "id": "../../etc"}}, {"id": {"type": "exb-show", "id": 5}},
                    {"id": {"type": "ex-view", "id": bid}}, {"id": bid}):
        resp = planner.post(UPDATE, json=callback_body(app, show, {("inputs", 0): crafted}))
        assert resp.status_code == 204 or resp.get_json()["response"] == {}, crafted
    assert clients("operator").post(UPDATE, json=callback_body(app, show, {("inputs", 0): {
        "id": {"type": "exb-show", "id": bid}, "n": 1}})).status_code == 403  # the planner's panel
