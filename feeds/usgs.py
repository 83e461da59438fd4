"""USGS Water Services, instantaneous values (WaterML-JSON): gage height and discharge.

Request: ``https://waterservices.usgs.gov/nwis/iv/?format=json&sites=A,B&parameterCd=00060,00065``
(latest value of each series; add ``period=P1D`` for a day). Quirks handled (see
tests/fixtures/README.md): values are *strings*; ``noDataValue`` is the *number* -999999.0;
``variableName`` carries HTML entities; times are site-local with an offset; each series is keyed
``USGS:<site>:<param>:<statistic>``; sites report at different times. Values are cleaned by
`command.values.clean_number` (a missing, non-numeric, boolean or non-finite value is rejected with
its reason), then checked against the no-data value.

Station ids are ``usgs:<site number>`` (e.g. ``usgs:01646500``).
"""

from __future__ import annotations

import html
from typing import Any

from command.errors import InvalidInput
from command.models import Station
from command.timeutil import parse_time
from command.units import UnitError, factor_for
from command.values import clean_number

from .errors import PayloadError
from .http import load_json
from .source import FeedReading, ParseResult, Rejected, Request, Source

# USGS parameter code -> reading kind
PARAMETERS = {
    "00065": "water_level",  # gage height, ft
    "00060": "discharge",  # discharge, ft3/s
    "00045": "rainfall",  # precipitation, total, in
    "62614": "water_level",  # lake/reservoir water surface elevation above NGVD 1929, ft
    "00035": "wind_speed",  # wind speed, mph
}
UNIT_ALIASES = {"ft3/s": "ft3/s", "ft": "ft", "in": "in", "mph": "mph", "m": "m", "m3/s": "m3/s"}
SENTINELS = (-999999.0, -999999)


def _series_name(ts: dict[str, Any]) -> str:
    return str(ts.get("name") or "?")


def _nodata(raw: Any) -> float | None:
    """The series' `noDataValue` (a number in WaterML-JSON); None when absent or unusable."""
    try:
        return clean_number(raw)
    except InvalidInput:
        return None


def parse(payload: bytes) -> ParseResult:
    """Readings (SI) and stations from an IV JSON response. Pure: no I/O."""
    doc = load_json(payload)
    try:
        series = doc["value"]["timeSeries"]
    except (KeyError, TypeError):
        raise PayloadError("not a USGS IV response: no value.timeSeries") from None
    if not isinstance(series, list):
        raise PayloadError("not a USGS IV response: value.timeSeries is not a list")
    out = ParseResult()
    stations: dict[str, Station] = {}
    kinds_by_site: dict[str, set[str]] = {}
    for ts in series:
        name = _series_name(ts)
        try:
            info = ts["sourceInfo"]
            site = str(info["siteCode"][0]["value"])
            var = ts["variable"]
            param = str(var["variableCode"][0]["value"])
            unit = str(var["unit"]["unitCode"])
        except (KeyError, IndexError, TypeError) as exc:
            out.rejected.append(Rejected({"series": name}, f"malformed time series: missing {exc}"))
            continue
        kind = PARAMETERS.get(param)
        if kind is None:
            vname = html.unescape(str(var.get("variableName") or ""))
            out.rejected.append(Rejected({"series": name, "variableName": vname},
                                         f"parameter {param} ({vname}) is not a reading kind this project uses"))
            continue
        try:
            factor, si = factor_for(unit, kind)
        except UnitError as exc:
            out.rejected.append(Rejected({"series": name, "unit": unit}, str(exc)))
            continue
        sid = f"usgs:{site}"
        kinds_by_site.setdefault(sid, set()).add(kind)
        if sid not in stations:
            geo = (info.get("geoLocation") or {}).get("geogLocation") or {}
            try:
                lat, lon = float(geo["latitude"]), float(geo["longitude"])
                stations[sid] = Station(id=sid, name=html.unescape(str(info.get("siteName") or site)), kind=kind,
                                        lon=lon, lat=lat, unit=si)
            except (KeyError, TypeError, ValueError):
                out.rejected.append(Rejected({"series": name, "geoLocation": geo},
                                             "site has no latitude/longitude: no station made (readings kept)"))
        nodata = _nodata(var.get("noDataValue"))
        for block in ts.get("values") or []:
            for v in block.get("value") or []:
                raw = v.get("value")
                rec = {"series": name, **v}
                try:
                    t = parse_time(v["dateTime"])
                except (KeyError, TypeError, ValueError) as exc:
                    out.rejected.append(Rejected(rec, f"invalid time: {exc}"))
                    continue
                try:
                    value = clean_number(raw)
                except InvalidInput as exc:
                    out.rejected.append(Rejected(rec, exc.message))
                    continue
                if value in SENTINELS or value == nodata:
                    out.rejected.append(Rejected(rec, f"no-data value {raw} (the series' noDataValue)"))
                    continue
                out.readings.append(FeedReading(sid, kind, t, value * factor, si))
    # a site with a gage height is a water-level station; otherwise its first kind
    for sid, st in stations.items():
        ks = kinds_by_site.get(sid, set())
        if "water_level" in ks and st.kind != "water_level":
            st.kind, st.unit = "water_level", "m"
    out.stations = list(stations.values())
    return out


class USGSSource(Source):
    name = "usgs"

    def __init__(self, cfg: dict[str, Any] | None = None) -> None:
        super().__init__(cfg)
        sites = self.cfg.get("sites") or []
        if isinstance(sites, dict):  # {site: {thresholds: ..., zone: ...}}
            for site, o in sites.items():
                self.station_overrides.setdefault(f"usgs:{site}", o or {})
            sites = list(sites)
        self.sites = [str(s) for s in sites]
        self.url = str(self.cfg.get("url") or "https://waterservices.usgs.gov/nwis/iv/")
        self.parameters = [str(p) for p in self.cfg.get("parameters") or ["00065", "00060"]]
        self.period = self.cfg.get("period")  # e.g. PT2H: also catch up what a short outage missed

    def requests(self, now: int) -> list[Request]:
        if not self.sites:
            return []
        params = {"format": "json", "sites": ",".join(self.sites), "parameterCd": ",".join(self.parameters)}
        if self.period:
            params["period"] = str(self.period)
        return [Request(self.url, params)]

    def parse(self, payload: bytes, req: Request, fetched_at: int) -> ParseResult:
        return parse(payload)
