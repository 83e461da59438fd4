"""Authorization for the web app: every Dash callback and every Flask route declares who may call it,
next to its definition, and one check (`refusal`, from the sign-in gate in layouts/signin.py) enforces
it before the callback or view runs. Deny by default. docs/security.md, "Authorization", says how to
declare a policy; the decision itself is `command.trust.access.decide` (pure, tested without a server).

Dash callbacks::

    from .access import secured_callback

    @secured_callback(Output("map-queue", "children"), Input("chg-map", "data"),
                      allow=("operator", "planner"))
    def _update_side(n): ...

`secured_callback` takes `dash.callback`'s arguments plus `allow` (roles), `own_department`,
`clearance` and `note`. It keeps the callback in this module's registry with its policy (keyed by
Dash's callback id, the `output` a request names) and `install` gives every app all of them. The
function it returns checks the policy itself too, so a direct call (a test, another path into
Dash) is refused the same way.

Flask routes::

    @server.route("/admin")
    @route_policy(allow=("admin",))
    def _admin(): ...

Dash's own routes (layout, dependencies, component suites, assets, the index page) are declared in
`dash_routes`. `verify(app)` (end of `create_app`) refuses to start an app with a callback or a route
that declares nothing, and a request to one is refused (403) anyway.

At `/_dash-update-component` the gate reads the request's `output`, checks the request has the shape
of that callback (inputs, state, outputs, changedPropIds as Dash sends them: else 400), then its
policy: 401 when nobody is signed in, 403 for a caller the policy does not allow, before Dash runs
anything.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

import dash
import flask
from dash import ClientsideFunction
from dash import callback as _dash_callback
from dash._callback import register_clientside_callback

from command.errors import CommandError, Forbidden, InvalidInput, NotFound
from command.trust.access import OPEN, SIGNED_IN, Caller, Decision, Policy, decide, department_scope, may_see
from command.trust.auth import ROLES

from .common import NotSignedIn, current_user

__all__ = ["OPEN", "SIGNED_IN", "ANY_ROLE", "Policy", "secured_callback", "browser_callback", "route_policy", "install",
           "verify", "user", "caller", "refusal", "sees", "own_scope"]

ANY_ROLE = ROLES  # allow=ANY_ROLE: anyone signed in, whatever their role
log = logging.getLogger(__name__)
DASH_UPDATE = "_dash-update-component"
EXTENSION = "ecd_access"
_CALLBACK_MAP: dict[str, dict[str, Any]] = {}  # Dash's callback map, for these callbacks only
_CALLBACK_LIST: list[dict[str, Any]] = []  # their specs, as /_dash-dependencies lists them
CALLBACK_POLICIES: dict[str, Policy] = {}  # Dash callback id -> its policy
BROWSER_ONLY: set[str] = set()  # callbacks the browser runs (`browser_callback`): never asked of the server
_UNSUPPORTED = ("api_endpoint", "websocket", "background", "persistent")  # other ways in: not guarded here


class BadCallbackRequest(InvalidInput):
    """A request to /_dash-update-component that is not shaped like the callback it names (HTTP 400)."""

    status = 400
    code = "bad_request"


# ---- declaring ------------------------------------------------------------------------------------------
def _policy(allow: Iterable[str] | str, own_department: bool, clearance: str | None, note: str) -> Policy:
    return Policy.of(allow, own_department=own_department, clearance=clearance, note=note)


def secured_callback(*args: Any, allow: Iterable[str] | str, own_department: bool = False,
                     clearance: str | None = None, note: str = "", **kwargs: Any) -> Callable:
    """`dash.callback` with a policy: who may call it (`allow`: roles; a required argument), whether a
    department-bound role sees its own department's items only, the least clearance. Registered in
    this module's registry (every app gets it at `install`), never in Dash's global list."""
    for name in _UNSUPPORTED:
        if kwargs.get(name):
            raise ValueError(f"secured_callback does not guard `{name}` callbacks: add that to layouts/access.py first")
    policy = _policy(allow, own_department, clearance, note)
    before = dict(_CALLBACK_MAP)
    register = _dash_callback(*args, callback_map=_CALLBACK_MAP, callback_list=_CALLBACK_LIST, **kwargs)
    callback_id = _declared(before, policy)

    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def guarded(*a: Any, **kw: Any) -> Any:
            _enforce(policy)
            return func(*a, **kw)

        guarded.access_policy = policy  # type: ignore[attr-defined]
        guarded.callback_id = callback_id  # type: ignore[attr-defined]
        register(guarded)
        return guarded

    return decorate


def browser_callback(function_name: str, *args: Any, allow: Iterable[str] | str, **kwargs: Any) -> None:
    """A callback the browser runs: `window.dash_clientside.ecd[function_name]`, from an asset (the
    Content-Security-Policy allows no inline script). Declared with the roles of its page like any
    callback; a request to the server naming it is refused (400: there is nothing to run there)."""
    before = dict(_CALLBACK_MAP)
    register_clientside_callback(_CALLBACK_LIST, _CALLBACK_MAP, False, [], ClientsideFunction("ecd", function_name),
                                 *args, **kwargs)
    BROWSER_ONLY.add(_declared(before, _policy(allow, False, None, "")))


def _declared(before: dict[str, dict[str, Any]], policy: Policy) -> str:
    """The id of the one callback registered since `before` (a copy of the map), now under `policy`."""
    added = [k for k, v in _CALLBACK_MAP.items() if before.get(k) is not v]
    if len(added) != 1:
        raise RuntimeError(f"could not tell which callback was registered ({added})")
    CALLBACK_POLICIES[added[0]] = policy
    return added[0]


def route_policy(allow: Iterable[str] | str | None = None, *, open: bool = False, own_department: bool = False,
                 clearance: str | None = None, tokens: bool = False, note: str = "") -> Callable:
    """Declare who may call a Flask view; put it under `@server.route(...)`. `open=True`: no sign-in
    (only for the sign-in page, health and static files). `tokens=True`: API tokens may call it too
    (under /api/ only; their scope is checked per path by command.trust.tokens.scope_for)."""
    if open:
        if allow is not None:
            raise ValueError("an open route names no roles")
        policy = OPEN
    else:
        if allow is None:
            raise ValueError("name the roles that may call this route (allow=...), or open=True")
        roles = (allow,) if isinstance(allow, str) else tuple(allow)
        policy = Policy(allow=frozenset(roles), own_department=own_department, clearance=clearance, tokens=tokens,
                        note=note)

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def guarded(*a: Any, **kw: Any) -> Any:
            _enforce(policy)  # the gate has checked already; this holds for any other way in
            return view(*a, **kw)

        guarded.access_policy = policy  # type: ignore[attr-defined]
        return guarded

    return decorate


def dash_routes(app: dash.Dash) -> dict[str, Policy]:
    """Dash's own routes, by endpoint. The page itself is the same shell for every role (the page
    callback draws what the role may see); the callbacks are guarded one by one."""
    p = app.config.routes_pathname_prefix
    return {
        f"{p}_dash-component-suites/<string:package_name>/<path:fingerprinted_path>": OPEN,
        "_dash_assets.static": OPEN,
        f"{p}_favicon.ico": OPEN,
        f"{p}_dash-layout": SIGNED_IN,
        f"{p}_dash-dependencies": SIGNED_IN,
        f"{p}{DASH_UPDATE}": SIGNED_IN,  # and then the callback's own policy (callback_refusal)
        f"{p}_reload-hash": SIGNED_IN,
        p: SIGNED_IN,
        f"{p}<path:path>": SIGNED_IN,
        "static": SIGNED_IN,  # Flask's own static folder (none here)
    }


def install(app: dash.Dash) -> None:
    """Give `app` every secured callback and declare Dash's routes (before `app._setup_server()`)."""
    for cid, entry in _CALLBACK_MAP.items():
        if cid in app.callback_map:
            raise RuntimeError(f"callback {cid} registered twice")
        app.callback_map[cid] = dict(entry)
    app._callback_list.extend(dict(spec) for spec in _CALLBACK_LIST)
    app.server.extensions[EXTENSION] = {"app": app, "routes": dash_routes(app)}
    # a component-suites path Dash does not serve is a 404, not Dash's 500 (open route: anyone can ask)
    app.server.register_error_handler(dash.exceptions.DependencyException,
                                      lambda exc: (flask.jsonify({"error": "not_found", "message": "no such file"}), 404))


