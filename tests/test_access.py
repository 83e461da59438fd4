"""Authorization over HTTP (docs/security.md, "Authorization"): every Dash callback and every Flask route
of the real app declares who may call it, and crafted requests (the Flask test client, shaped as Dash
sends them, built from the app's own callback map and URL map) prove each policy holds for each role.

One app for the module (create_app once); sessions are made per role and kept: nothing here flushes
Redis. `layouts.access` is imported inside the tests that need it, so the finding's regression test
also runs (and fails) on the code from before the authorization layer.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
import pytest
import redis

from command.keys import Keys

from .conftest import SCENARIOS, module_app

WHO = {"operator": "operator", "planner": "planner", "admin": "admin", "auditor": "auditor", "fire": "department",
       "water": "department", None: None}  # user name -> role (None: nobody signed in)
UPDATE = "/_dash-update-component"
WILD = ("ALL", "ALLSMALLER", "MATCH")


@pytest.fixture(scope="module")
def app(redis_url, tmp_path_factory):
    with module_app(tmp_path_factory.mktemp("access") / "var", redis_url) as app:
        yield app


@pytest.fixture(scope="module")
def rr(redis_url):
    client = redis.Redis.from_url(redis_url)  # not flushed: the module's sessions live in it
    yield client
    client.close()


@pytest.fixture(scope="module")
def clients(app):
    made: dict[str | None, Any] = {}

    def get(user: str | None, fresh: bool = False):
        if fresh or user not in made:
            c = app.server.test_client()
            if user:
                resp = c.post("/login", data={"username": user, "password": "flood-demo"})
                assert resp.status_code == 302, (user, resp.status_code)
            if fresh:
                return c
            made[user] = c
        return made[user]

    return get


# ---- building requests from the app's own registries ---------------------------------------------------
def _pattern(spec_id: str) -> dict | None:
    if not spec_id.startswith("{"):
        return None
    return json.loads(spec_id)


def _concrete(spec_id: str, fill: Any = "x") -> tuple[Any, str | None]:
    """An id matching `spec_id` (wildcards filled in) and its wildcard kind."""
    pattern = _pattern(spec_id)
    if pattern is None:
        return spec_id, None
    kinds = {v[0] for v in pattern.values() if isinstance(v, list) and v and v[0] in WILD}
    return {k: (fill if isinstance(v, list) and v and v[0] in WILD else v) for k, v in pattern.items()}, \
        ("ALL" if kinds & {"ALL", "ALLSMALLER"} else ("MATCH" if kinds else None))


def _dep(spec: dict, value: Any = None, with_value: bool = True, fill: Any = "x") -> Any:
    cid, kind = _concrete(spec["id"], fill)
    item = {"id": cid, "property": spec["property"], **({"value": value} if with_value else {})}
    return [item] if kind == "ALL" else item


def _prop_id(cid: Any, prop: str) -> str:
    if isinstance(cid, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{json.dumps(cid[k])}" for k in sorted(cid)) + "}." + prop
    return f"{cid}.{prop}"


def _split_outputs(output: str) -> list[dict] | dict:
    def one(part: str) -> dict:
        cid, prop = part.rsplit(".", 1)
        return {"id": cid.replace("\\.", "."), "property": prop}

    return [one(p) for p in output[2:-2].split("...")] if output.startswith("..") else one(output)


def callback_body(app, output: str, values: dict[tuple[str, int], Any] | None = None, trigger: Any = 1,
                  fill: Any = "x") -> dict:
    """A request for the callback `output` as Dash's browser side sends it: its inputs and state (values
    None unless `values` says, keyed by ("inputs"|"state", position); the first input `trigger`), its
    outputs, and the first input as the changed one."""
    entry = app.callback_map[output]
    values = values or {}
    inputs = [_dep(s, values.get(("inputs", i), trigger if i == 0 else None), fill=fill)
              for i, s in enumerate(entry["inputs"])]
    state = [_dep(s, values.get(("state", i)), fill=fill) for i, s in enumerate(entry["state"])]
    outs = _split_outputs(output)
    outputs = [_dep(o, with_value=False, fill=fill) for o in outs] if isinstance(outs, list) \
        else _dep(outs, with_value=False, fill=fill)
    first = inputs[0][0] if isinstance(inputs[0], list) else inputs[0]
    return {"output": output, "outputs": outputs, "inputs": inputs, "state": state,
            "changedPropIds": [_prop_id(first["id"], first["property"])]}


def with_ns(app, output: str, ns: str, lang: str = "en", **extra) -> dict:
    """The callback's request with the `ns` and `lang` stores set as the shell sets them."""
    entry = app.callback_map[output]
    values = {}
    for part in ("inputs", "state"):
        for i, s in enumerate(entry[part]):
            if s["id"] == "ns":
                values[(part, i)] = ns
            elif s["id"] == "lang":
                values[(part, i)] = lang
    return callback_body(app, output, values, **extra)


