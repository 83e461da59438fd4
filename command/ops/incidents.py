"""Incidents reported by people: a department's form on its phone. Validated field by field."""

from __future__ import annotations

import uuid
from typing import Any

import redis

from command.keys import Keys, shard_of
from command.models import Incident
from command.publish.views import zones as load_zones
from command.streams import incident_entry, shard_count
from command.trust import audit

CATEGORIES = ("flooding", "trapped_people", "levee_breach", "road_closed", "power_outage", "landslide",
              "medical", "other")
SEVERITIES = ("yellow", "orange", "red")


class FieldErrors(ValueError):
    """Every field that is wrong, with what is wrong with it: {field: message}."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def _number(raw: Any, field: str, lo: float, hi: float, errors: dict[str, str]) -> float | None:
    if raw is None or str(raw).strip() == "":
        errors[field] = "required"
        return None
    try:
        v = float(raw)
    except (TypeError, ValueError):
        errors[field] = f"not a number: {raw!r}"
        return None
    if not (lo <= v <= hi):
        errors[field] = f"must be between {lo:g} and {hi:g}"
        return None
    return v


def validate_report(form: dict[str, Any], *, now: int) -> Incident:
    """A new incident from a form; raises FieldErrors naming each bad field."""
    errors: dict[str, str] = {}
    category = str(form.get("category") or "").strip()
    if category not in CATEGORIES:
        errors["category"] = f"choose one of: {', '.join(CATEGORIES)}"
    severity = str(form.get("severity") or "").strip()
    if severity not in SEVERITIES:
        errors["severity"] = f"choose one of: {', '.join(SEVERITIES)}"
    lat = _number(form.get("lat"), "lat", -90, 90, errors)
    lon = _number(form.get("lon"), "lon", -180, 180, errors)
    description = str(form.get("description") or "").strip()
    if not description:
        errors["description"] = "say what is happening"
    elif len(description) > 1000:
        errors["description"] = "at most 1,000 characters"
    if errors:
        raise FieldErrors(errors)
    return Incident(id=f"R-{uuid.uuid4().hex[:8].upper()}", time=now, category=category, lat=lat, lon=lon,
                    severity=severity, description=description)


def submit_incident(r: redis.Redis, keys: Keys, incident: Incident) -> bool:
    """Write an incident atomically (its zone filled in): its current version in `keys.incidents` and
    an entry on its shard's input stream, in one MULTI/EXEC, so the engine sees it exactly once.
    False when this exact version was already taken (a repeated post changes nothing)."""
    if incident.zone is None:
        from command.scenarios.load import ZoneLocator

        zs = load_zones(r, keys)
        if zs:
            incident = incident.model_copy(update={"zone": ZoneLocator(zs).zone_of(incident.lon, incident.lat)})
    blob = incident.model_dump_json()
    stream = keys.shard_stream(shard_of(incident.id, shard_count(r, keys)))
    with r.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(keys.incidents)
                old = pipe.hget(keys.incidents, incident.id)
                if old is not None and old.decode() == blob:
                    pipe.unwatch()
                    return False
                pipe.multi()
                pipe.hset(keys.incidents, incident.id, blob)
                pipe.xadd(stream, incident_entry(incident))
                pipe.execute()
                return True
            except redis.WatchError:
                continue


def submit(r: redis.Redis, keys: Keys, inc: Incident, *, who: str, source: str = "department") -> Incident:
    """A person's report: written like any incident, and audited with who reported it."""
    submit_incident(r, keys, inc)
    audit.record(r, keys, who=who, action="incident_report", at=inc.time,
                 details={"incident": inc.id, "category": inc.category, "lat": inc.lat, "lon": inc.lon,
                          "severity": inc.severity, "source": source})
    return inc
