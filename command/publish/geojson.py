"""Map layers as GeoJSON FeatureCollections (RFC 7946, [lon, lat]), read from a namespace.

Pure builders over Redis reads, for the web app to serve and for QGIS or any web map to load:

- `collect_stations`: every station, with its newest readings and its current level (the
  highest level of its open alerts, or null);
- `collect_zones`: every zone, with its current level (open alerts whose subject is the zone or
  that lie in it) and the external warnings over it;
- `collect_open_alerts`: open alerts, as points (station, incident) or the zone's polygon;
- `collect_resources`: resources with their status;
- `collect_warnings`: external warnings in force that carry an area;
- `collect_incidents`: incidents with their category, status and reporter.

Times are ISO 8601 in the namespace's timezone (else UTC). Each builder takes the `viewer` and gives
only what the classification clears them for (command/trust/classification.py): a layer whose
dataset they are not cleared for is empty, a field masked or left out; secret values shown are
audited once per request.
"""

from __future__ import annotations

from typing import Any

import orjson
import redis

from command.keys import Keys
from command.models import ExternalWarning, Resource, Station, Zone
from command.timeutil import to_iso
from command.trust.classification import INTERNAL, Redactor, Viewer


def _fc(features: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": features, **extra}


def _point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}


def _tz(r: redis.Redis, keys: Keys) -> str | None:
    raw = r.hget(keys.meta, "timezone")
    return raw.decode() if raw else None


def _levels(r: redis.Redis, keys: Keys) -> list[str]:
    raw = r.get(keys.rules)
    return list(orjson.loads(raw).get("levels", [])) if raw else ["yellow", "orange", "red"]


def _open_alerts(r: redis.Redis, keys: Keys, red: Redactor) -> list[dict[str, Any]]:
    """Open alerts, as stored (none when `red`'s viewer is not cleared for alerts: redact each before
    it goes out)."""
    if not red.allowed("alerts"):
        return []
    fps = [fp.decode() for fp in r.zrange(keys.alerts_open, 0, -1)]
    out = []
    for i in range(0, len(fps), 1000):
        for raw in r.mget([keys.alert(fp) for fp in fps[i:i + 1000]]):
            if raw is not None:
                a = orjson.loads(raw)
                if a.get("status") == "open":
                    out.append(a)
    return out


def _highest(levels: list[str], current: str | None, new: str) -> str:
    if current is None:
        return new
    rank = {lv: i for i, lv in enumerate(levels)}
    return new if rank.get(new, -1) > rank.get(current, -1) else current


def collect_stations(r: redis.Redis, keys: Keys, viewer: Viewer = INTERNAL) -> dict[str, Any]:
    red = Redactor(viewer)
    if not red.allowed("stations"):
        return _fc([])
    tz, levels = _tz(r, keys), _levels(r, keys)
    by_station: dict[str, dict[str, Any]] = {}
    for a in _open_alerts(r, keys, red):
        if a.get("subject_type") == "station":
            d = by_station.setdefault(a["subject"], {"level": None, "alerts": 0})
            d["level"] = _highest(levels, d["level"], a["level"])
            d["alerts"] += 1
    readings = red.allowed("readings")
    latest = {k.decode(): orjson.loads(v) for k, v in r.hgetall(keys.latest).items()} if readings else {}
    feats = []
    for _sid, raw in sorted(r.hgetall(keys.stations).items()):
        st = Station.model_validate_json(raw)
        al = by_station.get(st.id, {"level": None, "alerts": 0})
        newest = latest.get(st.id, {})
        own = newest.get(st.kind)
        props = {**(red.record("stations", {"id": st.id, "name": st.name, "name_zh": st.name_zh, "kind": st.kind,
                                            "zone": st.zone, "unit": st.unit, "thresholds": st.thresholds}, st.id)
                    or {}),
                 "level": al["level"], "open_alerts": al["alerts"]}
        if readings:
            props.update(red.record("readings", {
                "value": own[1] if own else None, "time": to_iso(own[0], tz) if own else None,
                "latest": {k: {"time": to_iso(t, tz), "value": v} for k, (t, v) in newest.items()}}, st.id) or {})
        feats.append({"type": "Feature", "id": st.id, "geometry": _point(st.lon, st.lat), "properties": props})
    red.audit(r, keys, "geojson:stations")
    return _fc(feats)


def _warnings(r: redis.Redis, keys: Keys) -> list[ExternalWarning]:
    return [ExternalWarning.model_validate_json(v) for v in r.hvals(keys.warnings)]