def module_callbacks(app, module: str) -> list[str]:
    # a callback the browser runs (access.browser_callback) has no Python function
    return [cid for cid, e in app.callback_map.items() if getattr(e.get("callback"), "__module__", None) == module]


SAMPLE = {"ns": "live", "layer": "stations", "fingerprint": "0000000000000000", "action": "unlock",
          "path": "department", "filename": "app.css", "package_name": "dash", "fingerprinted_path": "x.js",
          "z": "0", "x": "0", "y": "0"}


def route_url(rule) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: SAMPLE[m.group(1)], rule.rule)


def route_method(rule) -> str:
    return "GET" if "GET" in rule.methods else sorted(rule.methods - {"OPTIONS", "HEAD"})[0]


def call_route(app, clients, user, rule):
    url, method = route_url(rule), route_method(rule)
    client = clients(user, fresh=rule.endpoint == "logout")  # signing out: not the shared session
    data, body = None, None
    if rule.endpoint == "_admin_action" and user == "admin":
        page = client.get("/admin").data.decode()
        data = {"csrf": re.search(r'name="csrf" value="([^"]+)"', page).group(1), "name": "nobody"}
    elif method == "POST" and url.startswith("/api/"):
        body = {}
    return client.open(url, method=method, data=data, json=body)


# ---- every callback and route declares a policy ---------------------------------------------------------
def test_every_callback_and_route_declares_a_policy(app):
    from layouts import access

    callbacks = list(app.callback_map)
    assert len(callbacks) >= 25  # the shell's and every page's
    assert [c for c in callbacks if c not in access.CALLBACK_POLICIES] == []
    endpoints = {rule.endpoint for rule in app.server.url_map.iter_rules()}
    policies = access.route_policies(app.server)
    assert endpoints <= set(policies)
    assert [ep for ep in endpoints if policies[ep] is None] == []
    # open routes are few and named: the sign-in page, health, static files, what is public by design
    open_routes = sorted(ep for ep in endpoints if policies[ep].public)
    assert {"login", "logout", "health", "_dash_assets.static"} <= set(open_routes)
    assert not {"/_dash-update-component", "/_dash-layout", "/", "_admin", "_audit_export"} & set(open_routes)


def test_an_app_with_an_undeclared_callback_or_route_does_not_start():
    import dash
    from dash import Input, Output

    from layouts import access

    bare = dash.Dash(__name__)

    @bare.callback(Output("a", "children"), Input("b", "value"))
    def _plain(v):  # a callback declared the old way: no policy
        return v

    @bare.server.route("/undeclared")
    def _undeclared():
        return "?"

    access.install(bare)
    with pytest.raises(RuntimeError, match=r"no access policy declared for: callback a\.children, route _undeclared"):
        access.verify(bare)


def test_each_pages_callbacks_allow_no_more_than_the_page_table(app):
    from layouts import access
    from layouts.shell import PAGE_ROLES

    pages = {"layouts.operator.callbacks": "map", "layouts.department": "department", "layouts.exercise": "exercise",
             "layouts.feeds": "feeds", "layouts.audit": "audit"}
    wider = []
    for module, page in pages.items():
        cids = module_callbacks(app, module)
        assert cids, module
        wider += [(cid, sorted(access.CALLBACK_POLICIES[cid].allow - set(PAGE_ROLES[page]))) for cid in cids
                  if access.CALLBACK_POLICIES[cid].allow - set(PAGE_ROLES[page])]
    assert wider == []


# ---- the matrix: each callback and route, each role ----------------------------------------------------
@pytest.mark.parametrize("user", list(WHO))
def test_every_callback_answers_each_role_as_declared(app, clients, user):
    from layouts import access

    client = clients(user)
    wrong = []
    for output in app.callback_map:
        policy = access.CALLBACK_POLICIES[output]
        resp = client.post(UPDATE, json=callback_body(app, output))
        role = WHO[user]
        if role is None:
            ok = resp.status_code == 401
        elif role in policy.allow:
            ok = resp.status_code not in (401, 403) and resp.status_code < 500
        else:
            ok = resp.status_code == 403 and resp.get_json()["error"] == "forbidden"
        if not ok:
            wrong.append((output, resp.status_code, resp.data[:200]))
    assert wrong == []


