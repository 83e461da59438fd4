"""Incident intake over HTTP: the validation and the atomic write. The web app wires the route.

Another dispatch system (or a script) posts an incident as JSON::

    {"id": "CAD-2026-0142", "time": "2026-07-14T16:05:00+08:00", "category": "trapped_people",
     "lat": 30.52, "lon": 114.27, "severity": "red", "description": "Family on a roof", "status": "open"}

`validate_incident` returns an `Incident` or raises `IntakeError` whose `errors` maps each bad
field to a message (answer 422 with it). `submit_incident` writes the incident in one MULTI/EXEC:
the current version in `keys.incidents` and an ``i`` entry on its shard's input stream, so the
engine sees it exactly once; posting the same incident again changes nothing.
"""

from __future__ import annotations

import re
from typing import Any

from command.models import Incident
from command.ops.incidents import submit_incident  # noqa: F401 - the one write path, re-exported for intake users
from command.timeutil import parse_time

FIELDS = {"id", "time", "category", "lat", "lon", "severity", "description", "status"}
REQUIRED = ("id", "time", "category", "lat", "lon")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_CATEGORY_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_DESCRIPTION = 2000


class IntakeError(ValueError):
    """An incident that cannot be taken. `errors`: field -> what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            return None
    return None


def validate_incident(payload: Any) -> Incident:
    """Check every field and report every problem at once (no partial acceptance)."""
    if not isinstance(payload, dict):
        raise IntakeError({"body": "expected a JSON object"})
    errors: dict[str, str] = {}
    for k in sorted(set(payload) - FIELDS):
        errors[k] = f"unknown field (allowed: {', '.join(sorted(FIELDS))})"
    for k in REQUIRED:
        if payload.get(k) in (None, ""):
            errors[k] = "required"
    iid = payload.get("id")
    if "id" not in errors and (not isinstance(iid, str) or not _ID_RE.match(iid)):
        errors["id"] = "letters, digits and _ . : - only, at most 64 characters"
    t = None
    if "time" not in errors:
        try:
            t = parse_time(str(payload["time"]))
        except ValueError:
            errors["time"] = f"ISO 8601 with a UTC offset, e.g. 2026-07-14T16:05:00+08:00 (got {payload['time']!r})"
    cat = payload.get("category")
    if "category" not in errors and (not isinstance(cat, str) or not _CATEGORY_RE.match(cat)):
        errors["category"] = "a lower-case name such as trapped_people or levee_breach"
    lat, lon = _number(payload.get("lat")), _number(payload.get("lon"))
    if "lat" not in errors and (lat is None or not -90 <= lat <= 90):
        errors["lat"] = "a number from -90 to 90"
    if "lon" not in errors and (lon is None or not -180 <= lon <= 180):
        errors["lon"] = "a number from -180 to 180"
    sev = payload.get("severity", "")
    if not isinstance(sev, str) or len(sev) > 32:
        errors["severity"] = "text of at most 32 characters"
    desc = payload.get("description", "")
    if not isinstance(desc, str) or len(desc) > MAX_DESCRIPTION:
        errors["description"] = f"text of at most {MAX_DESCRIPTION} characters"
    status = payload.get("status", "open")
    if status not in ("open", "closed"):
        errors["status"] = "open or closed"
    if errors:
        raise IntakeError(errors)
    return Incident(id=iid, time=t, category=cat, lat=lat, lon=lon, severity=sev or "", description=desc or "",
                    status=status)
