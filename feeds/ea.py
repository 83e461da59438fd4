"""UK Environment Agency real-time flood-monitoring API: stations, readings, flood warnings.

Base ``https://environment.data.gov.uk/flood-monitoring``. Every answer is ``{meta, items}``;
``items`` is a list for a collection and an object for one resource. `parse` recognises:

- stations (``/id/stations``, ``/id/stations/{id}``): stations, their thresholds where the
  station's ``stageScale`` is given in full, and each measure's ``latestReading`` as a reading;
- readings (``/id/stations/{id}/readings``, ``/data/readings?latest``): readings;
- floods (``/id/floods``, ``/id/floods/{id}``): external warnings.

Station ids: ``ea:<notation>`` for the station's main level (qualifier Stage, Tidal Level or
Groundwater), its flow and its rainfall; ``ea:<notation>:downstage`` for a downstream stage, and
``ea:<notation>:<qualifier>`` for any other extra level measure (e.g. ``:height``).

Thresholds from ``stageScale`` (``downstageScale`` for the downstream station), in the measure's own
datum, like the readings: ``typicalRangeHigh`` -> yellow (above the normal range: flooding
possible), ``highestRecent`` -> orange (the highest level of recent years), ``maxOnRecord`` -> red
(the highest ever). A bound that does not rise above the one below it is left out.

Flood warnings: ``severityLevel`` 1 Severe Flood Warning -> CAP Extreme, 2 Flood Warning -> Severe,
3 Flood Alert -> Moderate, 4 (no longer in force) -> a Cancel. The warning id is
``ea:<floodAreaID>``: one warning per flood area, updated in place. Times without an offset
(``timeRaised`` ...) are UK local time (Europe/London).

Reading values are cleaned by `command.values.clean_number`: a missing, non-numeric, boolean (never
1.0) or non-finite value is rejected with its reason, as is EA's no-data value -999999.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from command.errors import InvalidInput
from command.models import ExternalWarning, Station
from command.units import UnitError, factor_for
from command.values import clean_number

from .errors import PayloadError
from .http import load_json
from .source import FeedReading, ParseResult, Rejected, Request, Source

LONDON = ZoneInfo("Europe/London")
PARAMETER_KIND = {"level": "water_level", "flow": "discharge", "rainfall": "rainfall", "wind": "wind_speed"}
# EA unit names (and measure-id suffixes) -> units this project knows
UNIT_NAMES = {"m": "m", "masd": "m", "maod": "m", "mbdat": "m", "m3/s": "m3/s", "m3_s": "m3/s", "mm": "mm",
              "m/s": "m/s", "knots": "kn", "kn": "kn"}
MAIN_LEVEL = ("stage", "tidal_level", "groundwater")
NO_DATA = -999999.0  # EA's sentinel for a reading it has no value for
SEVERITY = {1: ("Extreme", "Immediate", "Observed"), 2: ("Severe", "Immediate", "Likely"),
            3: ("Moderate", "Expected", "Possible")}
# always fullmatch (never `^...$`: `$` lets a trailing newline through into the unit); no part holds a blank
_MEASURE_RE = re.compile(r"(?P<station>.+?)-(?P<parameter>level|flow|rainfall|wind|temperature)-"
                         r"(?P<qualifier>[^-\s]+)-(?P<rest>.*)-(?P<unit>[^-\s]+)")


def _first(v: Any) -> Any:
    return v[0] if isinstance(v, list) and v else v


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(text).strip().lower()).strip("_")


def _uri_tail(v: Any) -> str:
    return str(_first(v) or "").rstrip("/").rsplit("/", 1)[-1]


def local_time(text: str) -> int:
    """EA times: UTC with `Z`, or (floods) UK local time without an offset."""
    dt = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=LONDON)
    return int(dt.timestamp() * 1000)


def station_for(notation: str, parameter: str, qualifier: str) -> str:
    """The station id a measure's readings belong to (see the module docstring)."""
    base = f"ea:{notation}"
    if parameter != "level":
        return base
    q = _slug(qualifier)
    if q in MAIN_LEVEL:
        return base
    if q in ("downstream_stage", "downstage"):
        return f"{base}:downstage"
    return f"{base}:{q}"


@lru_cache(maxsize=8192)
def _measure_info(measure: str) -> dict[str, str] | None:
    """notation, parameter, qualifier slug and unit from a measure URI or notation (cached: a
    readings payload repeats each measure many times)."""
    m = _MEASURE_RE.fullmatch(_uri_tail(measure))
    if not m:
        return None
    return m.groupdict()