@pytest.mark.parametrize("user", list(WHO))
def test_every_route_answers_each_role_as_declared(app, clients, user):
    from layouts import access
    from layouts.changes import GATE_PATH

    policies = access.route_policies(app.server)
    role = WHO[user]
    wrong = []
    for rule in app.server.url_map.iter_rules():
        policy = policies[rule.endpoint]
        resp = call_route(app, clients, user, rule)
        code = resp.status_code
        server_error = code >= 500 and not (rule.endpoint == "health" and code == 503)  # /health: degraded
        if policy.public:
            ok = code not in (401, 403) and not server_error
        elif role is None:
            # what scripts ask (Dash, the API, the change gate) is told 401; a page goes to sign-in
            ok = code == 401 if rule.rule.startswith(("/_dash", "/api/", GATE_PATH)) else (
                code == 302 and resp.headers["Location"].startswith("/login"))
        elif role in policy.allow:
            ok = code not in (401, 403) and not server_error
        else:
            ok = code == 403
        if not ok:
            wrong.append((rule.rule, route_method(rule), code, resp.data[:120]))
    assert wrong == []


def test_a_token_reaches_only_routes_that_take_tokens(app):
    """Tokens are authenticated under /api/ only; there each route's policy says whether tokens may call."""
    from layouts import access

    policies = access.route_policies(app.server)
    api = [rule for rule in app.server.url_map.iter_rules() if rule.rule.startswith("/api/")]
    assert api and all(policies[rule.endpoint].tokens for rule in api)
    assert not any(policies[rule.endpoint].tokens for rule in app.server.url_map.iter_rules()
                   if not rule.rule.startswith("/api/"))


# ---- the finding -----------------------------------------------------------------------------------------
SECRET_NOTE = "gate code 4471, key under the pump house mat"


@pytest.fixture(scope="module")
def water_task(rr):
    """A drill with a dispatch to the water authority and the fire service; water's task carries a note
    only the command centre and water should read."""
    from command.ops.dispatch import dispatch, update_task
    from command.scenarios.replay import run_replay

    keys = Keys(run_replay(rr, SCENARIOS / "rule_zone_incident").namespace)
    fp = rr.zrange(keys.alerts_open, 0, 0)[0].decode()
    level = orjson.loads(rr.get(keys.alert(fp)))["level"]
    clock = int(rr.get(keys.clock))
    d = dispatch(rr, keys, fingerprint=fp, level=level, resource_ids=["P1", "B1"], operator="operator", now=clock)
    task = f"{d.id}-water_authority"
    update_task(rr, keys, task_id=task, department="water_authority", user="water", status="acknowledged",
                now=clock + 1, note=SECRET_NOTE)
    return keys, task, f"{d.id}-fire_rescue"


def operator_callbacks(app) -> list[str]:
    outs = module_callbacks(app, "layouts.operator.callbacks")
    if not outs:  # before the authorization layer Dash wrapped the functions in its own module's closures
        outs = [cid for cid in app.callback_map if re.search(r"(^|\.\.)map-", cid)]
    return outs


def test_fire_cannot_read_water_tasks_through_operator_callbacks(app, clients, water_task):
    keys, task, _ = water_task
    side = "..map-queue.children...map-dispatches.children...map-side-version.data.."
    outputs = operator_callbacks(app)
    assert side in outputs and len(outputs) == 7
    seen = clients("operator").post(UPDATE, json=with_ns(app, side, keys.ns))
    assert seen.status_code == 200 and SECRET_NOTE in seen.get_data(as_text=True)  # the command centre reads it
    for user in ("fire", "water", "police"):
        for output in [side] + [o for o in outputs if o != side]:
            resp = clients(user).post(UPDATE, json=with_ns(app, output, keys.ns))
            text = resp.get_data(as_text=True)
            assert SECRET_NOTE not in text and task not in text, f"{user} read water's task through {output}"
            assert resp.status_code == 403, (user, output, resp.status_code)


