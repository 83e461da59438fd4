"""What a source is, and what its parse gives.

A *source* (``feeds/usgs.py``, ``feeds/ea.py`` ...) is two things:

- a pure ``parse(payload_bytes, ...) -> ParseResult`` (readings, stations, warnings, rejected
  records; no I/O, no clock), and
- a small `Source` subclass that says which URLs to fetch for a poll (`Request`).

A `FeedCoordinator` (``feeds/coordinator.py``) runs one source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from command.models import ExternalWarning, Station
from command.timeutil import parse_duration, to_iso
from command.units import factor_for

from .http import USER_AGENT, RetryPolicy


# ------------------------------------------------------------------------------------------------
# Parse results
# ------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class FeedReading:
    """One value in SI. `issued` is None for an observation, the run's issue time for a forecast."""

    station_id: str
    kind: str
    t: int  # epoch ms (valid time for a forecast)
    value: float
    unit: str  # the SI unit
    issued: int | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"station_id": self.station_id, "kind": self.kind, "time": to_iso(self.t),
                             "value": self.value, "unit": self.unit}
        if self.issued is not None:
            d["issued"] = to_iso(self.issued)
        return d


@dataclass(slots=True)
class Rejected:
    """A record the adapter could not use, and why (it goes to the dead-letter stream)."""

    record: Any
    reason: str


@dataclass
class ParseResult:
    readings: list[FeedReading] = field(default_factory=list)
    stations: list[Station] = field(default_factory=list)
    warnings: list[ExternalWarning] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    forecasts: list[FeedReading] = field(default_factory=list)
    # documents to fetch and parse too (CAP feeds whose entries only link to the CAP message)
    follow: list[str] = field(default_factory=list)

    def extend(self, other: ParseResult) -> None:
        self.readings += other.readings
        self.stations += other.stations
        self.warnings += other.warnings
        self.rejected += other.rejected
        self.forecasts += other.forecasts
        self.follow += other.follow

    @property
    def records(self) -> int:
        return len(self.readings) + len(self.forecasts) + len(self.warnings) + len(self.rejected)


# ------------------------------------------------------------------------------------------------
# Sources
# ------------------------------------------------------------------------------------------------
@dataclass
class Request:
    """One URL a poll fetches. `context` goes to the source's parse; `complete_warnings` says the
    answer lists every warning in force, so one that is no longer listed has ended."""

    url: str
    params: dict[str, Any] | None = None
    context: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] | None = None
    complete_warnings: bool = False

    @property
    def full_url(self) -> str:
        return str(httpx.URL(self.url, params=self.params)) if self.params else self.url


class Source:
    """A source's polling plan. Subclasses set `name` and implement `requests` and `parse`."""

    name = "source"
    accept = "application/json"

    def __init__(self, cfg: dict[str, Any] | None = None) -> None:
        self.cfg = dict(cfg or {})
        self.interval_s = parse_duration(self.cfg.get("interval", "5m")) / 1000
        self.timeout = httpx.Timeout(float(self.cfg.get("read_timeout", 20.0)),
                                     connect=float(self.cfg.get("connect_timeout", 5.0)))
        self.retry = RetryPolicy.from_config(self.cfg.get("retry"))
        self.user_agent = str(self.cfg.get("user_agent") or USER_AGENT)
        # per-station settings from the config: {station id: {thresholds: {...,unit}, zone, name}}
        self.station_overrides: dict[str, dict[str, Any]] = dict(self.cfg.get("station_overrides") or {})

    def requests(self, now: int) -> list[Request]:  # pragma: no cover - abstract
        raise NotImplementedError

    def parse(self, payload: bytes, req: Request, fetched_at: int) -> ParseResult:  # pragma: no cover
        raise NotImplementedError

    def parse_follow(self, payload: bytes, url: str, fetched_at: int) -> ParseResult:
        """Parse a document a feed linked to (`ParseResult.follow`); by default like any payload."""
        return self.parse(payload, Request(url), fetched_at)


def apply_overrides(st: Station, overrides: dict[str, dict[str, Any]]) -> Station:
    """Config thresholds (in `unit`, converted to SI), zone and names for a feed's station."""
    o = overrides.get(st.id) or overrides.get(st.id.split(":", 1)[-1])
    if not o:
        return st
    st = st.model_copy(deep=True)
    th = o.get("thresholds")
    if th:
        factor, _ = factor_for(str(th.get("unit") or st.unit), st.kind)
        st.thresholds = {lv: round(float(v) * factor, 6) for lv, v in th.items() if lv != "unit"}
    for k in ("zone", "name", "name_zh"):
        if o.get(k) is not None:
            setattr(st, k, o[k])
    return st


__all__ = ["FeedReading", "Rejected", "ParseResult", "Request", "Source", "apply_overrides"]
