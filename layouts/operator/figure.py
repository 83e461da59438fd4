"""The operator map's figure: stations, incidents and resources as plain-dict traces over the zones and
rivers; a Patch of only what changed since the browser's version; a station's trend when clicked."""

from __future__ import annotations

import math
from typing import Any

import orjson
from dash import Patch, dcc, html, no_update

from command.i18n import t
from command.keys import Keys
from command.publish import views
from command.timeutil import to_iso
from command.trust.classification import INTERNAL, Viewer

from ..common import ns_tz, pick
from . import words  # noqa: F401 - the page's words

STATION_HOVER = "<b>%{customdata[1]}</b> (%{customdata[0]})<br>%{customdata[2]}<br>%{customdata[3]}<br>%{customdata[4]}<extra></extra>"


def _center(idx: views.StationIndex, zones: dict) -> tuple[dict[str, float], float]:
    lons = [s.lon for s in idx.stations.values()]
    lats = [s.lat for s in idx.stations.values()]
    if not lons:
        return {"lon": 0.0, "lat": 20.0}, 1.0
    span = max(max(lons) - min(lons), max(lats) - min(lats), 0.01)
    # MapLibre: the world is 512 * 2^zoom px wide; fit the stations' span into about 650 px
    zoom = max(1.0, min(14.0, math.log2(650 * 360 / (512 * span))))
    return {"lon": (min(lons) + max(lons)) / 2, "lat": (min(lats) + max(lats)) / 2}, zoom


def _reporter(i: Any, lang: str) -> str:
    """The incident's reporter as the reader gave it (masked or whole for the viewer), or ""."""
    who = " ".join(x for x in (i.reporter.name, i.reporter.phone) if x) if i.reporter else ""
    return t("people.reported_by", lang, who=who) if who else ""


def _incident_trace(incs: list, lang: str) -> dict[str, Any]:
    return {"type": "scattermap", "name": t("map.incidents", lang), "mode": "markers",
            "lon": [i.lon for i in incs], "lat": [i.lat for i in incs],
            "marker": {"size": 13, "color": ["#b71c1c" if i.status == "open" else "#bdbdbd" for i in incs],
                       "symbol": "circle"},
            "customdata": [[i.id, i.category.replace("_", " "), i.description[:80], i.status, _reporter(i, lang)]
                           for i in incs],
            "hovertemplate": "<b>%{customdata[0]}</b> %{customdata[1]}<br>%{customdata[2]}<br>%{customdata[3]}"
                             "<br>%{customdata[4]}<extra></extra>"}


def _resource_trace(res: list, lang: str) -> dict[str, Any]:
    return {"type": "scattermap", "name": t("map.resources", lang), "mode": "markers",
            "lon": [x.lon for x in res], "lat": [x.lat for x in res],
            "marker": {"size": 10, "color": [views.RESOURCE_COLORS.get(x.status.value, "#000") for x in res],
                       "opacity": 0.9},
            "customdata": [[x.id, x.name, x.type.replace("_", " "), x.department.replace("_", " "),
                            t(f"resource.{x.status.value}", lang)] for x in res],
            "hovertemplate": "<b>%{customdata[1]}</b> (%{customdata[0]})<br>%{customdata[2]} · %{customdata[3]}"
                             "<br>%{customdata[4]}<extra></extra>"}


def build_figure(r, keys: Keys, lang: str, map_style: str = "white-bg", tiles: str | None = None,
                 viewer: Viewer = INTERNAL) -> tuple[dict, dict]:
    """The whole map figure (plain dicts: fast for 10,000 points) and the version it shows, with what
    `viewer` (the callback passes the signed-in user's) is cleared for."""
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
        "data": [stations, _incident_trace(views.incidents(r, keys, viewer), lang),
                 _resource_trace(views.resources(r, keys, viewer), lang)],
        "layout": {"map": {"style": map_style, "center": center, "zoom": zoom, "layers": layers},
                   "margin": {"l": 0, "r": 0, "t": 0, "b": 0}, "showlegend": True, "uirevision": keys.ns,
                   "legend": {"x": 0.01, "y": 0.99, "bgcolor": "rgba(255,255,255,0.85)"},
                   "paper_bgcolor": "#e9eef2"},
    }
    ver["seq_seen"] = ver["seq"]
    ver["clearance"] = viewer.clearance
    return fig, ver


def map_update(r, keys: Keys, lang: str, client: dict | None, map_style: str = "white-bg",
               tiles: str | None = None, viewer: Viewer = INTERNAL) -> tuple[Any, dict | Any]:
    """The map callback's logic: nothing when nothing changed, a Patch of what changed, else the whole map
    (also for a viewer whose clearance changed)."""
    if not client or client.get("ns") != keys.ns or client.get("lang") != lang \
            or client.get("clearance") != viewer.clearance:
        fig, ver = build_figure(r, keys, lang, map_style, tiles, viewer)
        ver["lang"] = lang
        return fig, ver
    ver = views.versions(r, keys)
    ver["lang"] = lang
    ver["clearance"] = viewer.clearance
    if ver["registry"] != client.get("registry"):
        fig, full = build_figure(r, keys, lang, map_style, tiles, viewer)
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
        patch["data"][1] = _incident_trace(views.incidents(r, keys, viewer), lang)
    if ver["resources"] != client.get("resources"):
        patch["data"][2] = _resource_trace(views.resources(r, keys, viewer), lang)
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


# ---- a station's trend ---------------------------------------------------------------------------------
def station_panel(r, keys: Keys, sid: str, lang: str) -> html.Div:
    """The clicked (or hovered) station's readings against its thresholds."""
    idx = views.station_index(r, keys)
    st = idx.stations.get(sid)
    if st is None:
        return html.Div(f"{sid}?")
    series = views.station_series(r, keys, sid)
    tz = ns_tz(r, keys)
    title = f"{pick(st.model_dump(), lang, 'name')} ({sid})"
    if not series:
        return html.Div([html.B(title), html.Div(t("map.no_series", lang), className="muted")])
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
