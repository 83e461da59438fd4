"""The operator map's figure: stations, incidents and resources as plain-dict traces over the zones and
rivers; a Patch of only what changed since the browser's version; a station's trend when clicked."""

from __future__ import annotations

import gc
import math
import zlib
from dataclasses import dataclass
from typing import Any

import orjson
from dash import Patch, dcc, html, no_update

from command.engine.plan_inputs import road_network
from command.i18n import t
from command.keys import Keys
from command.publish import views
from command.timeutil import to_iso
from command.trust.classification import INTERNAL, Viewer

from ..common import ns_tz, pick
from . import (
    basemap,
    trips,
    words,  # noqa: F401 - the page's words
)
from .basemap import VECTOR, MapBase

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


_FROZEN: set[tuple[str, bytes | None]] = set()


def _keep_out_of_the_collector(ns: str, version: bytes | None) -> None:
    """Once per station index (built again only when the registry changes): collect, then move what
    is alive now (the index's 10,000 station models, the app's modules) out of the cyclic garbage
    collector's reach (`gc.freeze`). A full collection during a map then does not scan them again: it
    was the full map's p95 at 10,000 gauges (3x its p50; docs/performance.md)."""
    if (ns, version) in _FROZEN:
        return
    if len(_FROZEN) > 256:
        _FROZEN.clear()
    _FROZEN.add((ns, version))
    gc.collect()
    gc.freeze()


def _zone_order(zs: dict) -> dict:
    """Zones in id order: the map's zone layers are drawn in this order, so that a Patch can find a
    zone's outline by its place (stable for one registry version)."""
    return {k: zs[k] for k in sorted(zs)}


def build_figure(r, keys: Keys, lang: str, base: MapBase = VECTOR, viewer: Viewer = INTERNAL) -> tuple[dict, dict]:
    """The whole map figure (plain dicts: fast for 10,000 points) and the version it shows, with what
    `viewer` (the callback passes the signed-in user's) is cleared for."""
    ver = views.versions(r, keys)
    extra = extra_versions(r, keys)
    idx = views.station_index(r, keys)
    _keep_out_of_the_collector(keys.ns, idx.version)
    rank = views.level_rank(r, keys)
    alerts = views.open_alerts(r, keys, rank)
    levels = views.station_levels(alerts, rank)
    latest = views.latest_values(r, keys)
    zs = _zone_order(views.zones(r, keys))
    m = views.station_layer(idx, latest, levels)
    center, zoom = _center(idx, zs)
    plan = map_layers(r, keys, alerts, rank, base, zs, ver.get("clock"))
    stations = {"type": "scattermap", "name": t("map.stations", lang), "mode": "markers",
                "lon": m.lon, "lat": m.lat, "customdata": m.custom, "hovertemplate": STATION_HOVER,
                "marker": {"size": m.size, "color": m.color}}
    points = basemap.landmarks(base.landmarks) if base.vector else []
    fig = {
        "data": [stations, _incident_trace(views.incidents(r, keys, viewer), lang),
                 _resource_trace(views.resources(r, keys, viewer), lang),
                 trips.route_trace(_routes(r, keys, ver.get("clock"), viewer), lang),
                 basemap.landmark_trace(points, lang)],
        "layout": {"map": {"style": base.style, "center": center, "zoom": zoom, "layers": plan.layers},
                   "margin": {"l": 0, "r": 0, "t": 0, "b": 0}, "showlegend": True, "uirevision": keys.ns,
                   "legend": {"x": 0.01, "y": 0.99, "bgcolor": "rgba(255,255,255,0.85)"},
                   "paper_bgcolor": "#e9eef2",
                   # read by assets/map-overlay.js: the HTML labels (no glyph server offline), the scale bar
                   "meta": {"labels": basemap.labels(zs, points, lang, base.vector), "lang": lang}},
    }
    ver.update(extra)
    ver["seq_seen"] = ver["seq"]
    ver["clearance"] = viewer.clearance
    ver["zl"] = plan.zone_lines
    ver["cl"] = plan.closures
    return fig, ver