def test_another_departments_task_is_answered_as_an_unknown_one(app, clients, water_task, rr):
    """No oracle: fire sending water's task id to the status form gets what an unknown id gets, and nothing
    changes."""
    keys, task, fire_task = water_task
    submit = next(cid for cid in app.callback_map if cid.startswith("..dept-msg.children"))
    before = rr.get(keys.task(task)), rr.xlen(keys.audit)

    def send(task_id: str) -> dict:
        body = with_ns(app, submit, keys.ns, fill=task_id)
        entry = app.callback_map[submit]
        for i, s in enumerate(entry["state"]):
            if "dept-status" in s["id"]:
                body["state"][i][0]["value"] = "completed"
        resp = clients("fire").post(UPDATE, json=body)
        assert resp.status_code == 200
        return json.loads(resp.get_data(as_text=True).replace(task_id, "<id>"))

    theirs = send(task)
    assert theirs == send(f"{task[:-len('water_authority')]}nobody")
    assert "unknown task <id>" in json.dumps(theirs)
    assert (rr.get(keys.task(task)), rr.xlen(keys.audit)) == before
    # and fire's own task of the same dispatch is its to update
    body = with_ns(app, submit, keys.ns, fill=fire_task)
    for i, s in enumerate(app.callback_map[submit]["state"]):
        if "dept-status" in s["id"]:
            body["state"][i][0]["value"] = "acknowledged"
    assert "dept-saved" in clients("fire").post(UPDATE, json=body).get_data(as_text=True)
    assert orjson.loads(rr.get(keys.task(fire_task)))["status"] == "acknowledged"


def test_a_direct_call_is_checked_by_the_same_policy(app, clients):
    """The function a page module keeps is guarded too: a test or any other way into it is refused."""
    from command.errors import Forbidden
    from layouts.operator import callbacks

    client = clients("fire")
    cookie = client.get_cookie("ecd_session").value
    with app.server.test_request_context("/", headers={"Cookie": f"ecd_session={cookie}"}):
        assert app.server.preprocess_request() is None
        with pytest.raises(Forbidden, match="role department may not call this"):
            callbacks._update_side(1, 0, False, "live", "en", None)


# ---- the shape of a callback request ---------------------------------------------------------------------
def test_a_callback_request_not_shaped_like_its_callback_is_refused_with_400(app, clients):
    side = "..map-queue.children...map-dispatches.children...map-side-version.data.."
    good = callback_body(app, side)
    op = clients("operator")
    assert op.post(UPDATE, json=good).status_code == 200

    def bad(**change):
        return {**good, **change}

    cases = [
        ("not an object", ["x"]),
        ("no output", bad(output=None)),
        ("one input short", bad(inputs=good["inputs"][:-1])),
        ("another component", bad(inputs=[{"id": "chg-dept", "property": "data", "value": "t"},
                                          *good["inputs"][1:]])),
        ("a list where one is sent", bad(state=[[s] for s in good["state"]])),
        ("changed: an input not sent", bad(changedPropIds=["shell-lang.n_clicks"])),
        ("changed: not a list", bad(changedPropIds="chg-map.data")),
        ("no outputs", {k: v for k, v in good.items() if k != "outputs"}),
        ("outputs of another callback", bad(outputs={"id": "map-graph", "property": "figure"})),
    ]
    for what, body in cases:
        resp = op.post(UPDATE, json=body)
        assert resp.status_code == 400 and resp.get_json()["error"] == "bad_request", what
    assert op.post(UPDATE, data="{not json", content_type="application/json").status_code == 400
    # what no answer could carry back, or no parser should walk: 400 before any callback runs
    deep = "[" * 100_000 + "]" * 100_000
    for raw in (deep, json.dumps({**good, "state": [{**good["state"][0], "value": "\ud800"}, *good["state"][1:]]}),
                json.dumps(good).replace('"value": 1', '"value": 1' + "0" * 30)):
        resp = op.post(UPDATE, data=raw, content_type="application/json")
        assert resp.status_code == 400 and resp.get_json()["error"] == "bad_request", raw[:80]
    # a callback nobody declared (or none at all) is refused, not a 500
    resp = op.post(UPDATE, json=bad(output="no-such.children"))
    assert resp.status_code == 403 and "no access policy" in resp.get_json()["message"]
    # a refused role learns nothing about the shape: 403 before the shape is looked at
    assert clients("fire").post(UPDATE, json=bad(inputs=[])).status_code == 403
