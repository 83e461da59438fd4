"""`/`: the operator map, the alert queue, one-click dispatch and dispatch tracking."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
import orjson
from dash import ALL, Input, Output, Patch, State, callback, ctx, dcc, html, no_update
from rq import Queue

from command import i18n
from command.i18n import t
from command.keys import Keys
from command.ops.dispatch import (
    DEFAULT_ACK_MS,
    AlreadyDispatched,
    CommandError,
    alert_action,
    clock_of,
    dispatch,
)
from command.ops.jobs import QUEUE, schedule_ack_check
from command.publish import views
from command.timeutil import humanize_ms, now_ms

from .common import (
    dept_names,
    fmt_time,
    level_badge,
    namespace,
    ns_tz,
    pick,
    rds,
    require_user,
)

i18n.add({
    "map.alerts": {"en": "Alerts", "zh": "告警"},
    "map.no_alerts": {"en": "No open alerts.", "zh": "当前无告警。"},
    "map.dispatches": {"en": "Dispatches", "zh": "调度"},
    "map.no_dispatches": {"en": "Nothing dispatched yet.", "zh": "尚无调度。"},
    "map.since": {"en": "since {time} ({age})", "zh": "自 {time}（{age}）"},
    "map.trend": {"en": "trend {rate}", "zh": "趋势 {rate}"},
    "map.recommended": {"en": "Recommended", "zh": "建议调派"},
    "map.show_all": {"en": "{n} more alerts ({counts}): show all", "zh": "另有 {n} 条告警（{counts}）：全部显示"},
    "map.show_fewer": {"en": "Show the first 30 only", "zh": "只显示前 30 条"},
    "map.refreshed": {"en": "updated: an earlier choice is no longer available", "zh": "已更新：原建议资源已不可用"},
    "map.shortfall": {"en": "Only {found} of {wanted} {type} available", "zh": "{type} 仅有 {found}/{wanted} 可用"},
    "map.dispatch": {"en": "Dispatch", "zh": "一键调派"},
    "map.change": {"en": "Change…", "zh": "调整…"},
    "map.ack": {"en": "Acknowledge", "zh": "确认"},
    "map.escalate": {"en": "Escalate", "zh": "升级"},
    "map.resolve": {"en": "Resolve", "zh": "解除"},
    "map.acked_by": {"en": "acknowledged by {who} at {time}", "zh": "{who} 于 {time} 确认"},
    "map.escalated_by": {"en": "escalated by {who} at {time}", "zh": "{who} 于 {time} 升级"},
    "map.dispatched_by": {"en": "Dispatched by {who} at {time}", "zh": "{who} 已于 {time} 调派"},
    "map.dispatch_ok": {"en": "Dispatched {n} resource{s} to {subject}: tasks for {depts}.",
                        "zh": "已向 {subject} 调派 {n} 个资源，任务已发送：{depts}。"},
    "map.dispatch_lost": {"en": "Already dispatched by {who} at {time}.", "zh": "{who} 已于 {time} 调派，未重复调派。"},
    "map.comment": {"en": "Comment", "zh": "备注"},
    "map.confirm": {"en": "Confirm", "zh": "确定"},
    "map.cancel": {"en": "Cancel", "zh": "取消"},
    "map.choose_resources": {"en": "Resources to dispatch", "zh": "选择调派资源"},
    "map.done": {"en": "Done: {action}.", "zh": "已完成：{action}。"},
    "map.station": {"en": "Station", "zh": "站点"},
    "map.no_series": {"en": "No readings yet.", "zh": "暂无数据。"},
    "map.click_station": {"en": "Click a station on the map to see its trend.", "zh": "点击地图上的站点查看趋势。"},
    "map.legend": {"en": "Stations by level · zones by risk · ▲ incidents · ■ resources",
                   "zh": "站点按告警等级着色 · 区域按风险着色 · ▲ 事件 · ■ 资源"},
    "map.stations": {"en": "Stations", "zh": "站点"},
    "map.incidents": {"en": "Incidents", "zh": "事件"},
    "map.resources": {"en": "Resources", "zh": "资源"},
    "map.last_update": {"en": "last update {age}", "zh": "最近更新 {age}"},
    "map.flag": {"en": "⚑ {reason}", "zh": "⚑ {reason}"},
    "rule.threshold": {"en": "Level above threshold", "zh": "水位超警"},
    "rule.rate_of_rise": {"en": "Rapid rise", "zh": "水位快速上涨"},
    "rule.accumulation": {"en": "Heavy rain", "zh": "强降雨"},
    "rule.stale": {"en": "Sensor silent", "zh": "站点失联"},
    "rule.zone_incident": {"en": "Incident in a risk zone", "zh": "风险区事件"},
    "rule.forecast_accumulation": {"en": "Heavy rain forecast", "zh": "强降雨预报"},
    "rule.zone_warning": {"en": "Warning for a zone", "zh": "区域预警"},
    "what.value": {"en": "{value} {unit}", "zh": "{value} {unit}"},
    "what.silent": {"en": "no data for {d}", "zh": "已 {d} 无数据"},
    "status.assigned": {"en": "assigned", "zh": "已派发"},
    "status.acknowledged": {"en": "acknowledged", "zh": "已确认"},
    "status.en_route": {"en": "en route", "zh": "在途"},
    "status.on_scene": {"en": "on scene", "zh": "到达现场"},
    "status.need_support": {"en": "need support", "zh": "请求支援"},
    "status.completed": {"en": "completed", "zh": "已完成"},
    "status.flagged": {"en": "flagged", "zh": "已标记"},
    "resource.available": {"en": "available", "zh": "可用"},
    "resource.dispatched": {"en": "dispatched", "zh": "已调派"},
    "resource.on_scene": {"en": "on scene", "zh": "在现场"},
    "resource.out_of_service": {"en": "out of service", "zh": "停用"},
})

STATION_HOVER = "<b>%{customdata[1]}</b> (%{customdata[0]})<br>%{customdata[2]}<br>%{customdata[3]}<br>%{customdata[4]}<extra></extra>"


# ---- the figure ----------------------------------------------------------------------------------------
def _center(idx: views.StationIndex, zones: dict) -> tuple[dict[str, float], float]:
    lons = [s.lon for s in idx.stations.values()]
    lats = [s.lat for s in idx.stations.values()]
    if not lons:
        return {"lon": 0.0, "lat": 20.0}, 1.0
    span = max(max(lons) - min(lons), max(lats) - min(lats), 0.01)
    import math

    # MapLibre: the world is 512 * 2^zoom px wide; fit the stations' span into about 650 px
    zoom = max(1.0, min(14.0, math.log2(650 * 360 / (512 * span))))
    return {"lon": (min(lons) + max(lons)) / 2, "lat": (min(lats) + max(lats)) / 2}, zoom


def _incident_trace(incs: list, lang: str) -> dict[str, Any]:
    return {"type": "scattermap", "name": t("map.incidents", lang), "mode": "markers",
            "lon": [i.lon for i in incs], "lat": [i.lat for i in incs],
            "marker": {"size": 13, "color": ["#b71c1c" if i.status == "open" else "#bdbdbd" for i in incs],
                       "symbol": "circle"},
            "customdata": [[i.id, i.category.replace("_", " "), i.description[:80], i.status] for i in incs],
            "hovertemplate": "<b>%{customdata[0]}</b> %{customdata[1]}<br>%{customdata[2]}<br>%{customdata[3]}<extra></extra>"}


def _resource_trace(res: list, lang: str) -> dict[str, Any]:
    return {"type": "scattermap", "name": t("map.resources", lang), "mode": "markers",
            "lon": [x.lon for x in res], "lat": [x.lat for x in res],
            "marker": {"size": 10, "color": [views.RESOURCE_COLORS.get(x.status.value, "#000") for x in res],
                       "opacity": 0.9},
            "customdata": [[x.id, x.name, x.type.replace("_", " "), x.department.replace("_", " "),
                            t(f"resource.{x.status.value}", lang)] for x in res],
            "hovertemplate": "<b>%{customdata[1]}</b> (%{customdata[0]})<br>%{customdata[2]} · %{customdata[3]}"
                             "<br>%{customdata[4]}<extra></extra>"}


def build_figure(r, keys: Keys, lang: str, map_style: str = "white-bg", tiles: str | None = None) -> tuple[dict, dict]:
    """The whole map figure (plain dicts: fast for 10,000 points) and the version it shows."""
    ver = views.versions(r, keys)
    idx = views.station_index(r, keys)
    rank = views.level_rank(r, keys)
    alerts = views.open_alerts(r, keys, rank)
    levels = views.station_levels(alerts, rank)
    latest = views.latest_values(r, keys)
    zs = views.zones(r, keys)
    m = views.station_layer(idx, latest, levels)
    center, zoom = _center(idx, zs)
    layers = map_layers(r, keys, alerts, rank, tiles, zs)
    stations = {"type": "scattermap", "name": t("map.stations", lang), "mode": "markers",
                "lon": m.lon, "lat": m.lat, "customdata": m.custom, "hovertemplate": STATION_HOVER,
                "marker": {"size": m.size, "color": m.color}}
    fig = {
        "data": [stations, _incident_trace(views.incidents(r, keys), lang), _resource_trace(views.resources(r, keys), lang)],
        "layout": {"map": {"style": map_style, "center": center, "zoom": zoom, "layers": layers},
                   "margin": {"l": 0, "r": 0, "t": 0, "b": 0}, "showlegend": True, "uirevision": keys.ns,
                   "legend": {"x": 0.01, "y": 0.99, "bgcolor": "rgba(255,255,255,0.85)"},
                   "paper_bgcolor": "#e9eef2"},
    }
    ver["seq_seen"] = ver["seq"]
    return fig, ver


def map_update(r, keys: Keys, lang: str, client: dict | None, map_style: str = "white-bg",
               tiles: str | None = None) -> tuple[Any, dict | Any]:
    """The map callback's logic: nothing when nothing changed, a Patch of what changed, else the whole map."""
    if not client or client.get("ns") != keys.ns or client.get("lang") != lang:
        fig, ver = build_figure(r, keys, lang, map_style, tiles)
        ver["lang"] = lang
        return fig, ver
    ver = views.versions(r, keys)
    ver["lang"] = lang
    if ver["registry"] != client.get("registry"):
        fig, full = build_figure(r, keys, lang, map_style, tiles)
        full["lang"] = lang
        return fig, full
    same = all(ver[k] == client.get(k) for k in ("alerts", "dispatches", "status", "seq", "resources", "incidents"))
    if same:
        return no_update, no_update
    patch = Patch()
    idx = views.station_index(r, keys)
    alerts_changed = ver["alerts"] != client.get("alerts")
    rank = views.level_rank(r, keys)
    if alerts_changed or ver["seq"] != client.get("seq"):
        alerts = views.open_alerts(r, keys, rank)
        levels = views.station_levels(alerts, rank)
        changed = views.changed_stations(r, keys, int(client.get("seq", 0)))
        if alerts_changed or len(changed) > 2000:
            latest = views.latest_values(r, keys)
            m = views.station_layer(idx, latest, levels)
            patch["data"][0]["marker"]["color"] = m.color
            patch["data"][0]["marker"]["size"] = m.size
            patch["data"][0]["customdata"] = m.custom
            patch["layout"]["map"]["layers"] = map_layers(r, keys, alerts, rank, tiles)
        else:
            latest = views.latest_values(r, keys, changed)
            for sid in changed:
                i = idx.pos.get(sid)
                if i is not None:
                    st = idx.stations[sid]
                    patch["data"][0]["customdata"][i] = views.station_hover(st, latest.get(sid), levels.get(sid))
                    patch["data"][0]["marker"]["color"][i] = views.station_color(levels.get(sid), sid in latest)
    if ver["incidents"] != client.get("incidents") or alerts_changed:
        patch["data"][1] = _incident_trace(views.incidents(r, keys), lang)
    if ver["resources"] != client.get("resources"):
        patch["data"][2] = _resource_trace(views.resources(r, keys), lang)
    return patch, ver