@lru_cache(maxsize=256)
def _factor(unit_name: str, kind: str) -> tuple[float, str] | str:
    """(factor, SI unit), or the reason the unit cannot be used."""
    unit = _unit(unit_name)
    if unit is None:
        return f"unknown unit {unit_name!r}"
    try:
        return factor_for(unit, kind)
    except UnitError as exc:
        return str(exc)


def _unit(name: str) -> str | None:
    return UNIT_NAMES.get(str(name).strip().lower())


def _thresholds(scale: Any) -> dict[str, float]:
    if not isinstance(scale, dict):
        return {}
    cands = [("yellow", scale.get("typicalRangeHigh")),
             ("orange", (scale.get("highestRecent") or {}).get("value") if isinstance(scale.get("highestRecent"), dict) else None),
             ("red", (scale.get("maxOnRecord") or {}).get("value") if isinstance(scale.get("maxOnRecord"), dict) else None)]
    out: dict[str, float] = {}
    last = float("-inf")
    for lv, v in cands:
        if isinstance(v, int | float) and not isinstance(v, bool) and float(v) > last:
            out[lv] = float(v)
            last = float(v)
    return out


def _reading(out: ParseResult, item: dict[str, Any], sid: str, kind: str, unit_name: str) -> None:
    rec = {k: item.get(k) for k in ("@id", "dateTime", "measure", "value")}
    raw = item.get("value")
    if isinstance(raw, list):
        out.rejected.append(Rejected(rec, f"several values for one time ({raw!r})"))
        return
    try:
        value = clean_number(raw)
    except InvalidInput as exc:
        out.rejected.append(Rejected(rec, exc.message))
        return
    if value == NO_DATA:
        out.rejected.append(Rejected(rec, f"no-data value {raw if isinstance(raw, int | float) else value}"))
        return
    conv = _factor(unit_name, kind)
    if isinstance(conv, str):
        out.rejected.append(Rejected(rec, conv))
        return
    factor, si = conv
    try:
        t = local_time(item["dateTime"])
    except (KeyError, TypeError, ValueError):
        out.rejected.append(Rejected(rec, f"invalid time {item.get('dateTime')!r}"))
        return
    out.readings.append(FeedReading(sid, kind, t, value * factor, si))


def _station(out: ParseResult, item: dict[str, Any]) -> None:
    notation = _first(item.get("notation")) or _first(item.get("stationReference"))
    if not notation:
        out.rejected.append(Rejected({"@id": item.get("@id")}, "station without notation"))
        return
    notation = str(notation)
    label = str(_first(item.get("label")) or notation)
    measures = item.get("measures") or []
    if isinstance(measures, dict):
        measures = [measures]
    made: dict[str, Station] = {}
    lat, lon = _first(item.get("lat")), _first(item.get("long"))
    has_pos = isinstance(lat, int | float) and isinstance(lon, int | float)
    if not has_pos:
        out.rejected.append(Rejected({"@id": item.get("@id"), "gridReference": item.get("gridReference")},
                                     "station has no lat/long (only a grid reference): no station made"))

    def make(sid: str, kind: str, name: str, scale: Any) -> None:
        if sid in made or not has_pos:
            return
        made[sid] = Station(id=sid, name=name, kind=kind, lon=float(lon), lat=float(lat),
                            thresholds=_thresholds(scale) if kind == "water_level" else {},
                            unit={"water_level": "m", "discharge": "m3/s", "rainfall": "mm", "wind_speed": "m/s"}[kind])

    kinds = {PARAMETER_KIND.get(str(m.get("parameter"))) for m in measures if isinstance(m, dict)}
    main_kind = next((k for k in ("water_level", "discharge", "rainfall", "wind_speed") if k in kinds), "water_level")
    make(f"ea:{notation}", main_kind, label, item.get("stageScale"))
    for m in measures:
        if not isinstance(m, dict):
            continue
        parameter = str(m.get("parameter") or "")
        kind = PARAMETER_KIND.get(parameter)
        if kind is None:
            continue  # temperature and the like: not a reading kind here
        sid = station_for(notation, parameter, str(m.get("qualifier") or ""))
        if sid.endswith(":downstage"):
            make(sid, "water_level", f"{label} (downstream)", item.get("downstageScale"))
        elif sid != f"ea:{notation}":
            make(sid, "water_level", f"{label} ({m.get('qualifier')})", None)
        latest = m.get("latestReading")
        if isinstance(latest, dict):
            _reading(out, latest, sid, kind, str(m.get("unitName") or ""))
    out.stations.extend(made.values())


