"""Crafted input never answers 5xx (docs/security.md, "Authorization"): whatever a request puts in a
callback's inputs and state (a `null` map click, a word for a count, a lone surrogate, a list for a
number), the answer is a 4xx or a message in the page, and a refusal stores nothing. Hypothesis feeds
the department page's status and incident forms and the exercise page through the real HTTP callback
endpoint; a sweep sends wrong types to every input of every callback.

One app and one drill for the module; nothing here flushes Redis (the sessions live in it).
"""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from command.keys import DRILL_COMMANDS, DRILLS, Keys
from command.trust import audit
from layouts.inputs import NOT, number
from layouts.inputs import text as text_of

from .test_access import UPDATE, app, callback_body, clients, rr, with_ns  # noqa: F401 - fixtures

SURROGATES = ("\ud800", "a\udfffb", "\udbff\udc00\ud800")
SCALARS = [None, True, 0, -1, 2**70, 1.5, -1e308, "", "x", "12abc", " 3 ", *SURROGATES, "\x00\x1b[31m", "\u202eevil",
           "a" * 5000]
BAD = [*SCALARS, [], [1, "2"], {}, {"points": None}, [[[]]]]
# any JSON value, with the odd ones weighted in: NaN and infinities (Python's JSON reads them), lone
# surrogates, numbers as strings, nesting
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(st.characters(exclude_categories=()))
    | st.sampled_from(SCALARS),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def find(app, prefix: str) -> str:  # noqa: F811
    return next(cid for cid in app.callback_map if cid.startswith(prefix))


def positions(app, output: str) -> dict[str, tuple[str, int]]:  # noqa: F811
    """Each input's and state's component id (the pattern's `type` for pattern ids) -> its position."""
    out = {}
    for part in ("inputs", "state"):
        for i, s in enumerate(app.callback_map[output][part]):
            key = json.loads(s["id"])["type"] if s["id"].startswith("{") else s["id"]
            out[key] = (part, i)
    return out


def set_value(body: dict, where: tuple[str, int], value) -> None:
    part, i = where
    item = body[part][i]
    for one in item if isinstance(item, list) else [item]:
        one["value"] = value


def writes(r) -> dict:
    """Everything a refused form must not change: tasks, incidents, dispatches, status and drill command
    streams, and the audit trail (reads of secret fields aside: showing is not storing)."""
    namespaces = ["live"] + [k.decode() for k in r.hkeys(DRILLS)]
    # a namespace's keys are `ecd:{<ns>}:*` (its hash tag): the name is between the braces
    namespaces += sorted({k.decode().split("{")[1].split("}")[0] for k in r.scan_iter("ecd:{drill-*}:meta")})
    out: dict = {"commands": r.xlen(DRILL_COMMANDS), "drills": r.hlen(DRILLS)}
    for ns in sorted(set(namespaces)):
        keys = Keys(ns)
        tasks = sorted(r.scan_iter(keys.task("*")))
        out[ns] = (r.hlen(keys.incidents), r.zcard(keys.dispatches_index), r.xlen(keys.status_stream),
                   [r.get(t) for t in tasks],
                   [e["action"] for e in audit.entries(r, keys, count=10_000) if e["action"] != audit.READ_ACTION])
    return out


@pytest.fixture(scope="module")
def drill(rr):  # noqa: F811
    """A drill (run_replay namespaces are exercises) with a dispatch: fire has a task to report on."""
    from command.ops.dispatch import dispatch
    from command.scenarios.replay import run_replay

    from .conftest import SCENARIOS

    keys = Keys(run_replay(rr, SCENARIOS / "rule_zone_incident").namespace)
    fp = rr.zrange(keys.alerts_open, 0, 0)[0].decode()
    d = dispatch(rr, keys, fingerprint=fp, level=orjson.loads(rr.get(keys.alert(fp)))["level"],
                 resource_ids=["B1", "A1"], operator="operator", now=int(rr.get(keys.clock)))
    return keys, f"{d.id}-fire_rescue"


def post(client, body):
    resp = client.post(UPDATE, json=body)
    assert resp.status_code < 500, (resp.status_code, resp.data[:300])
    return resp, resp.get_data(as_text=True)


def fill_the_other_fields(body, at, data, named) -> None:
    """Every other field of the form (a person's name and phone, and whatever a form gains later):
    anything, or a short plain text now and then."""
    for name, where in at.items():
        if name not in named and name not in ("ns", "lang") and where[0] == "state":
            set_value(body, where, data.draw(st.none() | st.text(max_size=20) | json_values, label=name))


# ---- the department page: status form ---------------------------------------------------------------------
def status_body(app, keys, task):  # noqa: F811
    """The status form's request as the page sends it: one card (`task`), its four field-error slots."""
    from layouts.department import TASK_FIELDS

    output = find(app, "..dept-msg.children")
    body = with_ns(app, output, keys.ns, fill=task)
    body["outputs"][2] = [{"id": {"type": "dept-field-err", "task": task, "field": f}, "property": "children"}
                          for f in TASK_FIELDS]
    return body, positions(app, output)


