"""Open-Meteo forecast API: hourly precipitation and wind speed for configured points, as *forecasts*.

Request: ``/v1/forecast?latitude=..&longitude=..&hourly=precipitation,wind_speed_10m&timezone=auto``.
Everything here is a forecast, never an observation: each value is a `FeedReading` with `issued`
(the run it came from) and goes to ``ParseResult.forecasts``; the coordinator writes them as ``f``
entries and to ``keys.forecasts``, never to the observed ``r`` readings.

Quirks handled: ``hourly.time`` is local wall-clock time with no offset (the ``timezone`` name is
applied, so a DST change is right; ``utc_offset_seconds`` when the name is unknown); the arrays are
column-oriented with units in ``hourly_units`` (``mm``/``inch``, ``km/h``/``m/s``/``mp/h``/``kn``);
``null`` inside an array is a missing value (any other value goes through
`command.values.clean_number`: a boolean, non-numeric or non-finite one is rejected with its
reason); latitude/longitude are snapped to the model grid; ``{"error": true, "reason": ...}`` is
an error body.

The response does not say which model run produced it: `issued` is what the caller passes (the
coordinator passes the fetch time, floored to the hour), else the first hour of the series. The
precipitation at hour T is the total of the hour before T, so summing the values valid in
(now, now + 6 h] gives the rain forecast for the next 6 hours.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from command.errors import InvalidInput
from command.models import Station
from command.units import UnitError, factor_for
from command.values import clean_number

from .errors import PayloadError
from .http import load_json
from .source import FeedReading, ParseResult, Rejected, Request, Source

VARIABLES = {"precipitation": "rainfall", "rain": "rainfall", "wind_speed_10m": "wind_speed",
             "windspeed_10m": "wind_speed"}
UNIT_ALIASES = {"inch": "in", "mp/h": "mph", "kn": "kn", "km/h": "km/h", "m/s": "m/s", "mm": "mm"}
HOUR_MS = 3_600_000


def _tz(doc: dict[str, Any]) -> Any:
    name = doc.get("timezone")
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    off = doc.get("utc_offset_seconds")
    if isinstance(off, int | float):
        return timezone(timedelta(seconds=off))
    return UTC


def point_id(doc: dict[str, Any]) -> str:
    return f"om:{float(doc['latitude']):.4f},{float(doc['longitude']):.4f}"


def parse(payload: bytes, *, point: str | None = None, issued: int | None = None, name: str | None = None,
          lat: float | None = None, lon: float | None = None) -> ParseResult:
    """Forecast readings for one point. `point` names it (station id ``om:<point>``)."""
    doc = load_json(payload)
    if not isinstance(doc, dict):
        raise PayloadError("not an Open-Meteo response: expected a JSON object")
    if doc.get("error"):
        raise PayloadError(f"Open-Meteo error: {doc.get('reason') or 'unspecified'}")
    out = ParseResult()
    hourly = doc.get("hourly")
    if not isinstance(hourly, dict):
        what = "a daily forecast" if isinstance(doc.get("daily"), dict) else "no hourly data"
        out.rejected.append(Rejected({k: doc.get(k) for k in ("latitude", "longitude", "timezone")},
                                     f"{what}: request hourly=precipitation,wind_speed_10m"))
        return out
    times = hourly.get("time")
    if not isinstance(times, list):
        raise PayloadError("Open-Meteo response without hourly.time")
    tz = _tz(doc)
    try:
        ts = []
        for text in times:
            dt = datetime.fromisoformat(str(text))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=tz)
            ts.append(int(dt.timestamp() * 1000))
    except ValueError as exc:
        raise PayloadError(f"Open-Meteo hourly.time: {exc}") from None
    try:
        sid = f"om:{point}" if point else point_id(doc)
        plat = float(lat if lat is not None else doc["latitude"])
        plon = float(lon if lon is not None else doc["longitude"])
    except (KeyError, TypeError, ValueError):
        raise PayloadError("Open-Meteo response without latitude/longitude") from None
    if issued is None:
        issued = ts[0] if ts else 0
    units = doc.get("hourly_units") or {}
    kinds_found = []
    for var, kind in VARIABLES.items():
        values = hourly.get(var)
        if values is None:
            continue
        if not isinstance(values, list) or len(values) != len(ts):
            out.rejected.append(Rejected({"variable": var}, f"hourly.{var} does not match hourly.time"))
            continue
        unit = str(units.get(var) or "")
        try:
            factor, si = factor_for(UNIT_ALIASES.get(unit, unit), kind)
        except UnitError as exc:
            out.rejected.append(Rejected({"variable": var, "unit": unit}, str(exc)))
            continue
        kinds_found.append(kind)
        for t, text, v in zip(ts, times, values, strict=True):
            if v is None:
                out.rejected.append(Rejected({"variable": var, "time": text, "value": None},
                                             "missing value (null)"))
                continue
            try:
                value = clean_number(v)
            except InvalidInput as exc:
                out.rejected.append(Rejected({"variable": var, "time": text, "value": v}, exc.message))
                continue
            out.forecasts.append(FeedReading(sid, kind, t, value * factor, si, issued=issued))
    if kinds_found:
        kind = "rainfall" if "rainfall" in kinds_found else kinds_found[0]
        out.stations.append(Station(id=sid, name=name or sid, kind=kind, lon=plon, lat=plat,
                                    unit={"rainfall": "mm", "wind_speed": "m/s"}[kind]))
    return out


class OpenMeteoSource(Source):
    name = "open-meteo"

    def __init__(self, cfg: dict[str, Any] | None = None) -> None:
        super().__init__(cfg)
        self.url = str(self.cfg.get("url") or "https://api.open-meteo.com/v1/forecast")
        self.points = [dict(p) for p in self.cfg.get("points") or []]
        self.hours = int(self.cfg.get("forecast_hours", 48))

    def requests(self, now: int) -> list[Request]:
        reqs = []
        for p in self.points:
            params = {"latitude": p["lat"], "longitude": p["lon"], "hourly": "precipitation,wind_speed_10m",
                      "forecast_hours": self.hours, "timezone": "auto"}
            reqs.append(Request(self.url, params, context={"point": str(p["id"]), "name": p.get("name"),
                                                           "lat": float(p["lat"]), "lon": float(p["lon"])}))
        return reqs

    def parse(self, payload: bytes, req: Request, fetched_at: int) -> ParseResult:
        issued = fetched_at - fetched_at % HOUR_MS  # the run we saw: this hour's
        return parse(payload, issued=issued, **req.context)