def _bare_reading(out: ParseResult, item: dict[str, Any]) -> None:
    info = _measure_info(str(item.get("measure")))
    if info is None:
        out.rejected.append(Rejected(item, f"cannot read the measure {item.get('measure')!r}"))
        return
    kind = PARAMETER_KIND.get(info["parameter"])
    if kind is None:
        out.rejected.append(Rejected(item, f"parameter {info['parameter']!r} is not a reading kind this project uses"))
        return
    sid = station_for(info["station"], info["parameter"], info["qualifier"])
    _reading(out, item, sid, kind, info["unit"])


def _flood(out: ParseResult, item: dict[str, Any]) -> None:
    area_id = item.get("floodAreaID") or (item.get("floodArea") or {}).get("notation")
    try:
        level = int(item.get("severityLevel", ""))
        sent = local_time(item.get("timeMessageChanged") or item.get("timeRaised") or "")
    except (TypeError, ValueError):
        out.rejected.append(Rejected({k: item.get(k) for k in ("@id", "floodAreaID", "severityLevel", "timeRaised")},
                                     "flood warning without a usable severityLevel or time"))
        return
    if not area_id:
        out.rejected.append(Rejected({"@id": item.get("@id")}, "flood warning without floodAreaID"))
        return
    wid = f"ea:{area_id}"
    fa = item.get("floodArea") or {}
    geometry = None
    if isinstance(fa.get("lat"), int | float) and isinstance(fa.get("long"), int | float):
        geometry = {"type": "Point", "coordinates": [float(fa["long"]), float(fa["lat"])]}
    raised = item.get("timeRaised")
    desc = str(item.get("description") or area_id)
    common: dict[str, Any] = dict(id=wid, source="ea", sender="Environment Agency", sender_name="Environment Agency",
                  event=str(item.get("severity") or ""), sent=sent, area_desc=f"{desc} ({fa.get('county')})"
                  if fa.get("county") else desc, geocodes={"EA_FWD": [str(area_id)]}, geometry=geometry,
                  web=str(item.get("@id") or ""), language="en-GB", category="Met")
    if level == 4 or level not in SEVERITY:
        out.warnings.append(ExternalWarning(**common, msg_type="Cancel", references=[wid],
                                            headline=f"no longer in force: {desc}", severity="Minor",
                                            urgency="Past", certainty="Observed"))
        return
    sev, urg, cert = SEVERITY[level]
    out.warnings.append(ExternalWarning(
        **common, msg_type="Alert", severity=sev, urgency=urg, certainty=cert,
        headline=f"{item.get('severity')}: {desc}", description=str(item.get("message") or ""),
        onset=local_time(raised) if raised else None))


def parse(payload: bytes) -> ParseResult:
    """Stations, readings or flood warnings, whichever the payload holds. Pure: no I/O."""
    doc = load_json(payload)
    if not isinstance(doc, dict) or "items" not in doc:
        raise PayloadError("not an Environment Agency response: no `items`")
    items = doc["items"]
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        raise PayloadError("not an Environment Agency response: `items` is neither a list nor an object")
    out = ParseResult()
    for item in items:
        if not isinstance(item, dict):
            out.rejected.append(Rejected(item, "item is not an object"))
        elif "floodAreaID" in item or "severityLevel" in item:
            _flood(out, item)
        elif "measure" in item and "dateTime" in item:
            _bare_reading(out, item)
        elif "notation" in item or "stationReference" in item:
            _station(out, item)
        else:
            out.rejected.append(Rejected({"@id": item.get("@id")}, "unrecognised item (not a station, reading or flood)"))
    return out


class EASource(Source):
    name = "ea"

    def __init__(self, cfg: dict[str, Any] | None = None) -> None:
        super().__init__(cfg)
        self.base = str(self.cfg.get("base_url") or "https://environment.data.gov.uk/flood-monitoring").rstrip("/")
        stations = self.cfg.get("stations") or []
        if isinstance(stations, dict):
            for sid, o in stations.items():
                self.station_overrides.setdefault(f"ea:{sid}", o or {})
            stations = list(stations)
        self.stations = [str(s) for s in stations]
        self.floods = bool(self.cfg.get("floods", True))
        self.flood_params = dict(self.cfg.get("flood_params") or {})  # e.g. {county: Oxfordshire}

    def requests(self, now: int) -> list[Request]:
        reqs = [Request(f"{self.base}/id/stations/{s}") for s in self.stations]
        if self.floods:
            reqs.append(Request(f"{self.base}/id/floods", self.flood_params or None, complete_warnings=True))
        return reqs

    def parse(self, payload: bytes, req: Request, fetched_at: int) -> ParseResult:
        return parse(payload)
