"""Machine interfaces of the web app, for other agencies' systems and GIS tools:

- `GET /api/<ns>/geojson/<layer>` (stations, zones, alerts, resources, warnings): GeoJSON for QGIS or any web map;
- `GET /api/<ns>/alerts.atom`: an Atom feed of the current alerts as CAP 1.2;
- `GET /api/<ns>/cap/<fingerprint>.xml`: an alert's newest CAP 1.2 message;
- `POST /api/<ns>/incidents`: incident intake from another dispatch system (JSON; 201, 200 when
  already taken, 422 with a message per bad field, 403 when the incident belongs to another
  department, 400/413 for a body that is not JSON, nested too deep or over 16 KB; nothing
  half-written). Validation and the write are `command.ops.incidents.submit`, as for the form.

Sign-in is a browser session, an API token (`Authorization: Bearer`, only its scopes) or HTTP Basic
with a dashboard user (so a script or QGIS can use it), all through one throttle: the gate in
layouts/signin.py, which sets `flask.g.api_user`. `<ns>` is `live` or a drill's namespace.
"""

from __future__ import annotations

import json

import flask
from werkzeug.exceptions import RequestEntityTooLarge

from command.keys import Keys

from .common import rds

LAYERS = ("stations", "zones", "alerts", "resources", "warnings")
MAX_BODY = 16 * 1024  # an incident is well under 3 KB
MAX_DEPTH = 4  # an incident is one flat object


def _keys(ns: str) -> Keys:
    try:
        keys = Keys(ns)
    except ValueError:
        flask.abort(404, description=f"no namespace {ns!r}")
    if not rds().exists(keys.meta):
        flask.abort(404, description=f"no namespace {ns!r}")
    return keys


def register_routes(server: flask.Flask) -> None:
    from command.publish import cap, geojson

    @server.route("/api/<ns>/geojson/<layer>")
    def _geojson(ns: str, layer: str):
        if layer.endswith(".geojson"):
            layer = layer[: -len(".geojson")]
        if layer not in LAYERS:
            return flask.jsonify({"error": f"unknown layer {layer!r} (one of {', '.join(LAYERS)})"}), 404
        keys = _keys(ns)
        build = {"stations": geojson.collect_stations, "zones": geojson.collect_zones,
                 "alerts": geojson.collect_open_alerts, "resources": geojson.collect_resources,
                 "warnings": geojson.collect_warnings}[layer]
        return flask.Response(flask.json.dumps(build(rds(), keys)), mimetype="application/geo+json")

    @server.route("/api/<ns>/alerts.atom")
    def _atom(ns: str):
        keys = _keys(ns)
        base = flask.request.url_root.rstrip("/") + f"/api/{keys.ns}"
        return flask.Response(cap.atom_feed(rds(), keys, base_url=base), mimetype="application/atom+xml")

    @server.route("/api/<ns>/cap/<fingerprint>.xml")
    def _cap(ns: str, fingerprint: str):
        keys = _keys(ns)
        chain = cap.alert_messages(rds(), keys).get(fingerprint)
        if not chain:
            return flask.jsonify({"error": f"no alert {fingerprint!r}"}), 404
        return flask.Response(chain[-1][1], mimetype="application/cap+xml")

    @server.route("/api/<ns>/incidents", methods=["POST"])
    def _intake(ns: str):
        from command.errors import CommandError
        from command.ops import incidents

        user = flask.g.get("api_user") or flask.session.get("user")
        if not user:
            return flask.jsonify({"error": "not signed in"}), 401
        keys = _keys(ns)
        payload, problem = _json_body()
        if problem is not None:
            return problem
        try:
            done = incidents.submit(rds(), keys, payload, incidents.Actor.of_user(user), incidents.INTAKE)
        except CommandError as exc:  # InvalidInput 422 with a message per field, Forbidden 403
            return flask.jsonify(exc.to_json()), exc.status
        return flask.jsonify({"id": done.incident.id, "taken": done.taken}), 201 if done.taken else 200


def _body_error(status: int, message: str):
    return flask.jsonify({"error": "bad_request" if status == 400 else "too_large", "message": message,
                          "errors": {"body": message}}), status


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
    """The request's JSON body, or (None, a 400/413 answer): at most MAX_BODY bytes, UTF-8, nested
    at most MAX_DEPTH deep. NaN and huge numbers parse, and the validator refuses them per field."""
    req = flask.request
    if not req.is_json:
        return None, _body_error(400, "expected a JSON object (Content-Type: application/json)")
    if req.content_length is not None and req.content_length > MAX_BODY:
        return None, _body_error(413, f"the body is larger than {MAX_BODY:,} bytes")
    req.max_content_length = MAX_BODY  # also bounds a body sent without a length (chunked)
    try:
        raw = req.get_data(cache=False)
    except RequestEntityTooLarge:
        return None, _body_error(413, f"the body is larger than {MAX_BODY:,} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, _body_error(400, "the body is not UTF-8")
    if _json_depth(text) > MAX_DEPTH:
        return None, _body_error(400, f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text), None
    except (ValueError, RecursionError):
        return None, _body_error(400, "the body is not valid JSON")