def map_layers(r, keys, alerts, rank, tiles, zs=None) -> list[dict[str, Any]]:
    """Under the markers: raster tiles when configured (online), the zones by risk and alert, the rivers."""
    layers = []
    if tiles:
        layers.append({"sourcetype": "raster", "source": [tiles], "below": "traces"})
    layers += views.zone_layers(zs if zs is not None else views.zones(r, keys), alerts, rank)
    basemap = r.get(keys.basemap)
    if basemap:
        layers.append({"source": orjson.loads(basemap), "sourcetype": "geojson", "type": "line", "below": "traces",
                       "color": "#4a90d9", "line": {"width": 3}})
    return layers


# ---- the alert queue -----------------------------------------------------------------------------------
def _what(a: dict, lang: str) -> str:
    if a["rule_kind"] == "stale":
        return t("what.silent", lang, d=humanize_ms(int((a.get("value") or 0) * 60_000)))
    if a["rule_kind"] == "zone_incident" or a.get("value") is None:
        return a.get("message", "")
    return t("what.value", lang, value=f"{a['value']:.2f}", unit=a.get("unit", ""))


def _trend(a: dict) -> str | None:
    rate = a.get("trend_per_h")
    if rate is None:
        return None
    unit = a.get("unit", "")
    return f"{rate:+.2f} {unit}/h" if not unit.endswith("/h") else f"{rate:+.2f} {unit}/h"


