"""The operator's side panel: the alert queue as cards (most severe, then oldest) and the dispatch board
with each department's task timeline."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import html, no_update

from command.clock import command_time
from command.i18n import TEXT, t
from command.keys import Keys
from command.publish import views
from command.timeutil import humanize_ms
from command.trust.classification import INTERNAL, Viewer

from ..common import dept_names, fmt_time, level_badge, ns_tz
from . import (
    filters,
    words,  # noqa: F401 - the page's words
)


# ---- the alert queue -----------------------------------------------------------------------------------
def _incident(a: dict) -> tuple[str, str] | None:
    """An incident alert's category and description, from the engine's English message
    '<category> in <zone>: <description>' (command/rules/evaluator.py), so other languages can say it."""
    head, sep, description = (a.get("message") or "").partition(": ")
    category = head.split(" in ", 1)[0]
    return (category, description) if a["rule_kind"] == "zone_incident" and sep and f"cat.{category}" in TEXT else None


def _what(a: dict, lang: str) -> str:
    if a["rule_kind"] == "stale":
        return t("what.silent", lang, d=humanize_ms(int((a.get("value") or 0) * 60_000)))
    incident = _incident(a)
    if incident and lang != "en":  # the category names the card (alert_card); the description as reported
        return incident[1]
    if a["rule_kind"] == "zone_incident" or a.get("value") is None:
        return a.get("message", "")
    return t("what.value", lang, value=f"{a['value']:.2f}", unit=a.get("unit", ""))


def _trend(a: dict) -> str | None:
    rate = a.get("trend_per_h")
    if rate is None:
        return None
    unit = a.get("unit", "")
    return f"{rate:+.2f} {unit}/h" if not unit.endswith("/h") else f"{rate:+.2f} {unit}/h"


def _target(rec: dict, lang: str, tz: str | None) -> str:
    """What the deadline is: the next level ('red'), or the response deadline at its time."""
    if rec.get("deadline_basis") == "next_level" and rec.get("deadline_level"):
        return t(f"level.{rec['deadline_level']}", lang)
    return t("map.response_deadline", lang, time=fmt_time(rec.get("deadline"), tz))


def _via(via: list[str]) -> str:
    """The road names worth saying: the bridges crossed, else the first roads driven."""
    bridges = [v for v in via if "bridge" in v.lower() or "桥" in v]
    return " · ".join(dict.fromkeys(bridges or via[:2]))


def _trip(i: dict, rec: dict, lang: str, tz: str | None) -> str:
    """A unit's trip in one line: leave by, working by, margin or late by, route km and via
    ('leave by 13:05 · working by 13:40 · 25 min before red · 7.2 km via Shahe Bridge')."""
    parts = []
    if i.get("leave_by") is not None:
        late = (i.get("late_min") or 0) > 0
        parts.append(t("map.leave_now", lang) if late else t("map.leave_by", lang, time=fmt_time(i["leave_by"], tz)))
    if i.get("arrive_at") is not None:
        arrive = int(i["arrive_at"])
        arrive += -arrive % 60_000  # working by: the minute rounded up
        parts.append(t("map.working_by", lang, time=fmt_time(arrive, tz)))
    if i.get("deadline") is not None and i.get("margin_min") is not None:
        target = _target(rec, lang, tz)
        late = i.get("late_min") or 0
        parts.append(t("map.late_by", lang, d=humanize_ms(late * 60_000), target=target) if late > 0
                     else t("map.margin", lang, d=humanize_ms(max(0, i["margin_min"]) * 60_000), target=target))
    if i.get("route_km") is not None:
        via = _via(i.get("via") or []) if i.get("by_road") else ""
        parts.append(t("map.route_via", lang, km=f"{i['route_km']:.1f}", via=via) if via
                     else t("map.route", lang, km=f"{i['route_km']:.1f}"))
    return " · ".join(parts)


def person_text(p: dict | None) -> str:
    """A person as the reader gave them (already masked or whole for the viewer): 'name phone'."""
    return " ".join(str((p or {}).get(k) or "") for k in ("name", "phone")).strip()


def alert_card(a: dict, lang: str, tz: str | None, now: int, names: dict[str, str]) -> dbc.Card:
    fp, level = a["fingerprint"], a["level"]
    notes = a.get("notes") or {}
    rec = a.get("recommendation")
    claim = a.get("claim")
    where = a["subject_name"]
    if lang == "zh" and a.get("subject_name_zh"):
        where = a["subject_name_zh"]
    incident = _incident(a) if lang != "en" else None
    if incident:  # the engine's message is English: the category in the page's language
        where = t(f"cat.{incident[0]}", lang)
    zone = f" · {a['zone']}" if a.get("zone") else ""
    lines: list[Any] = [
        html.Div([level_badge(level, lang), html.B(f" {t('rule.' + a['rule_kind'], lang)}"),
                  html.Span(f" · {a['rule']}", className="muted")], className="card-head"),
        html.Div([html.B(where), html.Span(f" ({a['subject']}){zone}", className="muted")]),
        html.Div(_what(a, lang), className="what"),
        *([html.Div("☎ " + t("people.reported_by", lang, who=person_text(a["reporter"])), className="reporter")]
          if person_text(a.get("reporter")) else []),
        html.Div(t("map.since", lang, time=fmt_time(a["opened_at"], tz, with_date=True),
                   age=humanize_ms(max(0, now - a["opened_at"]))), className="muted"),
    ]
    trend = _trend(a)
    if trend:
        extra = f" · {a['outlook']}" if a.get("outlook") else ""
        lines.append(html.Div(t("map.trend", lang, rate=trend) + extra, className="trend"))
    if notes.get("acknowledged_by"):
        lines.append(html.Div("✔ " + t("map.acked_by", lang, who=notes["acknowledged_by"],
                                      time=fmt_time(int(notes["acknowledged_at"]), tz))
                              + (f": {notes['ack_comment']}" if notes.get("ack_comment") else ""), className="note ack"))
    if notes.get("escalated_by"):
        lines.append(html.Div("⬆ " + t("map.escalated_by", lang, who=notes["escalated_by"],
                                      time=fmt_time(int(notes["escalated_at"]), tz))
                              + (f": {notes['escalate_note']}" if notes.get("escalate_note") else ""), className="note esc"))
    if rec and rec.get("items"):
        items = [html.Li([html.B(i.get("name") or i["resource_id"]), f" ({i['resource_id']}) · ",
                          names.get(i["department"], i["department"]), f" · {i['distance_km']:.1f} km",
                          html.Div(_trip(i, rec, lang, tz), className="trip"),
                          # the engine's reason is English prose; the trip line above says it in every language
                          *([html.Div(i["reason"], className="reason")] if lang == "en" else [])])
                 for i in rec["items"]]
        head = t("map.recommended", lang) + (" · " + t("map.refreshed", lang) if rec.get("refreshed") else "")
        lines.append(html.Div([html.Div(head, className="sub"), html.Ul(items, className="recs")]))
        if rec.get("deadline") is not None and all((i.get("late_min") or 0) > 0 for i in rec["items"]):
            lines.append(html.Div(t("map.none_on_time", lang, target=_target(rec, lang, tz)), className="late"))
        for s in rec.get("shortfall", []):
            lines.append(html.Div(t("map.shortfall", lang, found=s["found"], wanted=s["wanted"],
                                    type=t(f"rtype.{s['type']}", lang) if f"rtype.{s['type']}" in TEXT
                                    else s["type"].replace("_", " ")), className="shortfall"))
    buttons = []
    if claim:
        lines.append(html.Div(t("map.dispatched_by", lang, who=claim["by"], time=fmt_time(claim["at"], tz)),
                              className="claimed", id={"type": "map-claimed", "fp": fp}))
    elif rec and rec.get("items"):
        buttons += [
            dbc.Button(t("map.dispatch", lang), id={"type": "map-dispatch", "fp": fp, "level": level},
                       color="danger", size="sm", className="me-1", n_clicks=0),
            dbc.Button(t("map.change", lang), id={"type": "map-action", "fp": fp, "action": "change"},
                       color="secondary", outline=True, size="sm", className="me-1", n_clicks=0),
        ]
    buttons += [dbc.Button(t(f"map.{k}", lang), id={"type": "map-action", "fp": fp, "action": act},
                           color="secondary", outline=True, size="sm", className="me-1", n_clicks=0)
                for k, act in (("ack", "acknowledge"), ("escalate", "escalate"), ("resolve", "resolve"))]
    lines.append(html.Div(buttons, className="actions"))
    # what the map links to this card (assets/map-overlay.js): a click centres its subject, and back
    lines.append(html.Span(className="card-anchor", **{"data-subject": a["subject"], "data-zone": a.get("zone") or "",
                                                       "data-kind": a.get("subject_type") or ""}))
    return dbc.Card(dbc.CardBody(lines), className=f"alert-card lvl-border-{level}", id={"type": "map-card", "fp": fp})


QUEUE_SHOWN = 30  # cards drawn at once: the browser slows with every card (see docs/performance.md)


def queue_view(r, keys: Keys, lang: str, show_all: bool = False, viewer: Viewer = INTERNAL,
               filt: filters.Filter = filters.NONE) -> list:
    """The most severe, then oldest, alerts as cards; past QUEUE_SHOWN a count of the rest and a toggle.
    What `viewer` (the callback passes the signed-in user's) is not cleared for is masked or left out by the reader.
    Alerts the list's filters leave out are counted in a line of their own."""
    queue = views.alert_queue(r, keys, viewer)
    hidden = 0
    if filt.active:
        kept = [a for a in queue if filters.keep(a, filt)]
        hidden, queue = len(queue) - len(kept), kept
    if not queue:
        return [html.Div(t("map.no_alerts", lang), className="muted empty", id="map-queue-empty"),
                *([html.Div(t("filter.hidden", lang, n=hidden), className="muted", id="map-queue-hidden")]
                  if hidden else []), *filters.marker(filt)]
    tz = ns_tz(r, keys)
    now = command_time(r, keys)
    names = dept_names(lang)
    shown = queue if show_all else queue[:QUEUE_SHOWN]
    cards: list = [alert_card(a, lang, tz, now, names) for a in shown]
    if hidden:
        cards.insert(0, html.Div(t("filter.hidden", lang, n=hidden), className="muted small", id="map-queue-hidden"))
    rest = queue[len(shown):]
    if rest or show_all and len(queue) > QUEUE_SHOWN:
        by_level: dict[str, int] = {}
        for a in rest:
            by_level[a["level"]] = by_level.get(a["level"], 0) + 1
        counts = ", ".join(f"{n} {t(f'level.{lv}', lang)}" for lv, n in by_level.items())
        label = t("map.show_fewer", lang) if show_all else t("map.show_all", lang, n=len(rest), counts=counts)
        cards.append(html.Div(dbc.Button(label, id="map-queue-toggle", color="link", size="sm", n_clicks=0),
                              className="queue-more"))
    cards += filters.marker(filt)
    return cards


# ---- dispatch tracking -------------------------------------------------------------------------------
def _timeline(task: dict, lang: str, tz: str | None, now: int, names: dict[str, str]) -> html.Div:
    steps = [html.Span([t("status.assigned", lang), " ", fmt_time(task["created_at"], tz)], className="step done")]
    for h in task["history"]:
        label = t(f"status.{h['status']}", lang)
        extra = []
        if h.get("people_assisted") is not None:
            extra.append(f"👥{h['people_assisted']}")
        if h.get("note"):  # the verification's reason is shown whole: it is why the task is back
            extra.append(h["note"] if h["status"] in ("reopened", "verified") else h["note"][:60])
        steps.append(html.Span([" → ", label, " ", fmt_time(h["at"], tz), (" · " + " · ".join(extra)) if extra else ""],
                               className=f"step st-{h['status']}"))
    since = humanize_ms(max(0, now - task["updated_at"]))
    flag = html.Div(t("map.flag", lang, reason=task["flagged"]), className="flag") if task.get("flagged") else None
    if task["status"] == "reopened":
        why = next((h.get("note") or "" for h in reversed(task["history"]) if h["status"] == "reopened"), "")
        flag = html.Div(t("map.reopened", lang, reason=why), className="flag reopened")
    who = "; ".join(person_text(p) for p in task.get("people") or [] if person_text(p))
    people = html.Div("👥 " + t("people.assisted", lang, who=who), className="people small") if who else None
    return html.Div([html.B(names.get(task["department"], task["department"])),
                     html.Span(f" [{', '.join(task['resource_ids'])}] ", className="muted"),
                     html.Div(steps, className="timeline", id={"type": "map-timeline", "task": task["id"]}),
                     html.Div(t("map.last_update", lang, age=t("common.ago", lang, d=since)), className="muted small"),
                     people, flag], className=f"task st-{task['status']}")


def dispatch_view(r, keys: Keys, lang: str, viewer: Viewer = INTERNAL) -> list:
    board = views.dispatch_board(r, keys, viewer=viewer)
    if not board:
        return [html.Div(t("map.no_dispatches", lang), className="muted empty")]
    tz = ns_tz(r, keys)
    now = command_time(r, keys)
    names = dept_names(lang)
    out = []
    for item in board:
        d = item["dispatch"]
        out.append(html.Div([
            html.Div([level_badge(d["level"], lang), html.B(f" {d['subject']}"),
                      html.Span(f" · {d['operator']} · {fmt_time(d['created_at'], tz)}", className="muted")]),
            *([html.Div("☎ " + t("people.reported_by", lang, who=person_text(item["reporter"])),
                        className="reporter small")] if person_text(item.get("reporter")) else []),
            *[_timeline(task, lang, tz, now, names) for task in item["tasks"]],
        ], className="dispatch", id={"type": "map-dispatch-item", "id": d["id"]}))
    return out


def side_update(r, keys: Keys, lang: str | None, show_all: bool, client: list | None,
                viewer: Viewer = INTERNAL, filt: filters.Filter = filters.NONE) -> tuple[Any, Any, Any]:
    """The side panel's callback logic: (queue, dispatch board, signature), or nothing when what they show
    (the versions, the language, the toggle, the clock's minute, the incidents, the viewer's
    clearance and the list's filters) has not changed since `client`."""
    ver = views.versions(r, keys)
    clock = command_time(r, keys)
    sig = [keys.ns, lang, bool(show_all), ver["alerts"], ver["dispatches"], ver["status"], ver["resources"],
           clock // 60_000, ver["incidents"], viewer.clearance, filt.signature()]
    if client == sig:
        return no_update, no_update, no_update
    return (queue_view(r, keys, lang or "en", bool(show_all), viewer, filt), dispatch_view(r, keys, lang or "en", viewer),
            sig)