def route_policies(server: flask.Flask) -> dict[str, Policy | None]:
    """Every endpoint of `server` and its declared policy (None: nothing declared)."""
    table = server.extensions.get(EXTENSION, {}).get("routes", {})
    return {ep: getattr(fn, "access_policy", None) or table.get(ep) for ep, fn in server.view_functions.items()}


def verify(app: dash.Dash) -> None:
    """Refuse to start an app with a callback or a route that declares no policy (a `dash.callback`
    or a `@server.route` without `route_policy`)."""
    missing = [f"callback {cid}" for cid in app.callback_map if cid not in CALLBACK_POLICIES]
    missing += [f"route {ep}" for ep, pol in route_policies(app.server).items() if pol is None]
    if missing:
        raise RuntimeError("no access policy declared for: " + ", ".join(missing)
                           + " (use layouts.access.secured_callback / route_policy; docs/security.md, Authorization)")


# ---- who is asking ---------------------------------------------------------------------------------------
def caller() -> Caller:
    """The caller of this request: the API caller (token or HTTP Basic) under /api/, else the session's."""
    return Caller.of(flask.g.get("api_user") or current_user())


def user() -> dict[str, str]:
    """The signed-in user of a callback or view that declared a policy (checked before it ran)."""
    u = flask.g.get("api_user") or current_user()
    if not u:
        raise NotSignedIn("not signed in")
    return u