def alert_card(a: dict, lang: str, tz: str | None, now: int, names: dict[str, str]) -> dbc.Card:
    fp, level = a["fingerprint"], a["level"]
    notes = a.get("notes") or {}
    rec = a.get("recommendation")
    claim = a.get("claim")
    where = a["subject_name"]
    if lang == "zh" and a.get("subject_name_zh"):
        where = a["subject_name_zh"]
    zone = f" · {a['zone']}" if a.get("zone") else ""
    lines: list[Any] = [
        html.Div([level_badge(level, lang), html.B(f" {t('rule.' + a['rule_kind'], lang)}"),
                  html.Span(f" · {a['rule']}", className="muted")], className="card-head"),
        html.Div([html.B(where), html.Span(f" ({a['subject']}){zone}", className="muted")]),
        html.Div(_what(a, lang), className="what"),
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
                          html.Div(i["reason"], className="reason")]) for i in rec["items"]]
        head = t("map.recommended", lang) + (" · " + t("map.refreshed", lang) if rec.get("refreshed") else "")
        lines.append(html.Div([html.Div(head, className="sub"), html.Ul(items, className="recs")]))
        for s in rec.get("shortfall", []):
            lines.append(html.Div(t("map.shortfall", lang, found=s["found"], wanted=s["wanted"],
                                    type=s["type"].replace("_", " ")), className="shortfall"))
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
    return dbc.Card(dbc.CardBody(lines), className=f"alert-card lvl-border-{level}", id={"type": "map-card", "fp": fp})


