"""Any CAP 1.2 source: a single CAP ``<alert>``, or an Atom or RSS feed of CAP alerts.

Many national warning services publish CAP (China's, Taiwan's, the NWS through IPAWS, MeteoAlarm
...). A feed entry either embeds the ``<alert>`` or links to it; linked alerts are returned in
``ParseResult.follow`` and the coordinator fetches them. Each alert becomes one external warning:

- id ``cap:<identifier>``; ``references`` (``sender,identifier,sent`` triples) as ``cap:<identifier>``;
- the first ``info`` in English (else the first ``info``) gives event, severity, urgency, certainty,
  onset, expires, headline, description, instruction;
- the area is every ``polygon`` (CAP writes ``lat,lon`` pairs; GeoJSON gets ``[lon, lat]``) and
  ``circle`` (``lat,lon radius_km``, as a 32-sided polygon) of every ``area``, plus every
  ``geocode`` (valueName -> values).

Quirks handled: a UTF-8 byte order mark before ``<?xml``; extra namespaces (IPAWS); empty elements;
several ``polygon`` elements in one ``area``; an area with only a ``geocode``. CAP 1.1 documents are
read the same way. The XML parser resolves no entities and fetches nothing.
"""

from __future__ import annotations

import math
from typing import Any, cast

from lxml import etree

from command.models import ExternalWarning, MsgType
from command.timeutil import parse_time

from .errors import PayloadError
from .source import ParseResult, Rejected, Request, Source

CAP12 = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_NAMESPACES = (CAP12, "urn:oasis:names:tc:emergency:cap:1.1")
ATOM = "http://www.w3.org/2005/Atom"
MSG_TYPES = {"Alert", "Update", "Cancel", "Ack", "Error"}
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True, huge_tree=False)


def parse_xml(payload: bytes) -> etree._Element:
    if payload.startswith(b"\xef\xbb\xbf"):
        payload = payload[3:]
    if not payload.strip():
        raise PayloadError("empty body where XML was expected")
    try:
        return etree.fromstring(payload, _PARSER)
    except etree.XMLSyntaxError as exc:
        head = payload.lstrip()[:100].lower()
        if head.startswith(b"{") or head.startswith(b"["):
            raise PayloadError("expected CAP/Atom/RSS XML, got JSON") from None
        raise PayloadError(f"invalid XML: {exc}") from None


def _ns(el: etree._Element) -> str:
    return etree.QName(el).namespace or ""


def _text(parent: etree._Element, name: str, ns: str) -> str:
    el = parent.find(f"{{{ns}}}{name}")
    return (el.text or "").strip() if el is not None and el.text else ""


def _time(text: str) -> int | None:
    return parse_time(text) if text else None


def _ring(points: str) -> list[list[float]]:
    ring = []
    for pair in points.split():
        lat, lon = pair.split(",")[:2]
        ring.append([float(lon), float(lat)])
    if len(ring) < 4:
        raise ValueError(f"a polygon needs at least 4 points, got {len(ring)}")
    if ring[0] != ring[-1]:
        ring.append(ring[0])
    return ring


def _circle(text: str, sides: int = 32) -> list[list[float]]:
    centre, radius = text.split()
    lat, lon = (float(x) for x in centre.split(",")[:2])
    r_km = max(float(radius), 0.01)
    dlat = r_km / 111.32
    dlon = r_km / (111.32 * max(math.cos(math.radians(lat)), 1e-6))
    ring = [[lon + dlon * math.cos(2 * math.pi * i / sides), lat + dlat * math.sin(2 * math.pi * i / sides)]
            for i in range(sides)]
    ring.append(ring[0])
    return ring


