"""The exercise page's drill list, through the real callback endpoint as the planner's browser asks.

The list is drawn again only when a drill's buttons would change: a redraw replaces the buttons, and
the browser then drops the answer to a click still in flight (a Stop would never ask its question).
Progress has a callback of its own that leaves the buttons alone.
"""

from __future__ import annotations

import json

from command.keys import Keys
from command.ops import drills

from .conftest import SCENARIOS
from .test_access import UPDATE, app, clients, rr  # noqa: F401 - fixtures

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