QUEUE_SHOWN = 30  # cards drawn at once: the browser slows with every card (see docs/performance.md)


def queue_view(r, keys: Keys, lang: str, show_all: bool = False) -> list:
    """The most severe, then oldest, alerts as cards; past QUEUE_SHOWN a count of the rest and a toggle."""
    queue = views.alert_queue(r, keys)
    if not queue:
        return [html.Div(t("map.no_alerts", lang), className="muted empty", id="map-queue-empty")]
    tz = ns_tz(r, keys)
    now = clock_of(r, keys, now_ms())
    names = dept_names(lang)
    shown = queue if show_all else queue[:QUEUE_SHOWN]
    cards: list = [alert_card(a, lang, tz, now, names) for a in shown]
    rest = queue[len(shown):]
    if rest or show_all and len(queue) > QUEUE_SHOWN:
        by_level: dict[str, int] = {}
        for a in rest:
            by_level[a["level"]] = by_level.get(a["level"], 0) + 1
        counts = ", ".join(f"{n} {t(f'level.{lv}', lang)}" for lv, n in by_level.items())
        label = t("map.show_fewer", lang) if show_all else t("map.show_all", lang, n=len(rest), counts=counts)
        cards.append(html.Div(dbc.Button(label, id="map-queue-toggle", color="link", size="sm", n_clicks=0),
                              className="queue-more"))
    return cards