def sees(policy: Policy, *, department: str | None = None, classification: str | None = None) -> bool:
    """May this request's caller see one item through a callback or route of `policy`? Answer a refusal
    exactly as an item that does not exist."""
    return may_see(policy, caller(), department=department, classification=classification)


def own_scope(policy: Policy) -> str | None:
    """The one department whose items this request's caller sees through `policy`; None: every one."""
    return department_scope(policy, caller())


# ---- enforcing --------------------------------------------------------------------------------------------
def _error(d: Decision) -> CommandError:
    if d.status == 401:
        return NotSignedIn(d.reason)
    if d.status == 404:
        return NotFound(d.reason)
    return Forbidden(d.reason)


def _enforce(policy: Policy | None) -> None:
    d = decide(policy, caller())
    if not d:
        raise _error(d)


def _answer(err: CommandError) -> flask.Response:
    if err.status != 401:  # a refused or malformed request is worth a line (who, what, why)
        who = (flask.g.get("api_user") or current_user() or {}).get("username", "-")
        log.warning("refused %s %r for %r: %s %s", flask.request.method, flask.request.path, who, err.status,
                    err.message)
    resp = flask.jsonify(err.to_json())
    resp.status_code = err.status
    return resp


def request_policy() -> Policy | None:
    """The declared policy of this request's route (None: none declared). A request that matches no
    route runs no view: it needs a sign-in, then Flask answers 404 or 405."""
    req = flask.request
    if req.url_rule is None:
        return SIGNED_IN
    server = flask.current_app
    fn = server.view_functions.get(req.url_rule.endpoint)
    return getattr(fn, "access_policy", None) or server.extensions.get(EXTENSION, {}).get("routes", {}).get(
        req.url_rule.endpoint)


def is_callback_request() -> bool:
    req = flask.request
    return req.url_rule is not None and req.url_rule.endpoint.endswith(DASH_UPDATE) and req.method == "POST"


def refusal(policy: Policy | None, who: dict[str, Any] | None) -> flask.Response | None:
    """The one check: None when `who` may call this request's route (and, at /_dash-update-component,
    the callback the request names), else the answer: 401, 403, or 400 for a callback request that is
    not shaped like the callback (checked only once the caller may call it)."""
    caller_ = Caller.of(who)
    d = decide(policy, caller_)
    if not d:
        return _answer(_error(d))
    if not is_callback_request():
        return None
    body, problem = _read_body()
    if problem:
        return _answer(BadCallbackRequest(problem))
    output = body.get("output") if isinstance(body, dict) else None
    if not isinstance(output, str):
        return _answer(BadCallbackRequest("expected a JSON object naming a callback (`output`)"))
    app = flask.current_app.extensions.get(EXTENSION, {}).get("app")
    entry = app.callback_map.get(output) if app is not None else None
    d = decide(CALLBACK_POLICIES.get(output) if entry is not None else None, caller_)  # unknown: refused
    if not d:
        return _answer(_error(d))
    if output in BROWSER_ONLY:
        return _answer(BadCallbackRequest("that callback runs in the browser"))
    problem = shape_problem(body, entry, output)
    return _answer(BadCallbackRequest(problem)) if problem else None


# ---- the shape of a callback request ------------------------------------------------------------------
MAX_DEPTH = 64  # a Dash request nests a handful of levels (a map click: 4)
_INT_RANGE = (-(2**63), 2**64 - 1)  # what the answer's JSON encoder (orjson) can write back


def _read_body() -> tuple[Any, str | None]:
    """The request's JSON and what makes it unusable (None: nothing): not JSON, nested deeper than
    MAX_DEPTH, a lone surrogate (not text: no browser sends one, and no answer can carry it back), an
    integer no JSON encoder here can write."""
    try:
        body = json.loads(flask.request.get_data(cache=True))
    except (ValueError, RecursionError):
        return None, "the body is not JSON"
    stack = [(body, 0)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            return None, f"JSON nested deeper than {MAX_DEPTH} levels"
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for kv in v.items() for x in kv)
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)
        elif isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return None, "a string that is not text (a lone surrogate)"
        elif isinstance(v, int) and not isinstance(v, bool) and not _INT_RANGE[0] <= v <= _INT_RANGE[1]:
            return None, "a number out of range"
    return body, None