@SETTINGS
@given(status=st.sampled_from(["acknowledged", "en_route", "on_scene", "need_support", "completed", "assigned"])
       | json_values,
       note=json_values, people=json_values, lat=json_values, lon=json_values, more=st.data())
def test_the_status_form_takes_any_values_without_a_500_and_stores_nothing_it_refuses(
        app, clients, rr, drill, status, note, people, lat, lon, more):  # noqa: F811
    keys, task = drill
    body, at = status_body(app, keys, task)
    for name, value in (("dept-status", status), ("dept-note", note), ("dept-people", people), ("dept-lat", lat),
                        ("dept-lon", lon)):
        set_value(body, at[name], value)
    fill_the_other_fields(body, at, more, ("dept-status", "dept-note", "dept-people", "dept-lat", "dept-lon"))
    client = clients("fire")  # signed in before the snapshot (a sign-in is on the trail)
    before = writes(rr)
    resp, text = post(client, body)
    if "dept-saved" not in text:  # refused: a message under a field or the form, and nothing stored
        assert resp.status_code == 200 or 400 <= resp.status_code < 500
        assert writes(rr) == before
    else:
        saved = orjson.loads(rr.get(keys.task(task)))
        assert saved["status"] == status and saved["history"][-1]["note"] == (note or "").strip()


def test_crafted_status_values_get_messages_under_their_fields(app, clients, rr, drill):  # noqa: F811
    keys, task = drill
    client = clients("fire")
    before = writes(rr)
    for field, value, message in (("dept-people", "twelve", "people assisted must be a whole number"),
                                  ("dept-people", 2.5, "people assisted must be a whole number"),
                                  ("dept-note", ["a list"], "the note must be text"),
                                  ("dept-lat", "north", "latitude and longitude must be numbers")):
        body, at = status_body(app, keys, task)
        set_value(body, at["dept-status"], "on_scene")
        set_value(body, at[field], value)
        resp, text = post(client, body)
        assert resp.status_code == 200 and message in text, (field, value, text[:300])
    # a lone surrogate is not text: no browser sends one and no answer could carry it back
    body, at = status_body(app, keys, task)
    set_value(body, at["dept-status"], "on_scene")
    set_value(body, at["dept-note"], "\ud800 here")
    resp, text = post(client, body)
    assert resp.status_code == 400 and "lone surrogate" in resp.get_json()["message"]
    assert writes(rr) == before


# ---- the department page: incident form -------------------------------------------------------------------
@SETTINGS
@given(category=st.sampled_from(["flooding", "trapped_people", "other"]) | json_values,
       severity=st.sampled_from(["yellow", "orange", "red"]) | json_values,
       lat=st.floats(29.9, 30.2) | json_values, lon=st.floats(113.9, 114.3) | json_values,
       description=st.text(st.characters(exclude_categories=()), max_size=50) | json_values, more=st.data())
def test_the_incident_form_takes_any_values_without_a_500_and_stores_nothing_it_refuses(
        app, clients, rr, drill, category, severity, lat, lon, description, more):  # noqa: F811
    keys, _ = drill
    output = find(app, "..dept-inc-msg.children")
    body = with_ns(app, output, keys.ns)
    at = positions(app, output)
    named = ("dept-inc-category", "dept-inc-severity", "dept-inc-lat", "dept-inc-lon", "dept-inc-description")
    for name, value in zip(named, (category, severity, lat, lon, description), strict=True):
        set_value(body, at[name], value)
    fill_the_other_fields(body, at, more, named)
    client = clients("fire")  # signed in before the snapshot (a sign-in is on the trail)
    before = writes(rr)
    resp, text = post(client, body)
    if "dept-inc-ok" not in text:
        assert writes(rr) == before
    else:
        assert rr.hlen(keys.incidents) == before[keys.ns][0] + 1


# ---- the exercise page --------------------------------------------------------------------------------------
@SETTINGS
@given(scenario=json_values, speed=st.sampled_from(["1", "60", "max"]) | json_values)
def test_starting_a_drill_takes_any_values_without_a_500(app, clients, rr, scenario, speed):  # noqa: F811
    output = find(app, "..ex-msg.children")
    body = callback_body(app, output)
    at = positions(app, output)
    set_value(body, at["ex-scenario"], scenario)
    set_value(body, at["ex-speed-new"], speed)
    client = clients("planner")  # signed in before the snapshot (a sign-in is on the trail)
    before = writes(rr)
    resp, text = post(client, body)
    assert "ex-started" not in text  # none of these names a scenario folder: nothing starts
    assert writes(rr) == before