def alert_to_warning(alert: etree._Element, source: str = "cap") -> ExternalWarning:
    """One CAP ``<alert>`` element as an ExternalWarning (raises ValueError when unusable)."""
    ns = _ns(alert)
    ident = _text(alert, "identifier", ns)
    sent = _text(alert, "sent", ns)
    if not ident:
        raise ValueError("CAP alert without identifier")
    if not sent:
        raise ValueError("CAP alert without sent")
    msg_type = _text(alert, "msgType", ns) or "Alert"
    if msg_type not in MSG_TYPES:
        raise ValueError(f"unknown msgType {msg_type!r}")
    refs = []
    for triple in _text(alert, "references", ns).split():
        parts = triple.split(",")
        if len(parts) >= 2 and parts[1]:
            refs.append(f"{source}:{parts[1]}")
    infos = alert.findall(f"{{{ns}}}info")
    info = next((i for i in infos if _text(i, "language", ns).lower().startswith("en")), infos[0] if infos else None)
    polygons: list[list[list[list[float]]]] = []
    geocodes: dict[str, list[str]] = {}
    area_desc = []
    fields: dict[str, Any] = {}
    if info is not None:
        fields = dict(
            event=_text(info, "event", ns), headline=_text(info, "headline", ns),
            description=_text(info, "description", ns), instruction=_text(info, "instruction", ns),
            category=_text(info, "category", ns), severity=_text(info, "severity", ns) or "Unknown",
            urgency=_text(info, "urgency", ns) or "Unknown", certainty=_text(info, "certainty", ns) or "Unknown",
            onset=_time(_text(info, "onset", ns)) or _time(_text(info, "effective", ns)),
            expires=_time(_text(info, "expires", ns)), sender_name=_text(info, "senderName", ns),
            language=_text(info, "language", ns) or "en-US", web=_text(info, "web", ns))
        for area in info.findall(f"{{{ns}}}area"):
            d = _text(area, "areaDesc", ns)
            if d:
                area_desc.append(d)
            for pg in area.findall(f"{{{ns}}}polygon"):
                if pg.text and pg.text.strip():
                    polygons.append([_ring(pg.text)])
            for c in area.findall(f"{{{ns}}}circle"):
                if c.text and c.text.strip():
                    polygons.append([_circle(c.text)])
            for gc in area.findall(f"{{{ns}}}geocode"):
                name, value = _text(gc, "valueName", ns), _text(gc, "value", ns)
                if name and value:
                    geocodes.setdefault(name, []).append(value)
    geometry = None
    if len(polygons) == 1:
        geometry = {"type": "Polygon", "coordinates": polygons[0]}
    elif polygons:
        geometry = {"type": "MultiPolygon", "coordinates": polygons}
    return ExternalWarning(id=f"{source}:{ident}", source=source, sender=_text(alert, "sender", ns),
                           msg_type=cast(MsgType, msg_type), status=_text(alert, "status", ns) or "Actual", sent=parse_time(sent),
                           references=refs, geometry=geometry, geocodes=geocodes, area_desc="; ".join(area_desc),
                           **fields)


def _alerts_in(el: etree._Element) -> list[etree._Element]:
    return [a for ns in CAP_NAMESPACES for a in el.iter(f"{{{ns}}}alert")]


def parse(payload: bytes, source: str = "cap") -> ParseResult:
    """Warnings from a CAP alert, or an Atom/RSS feed of them (links to follow in `follow`)."""
    root = parse_xml(payload)
    out = ParseResult()

    def take(alert: etree._Element) -> None:
        try:
            out.warnings.append(alert_to_warning(alert, source))
        except (ValueError, TypeError) as exc:
            ns = _ns(alert)
            out.rejected.append(Rejected({"identifier": _text(alert, "identifier", ns), "sent": _text(alert, "sent", ns)},
                                         f"unusable CAP alert: {exc}"))

    ns = _ns(root)
    tag = etree.QName(root).localname
    if tag == "alert" and ns in CAP_NAMESPACES:
        take(root)
    elif tag == "feed" and ns == ATOM:
        for entry in root.iter(f"{{{ATOM}}}entry"):
            embedded = _alerts_in(entry)
            if embedded:
                for a in embedded:
                    take(a)
                continue
            link = _cap_link(entry)
            if link:
                out.follow.append(link)
            else:
                out.rejected.append(Rejected({"id": _text(entry, "id", ATOM)}, "Atom entry with no CAP alert or link"))
    elif tag == "rss":
        for item in root.iter("item"):
            embedded = _alerts_in(item)
            if embedded:
                for a in embedded:
                    take(a)
                continue
            link = (item.findtext("link") or "").strip()
            if link:
                out.follow.append(link)
            else:
                out.rejected.append(Rejected({"title": item.findtext("title")}, "RSS item with no CAP alert or link"))
    else:
        raise PayloadError(f"not a CAP alert, Atom or RSS feed: root element <{tag}>"
                           + (" (an HTML page)" if tag.lower() == "html" else ""))
    return out


def _cap_link(entry: etree._Element) -> str | None:
    links = entry.findall(f"{{{ATOM}}}link")
    for ln in links:
        if "cap" in (ln.get("type") or "").lower():
            return ln.get("href")
    for ln in links:
        if (ln.get("rel") or "alternate") in ("alternate", "related") and ln.get("href"):
            return ln.get("href")
    return None


class CAPSource(Source):
    """One or more CAP URLs (a feed or a single alert). `complete: true` in the config says a feed
    lists every alert in force, so an alert it stops listing has ended."""

    name = "cap"
    accept = "application/cap+xml, application/atom+xml, application/rss+xml, application/xml;q=0.9, */*;q=0.5"

    def __init__(self, cfg: dict[str, Any] | None = None) -> None:
        super().__init__(cfg)
        self.urls = [str(u) for u in self.cfg.get("urls") or ([self.cfg["url"]] if self.cfg.get("url") else [])]
        self.complete = bool(self.cfg.get("complete", False))
        if self.cfg.get("name"):
            self.name = str(self.cfg["name"])

    def requests(self, now: int) -> list[Request]:
        return [Request(u, complete_warnings=self.complete) for u in self.urls]

    def parse(self, payload: bytes, req: Request, fetched_at: int) -> ParseResult:
        return parse(payload, self.name)