# ---- dispatch tracking -------------------------------------------------------------------------------
def _timeline(task: dict, lang: str, tz: str | None, now: int, names: dict[str, str]) -> html.Div:
    steps = [html.Span([t("status.assigned", lang), " ", fmt_time(task["created_at"], tz)], className="step done")]
    for h in task["history"]:
        label = t(f"status.{h['status']}", lang)
        extra = []
        if h.get("people_assisted") is not None:
            extra.append(f"👥{h['people_assisted']}")
        if h.get("note"):
            extra.append(h["note"][:60])
        steps.append(html.Span([" → ", label, " ", fmt_time(h["at"], tz), (" · " + " · ".join(extra)) if extra else ""],
                               className=f"step st-{h['status']}"))
    since = humanize_ms(max(0, now - task["updated_at"]))
    flag = html.Div(t("map.flag", lang, reason=task["flagged"]), className="flag") if task.get("flagged") else None
    return html.Div([html.B(names.get(task["department"], task["department"])),
                     html.Span(f" [{', '.join(task['resource_ids'])}] ", className="muted"),
                     html.Div(steps, className="timeline", id={"type": "map-timeline", "task": task["id"]}),
                     html.Div(t("map.last_update", lang, age=t("common.ago", lang, d=since)), className="muted small"),
                     flag], className=f"task st-{task['status']}")


def dispatch_view(r, keys: Keys, lang: str) -> list:
    board = views.dispatch_board(r, keys)
    if not board:
        return [html.Div(t("map.no_dispatches", lang), className="muted empty")]
    tz = ns_tz(r, keys)
    now = clock_of(r, keys, now_ms())
    names = dept_names(lang)
    out = []
    for item in board:
        d = item["dispatch"]
        out.append(html.Div([
            html.Div([level_badge(d["level"], lang), html.B(f" {d['subject']}"),
                      html.Span(f" · {d['operator']} · {fmt_time(d['created_at'], tz)}", className="muted")]),
            *[_timeline(task, lang, tz, now, names) for task in item["tasks"]],
        ], className="dispatch", id={"type": "map-dispatch-item", "id": d["id"]}))
    return out


# ---- layout -------------------------------------------------------------------------------------------
def layout(lang: str, ns: str) -> html.Div:
    return html.Div([
        dcc.Interval(id="map-tick", interval=1000),
        dcc.Store(id="map-version"),
        dcc.Store(id="map-side-version"),
        dcc.Store(id="map-poke", data=0),
        dcc.Store(id="map-modal-target"),
        dcc.Store(id="map-queue-all", data=False, storage_type="session"),
        html.Div([
            dcc.Graph(id="map-graph", className="map-graph", config={"displaylogo": False, "scrollZoom": True},
                      figure={"data": [], "layout": {"map": {"style": "white-bg"}}}),
            html.Div(t("map.legend", lang), className="legend muted small"),
            html.Div(t("map.click_station", lang), id="map-station-panel", className="station-panel muted"),
        ], className="map-main"),
        html.Div([
            html.Div(id="map-toast", className="toast-area", role="status"),
            html.H5(t("map.alerts", lang)),
            html.Div(id="map-queue", className="queue"),
            html.H5(t("map.dispatches", lang), className="mt-3"),
            html.Div(id="map-dispatches", className="dispatches"),
        ], className="map-side"),
        dbc.Modal([
            dbc.ModalHeader(dbc.ModalTitle(id="map-modal-title")),
            dbc.ModalBody([
                html.Div(id="map-modal-resources-wrap", children=[
                    html.Label(t("map.choose_resources", lang)),
                    dcc.Checklist(id="map-modal-resources", options=[], value=[], className="checklist"),
                ]),
                html.Label(t("map.comment", lang), className="mt-2"),
                dcc.Textarea(id="map-modal-comment", style={"width": "100%"}, maxLength=2000),
                html.Div(id="map-modal-error", className="field-error"),
            ]),
            dbc.ModalFooter([
                dbc.Button(t("map.cancel", lang), id="map-modal-cancel", color="secondary", outline=True, n_clicks=0),
                dbc.Button(t("map.confirm", lang), id="map-modal-confirm", color="primary", n_clicks=0),
            ]),
        ], id="map-modal", is_open=False),
    ], className="map-page")