def collect_zones(r: redis.Redis, keys: Keys, viewer: Viewer = INTERNAL) -> dict[str, Any]:
    from shapely.geometry import shape

    red = Redactor(viewer)
    if not red.allowed("zones"):
        return _fc([])
    levels = _levels(r, keys)
    level: dict[str, str | None] = {}
    count: dict[str, int] = {}
    for a in _open_alerts(r, keys, red):
        zid = a["subject"] if a.get("subject_type") == "zone" else a.get("zone")
        if zid:
            level[zid] = _highest(levels, level.get(zid), a["level"])
            count[zid] = count.get(zid, 0) + 1
    zones = [Zone.model_validate_json(v) for v in r.hvals(keys.zones)]
    warned: dict[str, list[str]] = {}
    ws = _warnings(r, keys) if red.allowed("warnings") else []
    if ws:
        shapes = {z.id: shape(z.geometry) for z in zones}
        for w in ws:
            area = None
            if w.geometry:
                try:
                    area = shape(w.geometry)
                except Exception:  # a malformed area is matched by geocode only
                    area = None
            for z in zones:
                by_code = any(set(c) & set(w.geocodes.get(s, ())) for s, c in z.geocodes.items())
                if by_code or (area is not None and shapes[z.id].intersects(area)):
                    warned.setdefault(z.id, []).append(w.id)
    feats = []
    for z in sorted(zones, key=lambda z: z.id):
        props = {"id": z.id, "name": z.name, "name_zh": z.name_zh, "risk": z.risk, "level": level.get(z.id),
                 "open_alerts": count.get(z.id, 0), "warnings": sorted(warned.get(z.id, []))}
        feats.append({"type": "Feature", "id": z.id, "geometry": z.geometry,
                      "properties": red.record("zones", props, z.id)})
    red.audit(r, keys, "geojson:zones")
    return _fc(feats)


def collect_open_alerts(r: redis.Redis, keys: Keys, viewer: Viewer = INTERNAL) -> dict[str, Any]:
    red = Redactor(viewer)
    tz = _tz(r, keys)
    zones = {k.decode(): Zone.model_validate_json(v) for k, v in r.hgetall(keys.zones).items()}
    feats = []
    for a in sorted(_open_alerts(r, keys, red), key=lambda a: (a["opened_at"], a["fingerprint"])):
        geom = None
        if a.get("subject_type") == "zone" and a["subject"] in zones:
            geom = zones[a["subject"]].geometry
        elif a.get("lon") is not None and a.get("lat") is not None:
            geom = _point(a["lon"], a["lat"])
        props = {k: a.get(k) for k in ("fingerprint", "rule", "rule_kind", "subject", "subject_type", "level",
                                       "peak_level", "value", "peak_value", "unit", "zone", "trend_per_h",
                                       "next_level", "message")}
        props.update({"opened_at": to_iso(a["opened_at"], tz), "updated_at": to_iso(a["updated_at"], tz),
                      "first_breach_at": to_iso(a.get("first_breach_at"), tz),
                      "next_level_eta": to_iso(a.get("next_level_eta"), tz)})
        feats.append({"type": "Feature", "id": a["fingerprint"], "geometry": geom,
                      "properties": red.record("alerts", props, a["fingerprint"])})
    red.audit(r, keys, "geojson:alerts")
    return _fc(feats)


def collect_resources(r: redis.Redis, keys: Keys, viewer: Viewer = INTERNAL) -> dict[str, Any]:
    red = Redactor(viewer)
    feats: list[dict[str, Any]] = []
    for raw in r.hvals(keys.resources) if red.allowed("resources") else []:
        res = Resource.model_validate_json(raw)
        props = red.record("resources", {"id": res.id, "department": res.department, "type": res.type,
                                         "name": res.name, "status": str(res.status), "capacity": res.capacity}, res.id)
        feats.append({"type": "Feature", "id": res.id, "geometry": _point(res.lon, res.lat), "properties": props})
    feats.sort(key=lambda f: f["id"])
    red.audit(r, keys, "geojson:resources")
    return _fc(feats)


def collect_incidents(r: redis.Redis, keys: Keys, viewer: Viewer = INTERNAL) -> dict[str, Any]:
    """Incidents as points: category, severity, status, zone, description, when reported and by whom
    (department), and the reporter's name and phone (secret: masked for a viewer not cleared)."""
    red = Redactor(viewer)
    tz = _tz(r, keys)
    feats = []
    for raw in r.hvals(keys.incidents) if red.allowed("incidents") else []:
        rec = orjson.loads(raw)
        props = {k: rec.get(k) for k in ("id", "category", "severity", "status", "zone", "description",
                                         "reported_by", "submitted_by", "reporter")}
        props["time"] = to_iso(rec.get("time"), tz)
        history = rec.get("history") or []
        props["updated"] = to_iso(history[-1].get("at"), tz) if history else props["time"]
        shown = red.record("incidents", props, rec.get("id", "")) or {}
        feats.append({"type": "Feature", "id": rec.get("id"), "geometry": _point(rec.get("lon"), rec.get("lat")),
                      "properties": shown})
    feats.sort(key=lambda f: (f["properties"].get("time") or "", str(f["id"])))
    red.audit(r, keys, "geojson:incidents")
    return _fc(feats)


def collect_warnings(r: redis.Redis, keys: Keys, viewer: Viewer = INTERNAL) -> dict[str, Any]:
    red = Redactor(viewer)
    if not red.allowed("warnings"):
        return _fc([])
    tz = _tz(r, keys)
    feats = []
    for w in sorted(_warnings(r, keys), key=lambda w: w.id):
        props = {"id": w.id, "source": w.source, "event": w.event, "headline": w.headline, "severity": w.severity,
                 "urgency": w.urgency, "certainty": w.certainty, "area": w.area_desc, "geocodes": w.geocodes,
                 "sent": to_iso(w.sent, tz), "onset": to_iso(w.onset, tz), "expires": to_iso(w.expires, tz),
                 "ends": to_iso(w.ends, tz)}
        feats.append({"type": "Feature", "id": w.id, "geometry": w.geometry,
                      "properties": red.record("warnings", props, w.id)})
    red.audit(r, keys, "geojson:warnings")
    return _fc(feats)
