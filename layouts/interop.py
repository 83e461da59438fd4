"""Machine interfaces of the web app, for other agencies' systems and GIS tools:

- `GET /api/<ns>/geojson/<layer>` (stations, zones, alerts, resources, warnings): GeoJSON for QGIS or any web map;
- `GET /api/<ns>/alerts.atom`: an Atom feed of the current alerts as CAP 1.2;
- `GET /api/<ns>/cap/<fingerprint>.xml`: an alert's newest CAP 1.2 message;
- `POST /api/<ns>/incidents`: incident intake from another dispatch system (JSON; 201, 200 when
  already taken, 422 with a message per bad field, nothing half-written).

Sign-in is a browser session or HTTP Basic with a dashboard user (so a script or QGIS can use it).
`<ns>` is `live` or a drill's namespace.
"""

from __future__ import annotations

import base64

import flask

from command.keys import Keys
from command.trust.auth import authenticate, load_users

from .common import rds

LAYERS = ("stations", "zones", "alerts", "resources", "warnings")


def basic_auth_user(users_file) -> dict | None:
    header = flask.request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return None
    try:
        name, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    user = authenticate(load_users(users_file), name, password)
    return user.public() if user else None


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
        from command.trust import audit
        from feeds.intake import IntakeError, submit_incident, validate_incident

        user = flask.g.get("api_user") or flask.session.get("user")
        keys = _keys(ns)
        payload = flask.request.get_json(silent=True)
        if payload is None:
            return flask.jsonify({"errors": {"body": "expected a JSON object (Content-Type: application/json)"}}), 400
        try:
            inc = validate_incident(payload)
        except IntakeError as exc:
            return flask.jsonify({"errors": exc.errors}), 422
        r = rds()
        taken = submit_incident(r, keys, inc)
        if taken:
            audit.record(r, keys, who=user["username"], action="incident_intake", at=inc.time,
                         details={"incident": inc.id, "category": inc.category, "status": inc.status})
        return flask.jsonify({"id": inc.id, "taken": taken}), 201 if taken else 200