def extra_versions(r, keys: Keys) -> dict[str, int]:
    """What the map draws beyond `views.versions`: the road closures (the engine writes them after the
    incidents it reads)."""
    h = 0
    for v in sorted(r.hvals(keys.road_closures)):
        h = zlib.crc32(v, h)
    return {"closures": h}


def _routes(r, keys: Keys, now: int | None, viewer: Viewer) -> list[dict[str, Any]]:
    return trips.unit_routes(r, keys, road_network(r, keys), [orjson.loads(x) for x in r.hvals(keys.road_closures)],
                             now, viewer)


def map_update(r, keys: Keys, lang: str, client: dict | None, base: MapBase = VECTOR,
               viewer: Viewer = INTERNAL) -> tuple[Any, dict | Any]:
    """The map callback's logic: nothing when nothing changed, a Patch of what changed, else the whole map
    (also for a viewer whose clearance changed). An alert change patches only the stations and zone
    outlines its events name (the alerts stream since the browser's version), not the whole layer."""
    if not client or client.get("ns") != keys.ns or client.get("lang") != lang \
            or client.get("clearance") != viewer.clearance or not isinstance(client.get("zl"), int) \
            or not isinstance(client.get("cl"), int):
        fig, ver = build_figure(r, keys, lang, base, viewer)
        ver["lang"] = lang
        return fig, ver
    ver = views.versions(r, keys)
    ver.update(extra_versions(r, keys))
    ver["lang"] = lang
    ver["clearance"] = viewer.clearance
    ver["zl"], ver["cl"] = client["zl"], client["cl"]
    if ver["registry"] != client.get("registry") or _ahead_of_redis(ver, client):
        fig, full = build_figure(r, keys, lang, base, viewer)
        full["lang"] = lang
        return fig, full
    same = all(ver[k] == client.get(k) for k in ("alerts", "dispatches", "status", "seq", "resources", "incidents",
                                                   "closures"))
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
        named = alert_subjects(r, keys, str(client.get("alerts", "0-0"))) if alerts_changed else (set(), set())
        if named is None or len(changed) + len(named[0]) > 2000:
            latest = views.latest_values(r, keys)
            m = views.station_layer(idx, latest, levels)
            patch["data"][0]["marker"]["color"] = m.color
            patch["data"][0]["marker"]["size"] = m.size
            patch["data"][0]["customdata"] = m.custom
            zs = _zone_order(views.zones(r, keys))
            for k, layer in enumerate(layer for layer in views.zone_layers(zs, alerts, rank) if layer["type"] == "line"):
                patch["layout"]["map"]["layers"][client["zl"] + k] = layer
        else:
            sids, zone_ids = named
            ids = sorted(set(changed) | sids)
            latest = views.latest_values(r, keys, ids)
            for sid in ids:
                i = idx.pos.get(sid)
                if i is None:
                    continue
                st = idx.stations[sid]
                lv = levels.get(sid)
                patch["data"][0]["customdata"][i] = views.station_hover(st, latest.get(sid), lv)
                patch["data"][0]["marker"]["color"][i] = views.station_color(lv, sid in latest)
                if sid in sids:
                    patch["data"][0]["marker"]["size"][i] = 14 if lv else 9
            if zone_ids:
                _patch_zone_outlines(patch, r, keys, alerts, rank, zone_ids, client["zl"])
    if ver["incidents"] != client.get("incidents") or alerts_changed:
        patch["data"][1] = _incident_trace(views.incidents(r, keys, viewer), lang)
    if ver["resources"] != client.get("resources"):
        patch["data"][2] = _resource_trace(views.resources(r, keys, viewer), lang)
    if ver["closures"] != client.get("closures"):
        patch["layout"]["map"]["layers"][client["cl"]] = basemap.closure_layer(_closed(r, keys, ver.get("clock")))
    if any(ver[k] != client.get(k) for k in ("dispatches", "status", "resources", "closures")):
        patch["data"][3] = trips.route_trace(_routes(r, keys, ver.get("clock"), viewer), lang)
    return patch, ver


