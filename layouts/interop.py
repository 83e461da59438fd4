"""Machine interfaces of the web app, for other agencies' systems and GIS tools:

- `GET /api/<ns>/geojson/<layer>` (stations, zones, alerts, resources, warnings, incidents): GeoJSON for
  QGIS or any web map;
- `GET /api/<ns>/alerts.atom`: an Atom feed of the current alerts as CAP 1.2;
- `GET /api/<ns>/cap/<fingerprint>.xml`: an alert's newest CAP 1.2 message;
- `POST /api/<ns>/incidents`: incident intake from another dispatch system (JSON; 201, 200 when
  already taken, 422 with a message per bad field, 403 when the incident belongs to another
  department, 400/413 for a body that is not JSON, nested too deep or over 16 KB; nothing
  half-written). Validation and the write are `command.ops.incidents.submit`, as for the form.

Every read answers with what the caller is cleared for (command/trust/classification.py: a token with
`read_public` sees public data only, `read_internal` internal; a person their `clearance`): a field not
cleared is masked or left out, a layer not cleared is empty, and secret values shown are audited.

Sign-in is a browser session, an API token (`Authorization: Bearer`, only its scopes) or HTTP Basic
with a dashboard user (so a script or QGIS can use it), all through one throttle: the gate in
layouts/signin.py, which sets `flask.g.api_user`. `<ns>` is `live` or a drill's namespace.

Errors are answered in one place, `answer_error`, registered on the app for every
`command.errors.CommandError` (and for Redis being down, as `Unavailable`): the error's `status`
and its `to_json()` body. No route formats an error itself; each raises (`NotFound`, `BadBody`, ...).
"""

from __future__ import annotations

import json
import math

import flask
from werkzeug.exceptions import RequestEntityTooLarge

from command.errors import REDIS_DOWN, CommandError, InvalidInput, NotFound, unavailable_from
from command.keys import Keys

from . import access
from .access import route_policy
from .common import current_viewer, rds

LAYERS = ("stations", "zones", "alerts", "resources", "warnings", "incidents")
READERS = access.ANY_ROLE  # people who read over /api/ (tokens: by scope, command/trust/tokens.scope_for)
REPORTERS = ("operator", "department", "planner")  # people who submit incidents (not admin, not auditor)
MAX_BODY = 16 * 1024  # an incident is well under 3 KB
MAX_DEPTH = 4  # an incident is one flat object


class BadBody(InvalidInput):
    """A request body that is not one JSON object of an incident's size (HTTP 400)."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message, field="body")


class TooLarge(BadBody):
    status = 413
    code = "too_large"


def http_status(exc: CommandError) -> int:
    """The HTTP status answering `exc`. A feed's error carries the *upstream* status: ours is 503
    when retrying may help, else 502 (feeds/errors.py)."""
    from feeds.errors import FeedError

    if isinstance(exc, FeedError):
        return 503 if exc.retryable else 502
    return exc.status


def answer_error(exc: Exception):
    """The app's one answer to a refusal or failure: the status and the error's JSON body (with
    Retry-After when the error knows it). Redis being down is answered as `Unavailable` (503)."""
    err = exc if isinstance(exc, CommandError) else unavailable_from(exc)
    if err is None:
        raise exc  # not ours to answer (refused Redis credentials): Flask's 500
    resp = flask.jsonify(err.to_json())
    resp.status_code = http_status(err)
    retry_after = getattr(err, "retry_after", None)
    if retry_after:
        resp.headers["Retry-After"] = str(math.ceil(retry_after))
    return resp


def _keys(ns: str) -> Keys:
    try:
        keys = Keys(ns)
    except InvalidInput:
        raise NotFound(f"no namespace {ns!r}", field="namespace") from None
    if not rds().exists(keys.meta):
        raise NotFound(f"no namespace {ns!r}", field="namespace")
    return keys


def register_routes(server: flask.Flask) -> None:
    from command.publish import cap, geojson

    server.register_error_handler(CommandError, answer_error)
    for down in REDIS_DOWN:
        server.register_error_handler(down, answer_error)

    @server.route("/api/<ns>/geojson/<layer>")
    @route_policy(allow=READERS, tokens=True)
    def _geojson(ns: str, layer: str):
        if layer.endswith(".geojson"):
            layer = layer[: -len(".geojson")]
        if layer not in LAYERS:
            raise NotFound(f"unknown layer {layer!r} (one of {', '.join(LAYERS)})", field="layer")
        keys = _keys(ns)
        build = {"stations": geojson.collect_stations, "zones": geojson.collect_zones,
                 "alerts": geojson.collect_open_alerts, "resources": geojson.collect_resources,
                 "warnings": geojson.collect_warnings, "incidents": geojson.collect_incidents}[layer]
        return flask.Response(flask.json.dumps(build(rds(), keys, current_viewer())), mimetype="application/geo+json")

    @server.route("/api/<ns>/alerts.atom")
    @route_policy(allow=READERS, tokens=True)
    def _atom(ns: str):
        keys = _keys(ns)
        base = flask.request.url_root.rstrip("/") + f"/api/{keys.ns}"
        return flask.Response(cap.atom_feed(rds(), keys, base_url=base, viewer=current_viewer()),
                              mimetype="application/atom+xml")

    @server.route("/api/<ns>/cap/<fingerprint>.xml")
    @route_policy(allow=READERS, tokens=True)
    def _cap(ns: str, fingerprint: str):
        keys = _keys(ns)
        chain = cap.alert_messages(rds(), keys, viewer=current_viewer(), only=fingerprint).get(fingerprint)
        if not chain:
            raise NotFound(f"no alert {fingerprint!r}", field="fingerprint")
        return flask.Response(chain[-1][1], mimetype="application/cap+xml")

    @server.route("/api/<ns>/incidents", methods=["POST"])
    @route_policy(allow=REPORTERS, tokens=True, note="tokens with submit_incidents; as the caller's department")
    def _intake(ns: str):
        from command.ops import incidents

        user = access.user()
        keys = _keys(ns)
        # InvalidInput (422, a message per field) and Forbidden (403) are answered by answer_error
        done = incidents.submit(rds(), keys, _json_body(), incidents.Actor.of_user(user), incidents.INTAKE)
        return flask.jsonify({"id": done.incident.id, "taken": done.taken}), 201 if done.taken else 200


def _json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON text (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _json_body():
    """The request's JSON body: at most MAX_BODY bytes (else TooLarge), UTF-8, nested at most
    MAX_DEPTH deep (else BadBody). NaN and huge numbers parse, and the validator refuses them per field."""
    req = flask.request
    if not req.is_json:
        raise BadBody("expected a JSON object (Content-Type: application/json)")
    if req.content_length is not None and req.content_length > MAX_BODY:
        raise TooLarge(f"the body is larger than {MAX_BODY:,} bytes")
    req.max_content_length = MAX_BODY  # also bounds a body sent without a length (chunked)
    try:
        raw = req.get_data(cache=False)
    except RequestEntityTooLarge:
        raise TooLarge(f"the body is larger than {MAX_BODY:,} bytes") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody("the body is not UTF-8") from None
    if _json_depth(text) > MAX_DEPTH:
        raise BadBody(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise BadBody("the body is not valid JSON") from None