# ---- callbacks (thin: the logic is in the functions above) ----------------------------------------------
def _ack_ms() -> int:
    import flask

    try:
        return int(flask.current_app.config.get("ECD_ACK_MS", DEFAULT_ACK_MS))
    except RuntimeError:  # outside a request (tests): the default
        return DEFAULT_ACK_MS


def _settings():
    import flask

    cfg = flask.current_app.config
    return cfg.get("ECD_MAP_STYLE", "white-bg"), cfg.get("ECD_MAP_TILES")


@callback(Output("map-graph", "figure"), Output("map-version", "data"),
          Input("map-tick", "n_intervals"), Input("map-poke", "data"),
          State("ns", "data"), State("lang", "data"), State("map-version", "data"))
def _update_map(_n, _poke, ns, lang, client):
    require_user()
    style, tiles = _settings()
    fig, ver = map_update(rds(), namespace(ns), lang or "en", client, style, tiles)
    if isinstance(fig, Patch):
        # the same JSON on the wire; as plain dicts and lists orjson encodes it in one go, while a Patch
        # object makes Dash's encoder walk every value in Python first (~10x slower at 10,000 gauges)
        fig = fig.to_plotly_json()
    return fig, ver


@callback(Output("map-queue", "children"), Output("map-dispatches", "children"), Output("map-side-version", "data"),
          Input("map-tick", "n_intervals"), Input("map-poke", "data"), Input("map-queue-all", "data"),
          State("ns", "data"), State("lang", "data"), State("map-side-version", "data"))
