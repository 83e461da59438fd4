"""The exercise page's drill list, through the real callback endpoint as the planner's browser asks.

The list is drawn again only when a drill's buttons would change: a redraw replaces the buttons, and
the browser then drops the answer to a click still in flight (a Stop would never ask its question).
Progress has a callback of its own that leaves the buttons alone. And when the list is drawn again
(a drill changed), a click in flight still keeps its answer: the browser passes the row's clicks on to
a store outside the list, which the server callbacks listen on (tests/browser/test_exercise_clicks.py
holds an answer while the list is redrawn).
"""

from __future__ import annotations

import json

from command.keys import DRILL_COMMANDS, Keys
from command.ops import drills

from .conftest import SCENARIOS
from .test_access import UPDATE, _split_outputs, app, clients, rr  # noqa: F401 - fixtures

LIST = "..ex-drills.children...ex-drills-drawn.data.."
PROGRESS = json.dumps({"ns": ["ALL"], "type": "ex-progress"}, separators=(",", ":")) + ".children"


def ask_list(client, drawn):
    body = {"output": LIST,
            "outputs": [{"id": "ex-drills", "property": "children"}, {"id": "ex-drills-drawn", "property": "data"}],
            "inputs": [{"id": "ex-tick", "property": "n_intervals", "value": 1}],
            "state": [{"id": "lang", "property": "data", "value": "en"},
                      {"id": "ex-drills-drawn", "property": "data", "value": drawn}],
            "changedPropIds": ["ex-tick.n_intervals"]}
    return client.post(UPDATE, json=body)


def ask_progress(client, ids):
    body = {"output": PROGRESS, "outputs": [{"id": {"type": "ex-progress", "ns": ns}, "property": "children"}
                                            for ns in ids],
            "inputs": [{"id": "ex-tick", "property": "n_intervals", "value": 1}],
            "state": [{"id": "lang", "property": "data", "value": "en"}],
            "changedPropIds": ["ex-tick.n_intervals"]}
    return client.post(UPDATE, json=body)


def test_progress_moves_without_redrawing_the_buttons_and_a_pause_redraws_them(app, clients, rr):  # noqa: F811
    runner = drills.DrillRunner(rr)
    ns = drills.start_drill(rr, SCENARIOS / "rule_zone_incident", "1", by="planner")  # slow: it stays running
    for _ in range(200):
        runner.step(block_ms=1)
        if drills.drill_state(rr, ns).get("status") == "running":
            break
    planner = clients("planner")
    first = ask_list(planner, None)
    assert first.status_code == 200
    drawn = first.get_json()["response"]["ex-drills-drawn"]["data"]
    assert ns in json.dumps(first.get_json()["response"]["ex-drills"]["children"])

    # the drill's clock moves on: the list is left as drawn, the progress line says where it is
    before = drills.drill_state(rr, ns)["clock"]
    (was,) = ask_progress(planner, [ns]).get_json()["response"].values()
    rr.hset(Keys(ns).replay_control, "clock", int(before) + 3_600_000)
    again = ask_list(planner, drawn)
    assert again.status_code == 200 and again.get_json()["response"] == {}  # nothing to redraw
    progress = ask_progress(planner, [ns])
    assert progress.status_code == 200
    (line,) = progress.get_json()["response"].values()
    assert "%" in line["children"] and "scenario time" in line["children"] and line != was

    # paused: the buttons change (Resume for Pause), so the list is drawn again
    drills.send(rr, "pause", ns=ns, by="planner")
    for _ in range(50):
        runner.step(block_ms=1)
        if drills.drill_state(rr, ns).get("paused") == "1":
            break
    redrawn = ask_list(planner, drawn)
    assert redrawn.status_code == 200
    assert "Resume" in json.dumps(redrawn.get_json()["response"]["ex-drills"]["children"])
    assert redrawn.get_json()["response"]["ex-drills-drawn"]["data"] != drawn
    drills.send(rr, "stop", ns=ns, by="planner")
    for _ in range(50):
        runner.step(block_ms=1)