_WILDCARDS = ("ALL", "ALLSMALLER", "MATCH")
_ID_VALUE = (str, int, float, bool)


def _pattern(spec_id: str) -> dict[str, Any] | None:
    if not spec_id.startswith("{"):
        return None
    try:
        parsed = json.loads(spec_id)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _wild(v: Any) -> str | None:
    return v[0] if isinstance(v, list) and len(v) == 1 and v[0] in _WILDCARDS else None


def _strip(prop: Any) -> Any:
    return prop.split("@", 1)[0] if isinstance(prop, str) else prop


def _one_problem(sent: Any, spec_id: str, prop: str, what: str) -> str | None:
    if not isinstance(sent, dict) or _strip(sent.get("property")) != _strip(prop):
        return f"{what}: expected {spec_id}.{_strip(prop)}"
    pattern = _pattern(spec_id)
    sid = sent.get("id")
    if pattern is None:
        return None if sid == spec_id else f"{what}: expected {spec_id}.{_strip(prop)}"
    if not isinstance(sid, dict) or set(sid) != set(pattern):
        return f"{what}: expected an id like {spec_id}"
    for k, v in pattern.items():
        if _wild(v):
            if not isinstance(sid[k], _ID_VALUE):
                return f"{what}: {k} of the id must be a string or a number"
        elif sid[k] != v:
            return f"{what}: expected an id like {spec_id}"
    return None


def _dep_problem(sent: Any, spec: dict[str, Any], what: str) -> str | None:
    spec_id, prop = spec["id"], spec["property"]
    pattern = _pattern(spec_id)
    kinds = {_wild(v) for v in (pattern or {}).values()} - {None}
    if kinds & {"ALL", "ALLSMALLER"}:
        if not isinstance(sent, list) or len(sent) > 10_000:
            return f"{what}: expected a list for {spec_id}"
        return next((p for p in (_one_problem(s, spec_id, prop, what) for s in sent) if p), None)
    return _one_problem(sent, spec_id, prop, what)


def _id_of(item: dict[str, Any]) -> str:
    return json.dumps(item["id"], sort_keys=True) if isinstance(item["id"], dict) else item["id"]


def shape_problem(body: dict[str, Any], entry: dict[str, Any], output: str) -> str | None:
    """What is wrong with a callback request's shape (None: nothing): its inputs and state must be the
    callback's, in order; its outputs those of `output`; changedPropIds some of the inputs it sent."""
    from dash._utils import split_callback_id

    sent_ids: set[str] = set()
    for part in ("inputs", "state"):
        sent = body.get(part, [])
        spec = entry[part]
        if not isinstance(sent, list) or len(sent) != len(spec):
            return f"`{part}`: expected {len(spec)} item(s)"
        for i, (s, sp) in enumerate(zip(sent, spec, strict=True)):
            problem = _dep_problem(s, sp, f"{part}[{i}]")
            if problem:
                return problem
            if part == "inputs":
                for item in s if isinstance(s, list) else [s]:
                    sent_ids.add(f"{_id_of(item)}.{item['property']}")
    outs = split_callback_id(output)
    multi = isinstance(outs, list)
    sent_outs = body.get("outputs")
    if sent_outs is None:
        return "`outputs`: missing"
    # a lone output is sent bare, or as the list of its components when its id has an ALL wildcard
    # (`_dep_problem` checks which)
    if multi and (not isinstance(sent_outs, list) or len(sent_outs) != len(outs)):
        return "`outputs`: not the callback's outputs"
    for i, (s, sp) in enumerate(zip(sent_outs if multi else [sent_outs], outs if multi else [outs], strict=True)):
        problem = _dep_problem(s, sp, f"outputs[{i}]")
        if problem:
            return problem
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or len(changed) > len(sent_ids):
        return "`changedPropIds`: expected a list of the inputs sent"
    for prop_id in changed:
        if not isinstance(prop_id, str) or _normal_prop_id(prop_id) not in sent_ids:
            return "`changedPropIds`: names an input the request did not send"
    return None


def _normal_prop_id(prop_id: str) -> str:
    """`{"a":1,"b":"x"}.prop` as `_id_of` writes it (Dash's browser side does not escape non-ASCII)."""
    cid, _, prop = prop_id.rpartition(".")
    if cid.startswith("{"):
        try:
            parsed = json.loads(cid)
        except ValueError:
            return ""
        if not isinstance(parsed, dict):
            return ""
        return f"{json.dumps(parsed, sort_keys=True)}.{prop}"
    return prop_id