def _ahead_of_redis(ver: dict, client: dict) -> bool:
    """Has this page drawn more than Redis now holds? A Redis restarted from an AOF that ends before its
    last writes (docs/operations.md) counts station changes again from a lower number, and a patch
    "since the page's version" would skip them: the page gets the whole map instead."""
    try:
        return ver["seq"] < int(client.get("seq", 0)) or _id(ver["alerts"]) < _id(str(client.get("alerts", "0-0")))
    except (TypeError, ValueError):
        return True  # a version that is not one of ours: draw it all


def alert_subjects(r, keys: Keys, since: str) -> tuple[set[str], set[str]] | None:
    """The stations and zones the alert events after `since` name; None when they cannot all be read
    (the stream trimmed past `since`, or too many to patch one by one)."""
    first = r.xrange(keys.alerts_stream, count=1)
    if first and since != "0-0" and _id(first[0][0].decode()) > _id(since):
        return None
    events = r.xrange(keys.alerts_stream, min=f"({since}", max="+", count=PATCH_EVENTS + 1)
    if len(events) > PATCH_EVENTS:
        return None
    sids: set[str] = set()
    zones: set[str] = set()
    missing = []
    for _, f in events:
        blob = f.get(b"alert")
        if blob is None:  # an operator's action: its alert's record says what it is about
            missing.append(f.get(b"fingerprint", b"").decode())
            continue
        _subject_of(orjson.loads(blob), sids, zones)
    if missing:
        for raw in r.mget([keys.alert(fp) for fp in missing]):
            if raw is not None:
                _subject_of(orjson.loads(raw), sids, zones)
    return sids, zones


PATCH_EVENTS = 500  # alert events patched one by one; past that the whole station layer is sent


def _id(stream_id: str) -> tuple[int, int]:
    ms, _, n = stream_id.partition("-")
    return int(ms or 0), int(n or 0)


def _subject_of(a: dict, sids: set[str], zones: set[str]) -> None:
    if a.get("subject_type") == "station":
        sids.add(a.get("subject", ""))
    z = a.get("zone") or (a.get("subject") if a.get("subject_type") == "zone" else None)
    if z:
        zones.add(z)


def _patch_zone_outlines(patch: Patch, r, keys: Keys, alerts: list, rank: dict, zone_ids: set[str], first: int) -> None:
    """Each named zone's outline layer, in place (its place: `first` + its rank in id order)."""
    zs = _zone_order(views.zones(r, keys))
    order = {z: k for k, z in enumerate(zs)}
    for zid in sorted(zone_ids):
        k = order.get(zid)
        if k is None:
            continue
        line = views.zone_layers({zid: zs[zid]}, alerts, rank)[1]
        patch["layout"]["map"]["layers"][first + k]["color"] = line["color"]
        patch["layout"]["map"]["layers"][first + k]["line"] = line["line"]


def _closed(r, keys: Keys, now: int | None) -> dict[str, Any]:
    return basemap.closed_segments(road_network(r, keys), [orjson.loads(x) for x in r.hvals(keys.road_closures)], now)


@dataclass
class LayerPlan:
    layers: list[dict[str, Any]]
    zone_lines: int  # index of the first zone outline layer (one per zone, in id order)
    closures: int  # index of the closed roads layer


def map_layers(r, keys, alerts, rank, base: MapBase = VECTOR, zs=None, now: int | None = None) -> LayerPlan:
    """Under the markers, bottom to top: raster tiles when configured, zone fills by risk, waterways and
    streets (the vector base), zone outlines by alert, closed roads."""
    layers: list[dict[str, Any]] = []
    url = basemap.tile_url(base)
    if url:
        layers.append({"sourcetype": "raster", "source": [url], "below": "traces", "name": "tiles"})
    zs = _zone_order(zs if zs is not None else views.zones(r, keys))
    zl = views.zone_layers(zs, alerts, rank)
    layers += [x for x in zl if x["type"] == "fill"]
    layers += basemap.water_layer(basemap.read_json(r, keys.basemap))
    if base.vector:
        layers += basemap.street_layers(basemap.read_json(r, keys.roads))
    first = len(layers)
    layers += [x for x in zl if x["type"] == "line"]
    closures = len(layers)
    layers.append(basemap.closure_layer(_closed(r, keys, now)))
    return LayerPlan(layers, first, closures)


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