def test_progress_ids_crafted_by_the_browser_are_answered_without_a_500(app, clients):  # noqa: F811
    for user in ("planner", "operator"):
        resp = ask_progress(clients(user), ["no-such-drill", 7, 1.5, True, "x" * 5000, "\u202e"])
        assert resp.status_code == 200, resp.status_code
        lines = [v["children"] for v in resp.get_json()["response"].values()]
        assert lines == ["—"] * 6  # a drill not listed
        for odd in (None, ["x"], {"a": 1}):  # not an id the page could draw
            assert ask_progress(clients(user), [odd]).status_code == 400
    for user in ("fire", "auditor"):  # not the exercise page's roles
        assert ask_progress(clients(user), ["no-such-drill"]).status_code == 403


CONTROL = "..ex-tick.n_intervals...ex-stop-confirm.displayed...ex-stop-confirm.message...ex-stop-ns.data"


def ask_with_click(client, output: str, click, state=({"id": "lang", "property": "data", "value": "en"},)):
    body = {"output": output, "outputs": _split_outputs(output),
            "inputs": [{"id": "ex-click", "property": "data", "value": click}], "state": list(state),
            "changedPropIds": ["ex-click.data"]}
    return client.post(UPDATE, json=body)


def test_a_relayed_click_sends_its_command_and_a_crafted_one_sends_nothing(app, clients, rr):  # noqa: F811
    output = next(o for o in app.callback_map if o.startswith(CONTROL))
    runner = drills.DrillRunner(rr)
    ns = drills.start_drill(rr, SCENARIOS / "rule_zone_incident", "1", by="planner")
    for _ in range(200):
        runner.step(block_ms=1)
        if drills.drill_state(rr, ns).get("status") == "running":
            break
    planner = clients("planner")
    sent = rr.xlen(DRILL_COMMANDS)
    for crafted in (None, 0, "x", [1], {"id": "x"}, {"id": {"type": "ex-view", "ns": ns}}, {"n": 1},
                    {"id": {"type": "ex-ctl", "ns": ns, "cmd": "rm -rf", "speed": ""}},
                    {"id": {"type": "ex-ctl", "ns": ns, "cmd": "speed", "speed": "9999"}},
                    {"id": {"type": "ex-ctl", "ns": "no-such-drill", "cmd": "pause", "speed": ""}}):
        resp = ask_with_click(planner, output, crafted)
        assert resp.status_code == 204 or (resp.status_code == 200 and resp.get_json()["response"] == {}), crafted
    assert rr.xlen(DRILL_COMMANDS) == sent  # nothing sent for any of them
    pause = {"id": {"type": "ex-ctl", "ns": ns, "cmd": "pause", "speed": ""}, "n": 1, "at": 1}
    assert ask_with_click(clients("fire"), output, pause).status_code == 403
    assert rr.xlen(DRILL_COMMANDS) == sent
    assert ask_with_click(planner, output, pause).status_code in (200, 204)
    assert rr.xlen(DRILL_COMMANDS) == sent + 1
    # Stop asks first: the answer shows the question and sends nothing yet
    stop = {"id": {"type": "ex-ctl", "ns": ns, "cmd": "stop", "speed": ""}, "n": 1, "at": 2}
    asked = ask_with_click(planner, output, stop).get_json()["response"]
    assert asked["ex-stop-confirm"]["displayed"] is True and ns in asked["ex-stop-confirm"]["message"]
    assert asked["ex-stop-ns"]["data"] == ns and rr.xlen(DRILL_COMMANDS) == sent + 1


def test_show_switches_the_view_only_for_a_show_click(app, clients):  # noqa: F811
    view = next(o for o in app.callback_map if o.startswith("shell-ns.value") and
                any(d["id"] == "ex-click" for d in app.callback_map[o]["inputs"]))
    planner = clients("planner")
    shown = ask_with_click(planner, view, {"id": {"type": "ex-view", "ns": "drill-x"}, "n": 1}, state=())
    assert shown.status_code == 200 and shown.get_json()["response"]["shell-ns"]["value"] == "drill-x"
    for crafted in (None, {"id": {"type": "ex-ctl", "ns": "drill-x"}}, {"id": {"type": "ex-view", "ns": ""}},
                    {"id": {"type": "ex-view", "ns": "x" * 5000}}, {"id": {"type": "ex-view", "ns": ["a"]}}):
        resp = ask_with_click(planner, view, crafted, state=())
        assert resp.status_code == 204 or (resp.status_code == 200 and resp.get_json()["response"] == {}), crafted