@SETTINGS
@given(lat=st.floats(-90, 90) | json_values, lon=st.floats(-180, 180) | json_values,
       resource=st.sampled_from(["B2", "P1"]) | json_values, levee=st.booleans())
def test_injects_take_any_values_without_a_500_and_store_nothing_they_refuse(
        app, clients, rr, drill, lat, lon, resource, levee):  # noqa: F811
    keys, _ = drill
    output = find(app, "ex-inject-msg.children")
    body = with_ns(app, output, keys.ns)
    at = positions(app, output)
    set_value(body, at["ex-lat"], lat)
    set_value(body, at["ex-lon"], lon)
    set_value(body, at["ex-resource"], resource)
    if not levee:  # the breakdown button, not the levee one
        body["inputs"][0]["value"], body["inputs"][1]["value"] = None, 1
        body["changedPropIds"] = ["ex-inject-breakdown.n_clicks"]
    client = clients("planner")  # signed in before the snapshot (a sign-in is on the trail)
    before = writes(rr)
    resp, text = post(client, body)
    if "Injected" not in text:
        assert writes(rr) == before
    else:  # taken: only a position in range, or a resource id, was sent on
        if levee:
            assert number(lat, -90, 90) not in (NOT, None) and number(lon, -180, 180) not in (NOT, None)
        else:
            assert isinstance(resource, str) and resource and text_of(resource, 64) is not NOT
        assert writes(rr)["commands"] == before["commands"] + 1


@SETTINGS
@given(cmd=st.sampled_from(["pause", "resume", "stop", "speed"]) | json_values.filter(lambda v: not isinstance(v, list | dict)),
       ns=st.text(max_size=20) | st.integers() | st.booleans(), speed=st.sampled_from(["", "60"]) | st.text(max_size=5))
def test_drill_controls_take_any_button_id_without_a_500(app, clients, rr, cmd, ns, speed):  # noqa: F811
    """The controls' button ids come from the request too (the browser passes a click on as the button's
    id: assets/clicks.js): only a drill's own buttons send anything."""
    output = find(app, "..ex-tick.n_intervals")  # with the stop confirmation: several outputs
    button = {"type": "ex-ctl", "ns": ns, "cmd": cmd, "speed": speed}
    body = callback_body(app, output, {("inputs", 0): {"id": button, "n": 1, "at": 1}})
    client = clients("planner")
    before = writes(rr)
    post(client, body)
    assert writes(rr) == before  # no drill is named by these: nothing is sent


# ---- every callback, wrong types everywhere ----------------------------------------------------------------
ALLOWED_USER = {"operator": "operator", "planner": "planner", "department": "fire", "auditor": "auditor",
                "admin": "admin"}


def test_wrong_types_in_every_input_of_every_callback_never_answer_5xx_nor_store(app, clients, rr, drill):  # noqa: F811
    from layouts import access

    keys, _ = drill
    for user in ALLOWED_USER.values():
        clients(user)  # signed in before the snapshot
    before = writes(rr)
    failures = []
    for output, entry in app.callback_map.items():
        policy = access.CALLBACK_POLICIES[output]
        user = next(ALLOWED_USER[role] for role in ("operator", "planner", "department", "auditor", "admin")
                    if role in policy.allow)
        for part in ("inputs", "state"):
            for i in range(len(entry[part])):
                for value in BAD:
                    body = with_ns(app, output, keys.ns)
                    set_value(body, (part, i), value)
                    resp = clients(user).post(UPDATE, json=body)
                    if resp.status_code >= 500:
                        failures.append((output, part, i, repr(value)[:40], resp.status_code))
    assert failures == []
    assert writes(rr) == before


def test_null_and_odd_map_clicks_are_ignored(app, clients, drill):  # noqa: F811
    keys, _ = drill
    for user, output in (("operator", find(app, "map-station-panel.children")),
                         ("fire", find(app, "..dept-inc-lat.value"))):
        for click in (None, "x", [], {}, {"points": None}, {"points": []}, {"points": [None]}, {"points": [{}]},
                      {"points": [{"curveNumber": 0}]}, {"points": [{"curveNumber": 0, "customdata": None}]},
                      {"points": [{"lat": "north", "lon": 114}]}, {"points": [{"lat": 1e999, "lon": 0}]}):
            resp = clients(user).post(UPDATE, json=with_ns(app, output, keys.ns, trigger=click))
            assert resp.status_code in (200, 204), (output, click, resp.status_code)
    # a real click still fills the form
    resp = clients("fire").post(UPDATE, json=with_ns(app, find(app, "..dept-inc-lat.value"), keys.ns,
                                                     trigger={"points": [{"lat": 30.0512345, "lon": 114.1}]}))
    assert resp.status_code == 200 and resp.get_json()["response"]["dept-inc-lat"]["value"] == 30.05123
