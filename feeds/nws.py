"""US National Weather Service alerts (api.weather.gov, GeoJSON) as external warnings.

Request: ``https://api.weather.gov/alerts/active?area=OR`` (or ``zone=``, ``point=lat,lon``) with
``Accept: application/geo+json`` and a ``User-Agent`` that says who you are (NWS requires one).
The answer lists every alert in force, so an alert no longer listed has ended.

Quirks handled: ``geometry`` is often ``null`` (zone-based alerts): the area is then the
``geocode`` (``UGC``, ``SAME``) and ``affectedZones`` (kept as geocode ``NWS_ZONE``), which a
zone's ``geocodes`` can name; times carry the issuing office's offset; ``ends`` may be null and
``expires`` may come before ``onset``; both id formats (``NWS-IDP-PROD-…`` and ``urn:oid:…``).
Warning ids are ``nws:<identifier>``; ``references`` name earlier messages the same way.
"""

from __future__ import annotations

from typing import Any, cast

from command.models import ExternalWarning, MsgType
from command.timeutil import parse_time

from .errors import PayloadError
from .http import load_json
from .source import ParseResult, Rejected, Request, Source

MSG_TYPES = {"Alert", "Update", "Cancel", "Ack", "Error"}


def _time(v: Any) -> int | None:
    if v in (None, ""):
        return None
    return parse_time(str(v))


def _feature(f: dict[str, Any]) -> ExternalWarning:
    p = f.get("properties") or {}
    ident = p.get("id") or str(f.get("id") or "").rsplit("/", 1)[-1]
    if not ident:
        raise ValueError("alert without id")
    if not p.get("sent"):
        raise ValueError("alert without `sent`")
    geocodes = {k: [str(x) for x in v] for k, v in (p.get("geocode") or {}).items() if isinstance(v, list)}
    zones = [str(z).rstrip("/").rsplit("/", 1)[-1] for z in p.get("affectedZones") or []]
    if zones:
        geocodes["NWS_ZONE"] = zones
    geometry = f.get("geometry")
    if geometry is not None and not (isinstance(geometry, dict) and geometry.get("type")):
        geometry = None
    msg_type = p.get("messageType") or "Alert"
    if msg_type not in MSG_TYPES:
        raise ValueError(f"unknown messageType {msg_type!r}")
    refs = [f"nws:{ref.get('identifier')}" for ref in p.get("references") or [] if isinstance(ref, dict)
            and ref.get("identifier")]
    return ExternalWarning(
        id=f"nws:{ident}", source="nws", sender=str(p.get("sender") or ""), sender_name=str(p.get("senderName") or ""),
        event=str(p.get("event") or ""), headline=str(p.get("headline") or ""),
        description=str(p.get("description") or ""), instruction=str(p.get("instruction") or ""),
        msg_type=cast(MsgType, msg_type), status=str(p.get("status") or "Actual"), category=str(p.get("category") or ""),
        severity=str(p.get("severity") or "Unknown"), urgency=str(p.get("urgency") or "Unknown"),
        certainty=str(p.get("certainty") or "Unknown"), sent=parse_time(str(p["sent"])), onset=_time(p.get("onset")),
        expires=_time(p.get("expires")), ends=_time(p.get("ends")), area_desc=str(p.get("areaDesc") or ""),
        geometry=geometry, geocodes=geocodes, references=refs, language="en-US",
        web=str(p.get("@id") or f.get("id") or ""))


def parse(payload: bytes) -> ParseResult:
    """External warnings from an alerts FeatureCollection (or one alert Feature). Pure: no I/O."""
    doc = load_json(payload)
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        features = [doc]
    elif isinstance(doc, dict) and doc.get("type") == "FeatureCollection" and isinstance(doc.get("features"), list):
        features = doc["features"]
    elif isinstance(doc, dict) and "status" in doc and "detail" in doc:  # an NWS problem+json body
        raise PayloadError(f"NWS error: {doc.get('title') or ''} {doc.get('detail')}".strip())
    else:
        raise PayloadError("not an NWS alerts response: expected a GeoJSON FeatureCollection")
    out = ParseResult()
    for f in features:
        if not isinstance(f, dict):
            out.rejected.append(Rejected(f, "feature is not an object"))
            continue
        try:
            out.warnings.append(_feature(f))
        except (ValueError, TypeError) as exc:
            p = f.get("properties") or {}
            out.rejected.append(Rejected({"id": f.get("id"), "event": p.get("event"), "sent": p.get("sent")},
                                         f"unusable alert: {exc}"))
    return out


class NWSSource(Source):
    name = "nws"
    accept = "application/geo+json"

    def __init__(self, cfg: dict[str, Any] | None = None) -> None:
        super().__init__(cfg)
        self.url = str(self.cfg.get("url") or "https://api.weather.gov/alerts/active")
        self.params = dict(self.cfg.get("params") or {})

    def requests(self, now: int) -> list[Request]:
        return [Request(self.url, self.params or None, complete_warnings=True)]

    def parse(self, payload: bytes, req: Request, fetched_at: int) -> ParseResult:
        return parse(payload)