def _update_side(_n, _poke, show_all, ns, lang, client):
    require_user()
    r, keys = rds(), namespace(ns)
    ver = views.versions(r, keys)
    clock = ver["clock"] or now_ms()
    sig = [keys.ns, lang, bool(show_all), ver["alerts"], ver["dispatches"], ver["status"], ver["resources"],
           clock // 60_000]
    if client == sig:
        return no_update, no_update, no_update
    return queue_view(r, keys, lang or "en", bool(show_all)), dispatch_view(r, keys, lang or "en"), sig


@callback(Output("map-queue-all", "data"), Input("map-queue-toggle", "n_clicks"), State("map-queue-all", "data"),
          prevent_initial_call=True)
def _toggle_queue(n, show_all):
    if not n:
        return no_update
    return not show_all


@callback(Output("map-toast", "children"), Output("map-poke", "data"),
          Input({"type": "map-dispatch", "fp": ALL, "level": ALL}, "n_clicks"),
          State("ns", "data"), State("lang", "data"), State("map-poke", "data"), prevent_initial_call=True)
def _one_click_dispatch(clicks, ns, lang, poke):
    trig = ctx.triggered_id
    if not trig or not any(clicks):
        return no_update, no_update
    user = require_user("operator")
    r, keys = rds(), namespace(ns)
    return dispatch_recommended(r, keys, trig["fp"], trig["level"], user, lang or "en"), (poke or 0) + 1


def dispatch_recommended(r, keys: Keys, fp: str, level: str, user: dict, lang: str, resource_ids=None):
    """Dispatch the recommendation (or the operator's own choice); the message the operator sees."""
    ids = resource_ids
    if ids is None:
        raw = r.get(keys.alert(fp))
        rec = views.current_recommendations(r, keys, [orjson.loads(raw)]).get(fp) if raw else None
        ids = [i["resource_id"] for i in (rec or {}).get("items", [])]
    now = clock_of(r, keys, now_ms())
    tz = ns_tz(r, keys)
    try:
        res = dispatch(r, keys, fingerprint=fp, level=level, resource_ids=ids, operator=user["username"], now=now,
                       ack_ms=_ack_ms())
    except CommandError as exc:
        return dbc.Alert(str(exc), color="warning", dismissable=True, id="map-toast-msg")
    if isinstance(res, AlreadyDispatched):
        return dbc.Alert(t("map.dispatch_lost", lang, who=res.by, time=fmt_time(res.at, tz)), color="warning",
                         dismissable=True, id="map-toast-msg")
    # each department's acknowledgement timer runs as an RQ job on the namespace's clock
    queue = Queue(QUEUE, connection=r)
    for task_id in res.task_ids:
        schedule_ack_check(queue, keys.ns, task_id, 0.5)
    names = dept_names(lang)
    return dbc.Alert(t("map.dispatch_ok", lang, n=len(res.resource_ids), s="" if len(res.resource_ids) == 1 else "s",
                       subject=res.subject,
                       depts=", ".join(names.get(d, d) for d in res.departments)),
                     color="success", dismissable=True, id="map-toast-msg")


@callback(Output("map-modal", "is_open"), Output("map-modal-title", "children"), Output("map-modal-target", "data"),
          Output("map-modal-resources", "options"), Output("map-modal-resources", "value"),
          Output("map-modal-resources-wrap", "style"), Output("map-modal-comment", "value"),
          Output("map-modal-error", "children", allow_duplicate=True),
          Input({"type": "map-action", "fp": ALL, "action": ALL}, "n_clicks"),
          State("ns", "data"), State("lang", "data"), prevent_initial_call=True)
def _open_modal(clicks, ns, lang):
    trig = ctx.triggered_id
    if not trig or not any(clicks):
        return (no_update,) * 8
    require_user("operator")
    lang = lang or "en"
    r, keys = rds(), namespace(ns)
    action, fp = trig["action"], trig["fp"]
    raw = r.get(keys.alert(fp))
    if raw is None:
        return (no_update,) * 8
    a = orjson.loads(raw)
    title = {"change": t("map.change", lang), "acknowledge": t("map.ack", lang),
             "escalate": t("map.escalate", lang), "resolve": t("map.resolve", lang)}[action] + f" · {a['subject']}"
    options, value, style = [], [], {"display": "none"}
    if action == "change":
        rec = views.current_recommendations(r, keys, [a]).get(fp) or {}
        value = [i["resource_id"] for i in rec.get("items", [])]
        options = resource_options(r, keys, a, lang)
        style = {}
    return True, title, {"fp": fp, "action": action, "level": a["level"]}, options, value, style, "", ""


def resource_options(r, keys: Keys, alert: dict, lang: str) -> list[dict]:
    """Every available resource, nearest first, for the operator to choose from."""
    from command.engine.recommend import haversine_km

    names = dept_names(lang)
    res = [x for x in views.resources(r, keys) if x.status.value == "available"]
    if alert.get("lat") is not None:
        res.sort(key=lambda x: haversine_km(alert["lat"], alert["lon"], x.lat, x.lon))
    out = []
    for x in res:
        d = haversine_km(alert["lat"], alert["lon"], x.lat, x.lon) if alert.get("lat") is not None else None
        label = f"{x.name or x.id} ({x.id}) · {x.type.replace('_', ' ')} · {names.get(x.department, x.department)}"
        out.append({"label": label + (f" · {d:.1f} km" if d is not None else ""), "value": x.id})
    return out


@callback(Output("map-modal", "is_open", allow_duplicate=True), Output("map-modal-error", "children"),
          Output("map-toast", "children", allow_duplicate=True), Output("map-poke", "data", allow_duplicate=True),
          Input("map-modal-confirm", "n_clicks"), Input("map-modal-cancel", "n_clicks"),
          State("map-modal-target", "data"), State("map-modal-resources", "value"), State("map-modal-comment", "value"),
          State("ns", "data"), State("lang", "data"), State("map-poke", "data"), prevent_initial_call=True)
def _confirm_modal(ok, _cancel, target, chosen, comment, ns, lang, poke):
    if ctx.triggered_id == "map-modal-cancel" or not target or not ok:
        return False, "", no_update, no_update
    user = require_user("operator")
    lang = lang or "en"
    r, keys = rds(), namespace(ns)
    if target["action"] == "change":
        msg = dispatch_recommended(r, keys, target["fp"], target["level"], user, lang, resource_ids=chosen or [])
        return False, "", msg, (poke or 0) + 1
    try:
        alert_action(r, keys, fingerprint=target["fp"], action=target["action"], user=user["username"],
                     now=clock_of(r, keys, now_ms()), comment=comment or "")
    except CommandError as exc:
        return True, str(exc), no_update, no_update
    label = t({"acknowledge": "map.ack", "escalate": "map.escalate", "resolve": "map.resolve"}[target["action"]], lang)
    return False, "", dbc.Alert(t("map.done", lang, action=label), color="info", dismissable=True,
                                id="map-toast-msg"), (poke or 0) + 1


@callback(Output("map-station-panel", "children"), Input("map-graph", "clickData"), Input("map-graph", "hoverData"),
          State("ns", "data"), State("lang", "data"), prevent_initial_call=True)
def _station_click(click, hover, ns, lang):
    require_user()
    event = click if ctx.triggered_id and ctx.triggered[0]["prop_id"].endswith("clickData") else hover
    if not event or not event.get("points"):
        return no_update
    pt = event["points"][0]
    if pt.get("curveNumber") != 0:
        return no_update
    sid = pt["customdata"][0]
    return station_panel(rds(), namespace(ns), sid, lang or "en")


def station_panel(r, keys: Keys, sid: str, lang: str) -> html.Div:
    idx = views.station_index(r, keys)
    st = idx.stations.get(sid)
    if st is None:
        return html.Div(f"{sid}?")
    series = views.station_series(r, keys, sid)
    tz = ns_tz(r, keys)
    title = f"{pick(st.model_dump(), lang, 'name')} ({sid})"
    if not series:
        return html.Div([html.B(title), html.Div(t("map.no_series", lang), className="muted")])
    from command.timeutil import to_iso

    xs = [to_iso(tt, tz) for tt, _ in series]
    ys = [v for _, v in series]
    shapes = [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": b, "y1": b,
               "line": {"color": views.LEVEL_COLORS.get(lv, "#888"), "dash": "dash", "width": 1.5}}
              for lv, b in st.thresholds.items()]
    annotations = [{"xref": "paper", "x": 1, "y": b, "text": t(f"level.{lv}", lang), "showarrow": False,
                    "xanchor": "right", "yanchor": "bottom", "font": {"size": 10}} for lv, b in st.thresholds.items()]
    fig = {"data": [{"type": "scatter", "x": xs, "y": ys, "mode": "lines", "line": {"color": "#1f4e79"},
                     "name": st.kind}],
           "layout": {"height": 200, "margin": {"l": 40, "r": 10, "t": 25, "b": 30}, "shapes": shapes,
                      "annotations": annotations, "title": {"text": title, "font": {"size": 13}},
                      "yaxis": {"title": {"text": st.unit}}, "showlegend": False}}
    return dcc.Graph(id="map-station-trend", figure=fig, config={"displayModeBar": False})
