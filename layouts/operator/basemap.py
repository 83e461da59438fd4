"""The operator map's base: what is drawn under the alerts so a crew can be told where to go.

- `vector` (the default, offline): the namespace's own road network by speed class (`keys.roads`),
  its waterways (`keys.basemap`), its districts named in the page's language (zones) and the
  landmarks file (`Settings.map_landmarks`: depots, hospitals, ...), as MapLibre layers and one
  trace: no tile server, no glyph server (names are HTML labels, assets/map-overlay.js).
- a raster tile URL template, a MapLibre style URL (a vector tile service), or a local `.mbtiles`
  file of raster tiles that `register_routes` serves at `/map/tiles/{z}/{x}/{y}` (read-only SQLite).

Closed roads are drawn whatever the base (`closure_layer`). `resolve_base` reads the setting once at
start and refuses a value it cannot use, with the reason.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flask
import orjson
from shapely.geometry import shape

from command.config import Settings
from command.i18n import t
from command.models import Zone
from command.planning.closures import in_force
from command.planning.roads import RoadNetwork

from . import words  # noqa: F401 - the page's words

# streets by speed class: (smallest speed_kmh, colour, width); bridges drawn over them
STREET_CLASSES = (("arterial", 50.0, "#e8a33d", 3.0), ("street", 30.0, "#a7b1bb", 1.6), ("lane", 0.0, "#c9d0d6", 1.0))
BRIDGE_COLOR, BRIDGE_WIDTH = "#6d4c41", 4.0
WATER_COLOR = "#7fb2e5"
CLOSED_COLOR = "#b71c1c"
ROUTE_COLOR = "#00897b"
LANDMARK_COLORS = {"command": "#37474f", "depot": "#8d6e63", "fire_station": "#e53935", "hospital": "#d81b60",
                   "police": "#3949ab", "shelter": "#00897b"}
TILE_PATH = "/map/tiles"
MAP_ROLES = ("operator", "planner")  # who reads the map page (layouts/shell.PAGE_ROLES["map"])


@dataclass(frozen=True)
class MapBase:
    """What the map is drawn on: a MapLibre style (a built-in name or a URL), raster tiles under
    everything (a URL template, or None), and whether the namespace's own streets are drawn."""

    kind: str = "vector"  # vector | tiles | style | mbtiles
    style: str = "white-bg"
    tiles: str | None = None
    vector: bool = True
    mbtiles: Path | None = None
    landmarks: Path | None = None


VECTOR = MapBase()


class MapBaseError(ValueError):
    """A base-map setting that cannot be used; the message says which and why."""


def resolve_base(settings: Settings) -> MapBase:
    """The base map the settings choose (ECD_MAP_BASE; ECD_MAP_TILES and ECD_MAP_STYLE still read)."""
    choice = (settings.map_base or "vector").strip()
    landmarks = settings.map_landmarks if settings.map_landmarks and Path(settings.map_landmarks).is_file() else None
    if choice == "vector" and settings.map_tiles:
        choice = settings.map_tiles
    if choice == "vector":
        return MapBase(style=settings.map_style or "white-bg", landmarks=landmarks)
    if choice.startswith(("http://", "https://")):
        if choice.split("?")[0].endswith(".json"):
            return MapBase(kind="style", style=choice, vector=False, landmarks=landmarks)
        if not all(k in choice for k in ("{z}", "{x}", "{y}")):
            raise MapBaseError(f"ECD_MAP_BASE={choice!r}: a tile URL needs {{z}}, {{x}} and {{y}} "
                               "(or give a style URL ending in .json)")
        return MapBase(kind="tiles", tiles=choice, vector=False, landmarks=landmarks)
    path = Path(choice)
    if path.suffix == ".mbtiles":
        if not path.is_file():
            raise MapBaseError(f"ECD_MAP_BASE={choice!r}: no such MBTiles file")
        fmt = mbtiles_metadata(path).get("format", "png")
        if fmt not in TILE_TYPES:
            raise MapBaseError(f"ECD_MAP_BASE={choice!r}: tiles of format {fmt!r} cannot be drawn as a base "
                               "(raster png, jpg or webp; for vector tiles give a style URL)")
        return MapBase(kind="mbtiles", mbtiles=path, vector=False, landmarks=landmarks)
    raise MapBaseError(f"ECD_MAP_BASE={choice!r}: expected vector, a tile URL template, a style URL "
                       "or a .mbtiles file")


# ---- MBTiles ---------------------------------------------------------------------------------------
TILE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}


def _open(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)


def mbtiles_metadata(path: Path) -> dict[str, str]:
    try:
        with _open(path) as db:
            return {str(k): str(v) for k, v in db.execute("SELECT name, value FROM metadata")}
    except sqlite3.Error as exc:
        raise MapBaseError(f"{path}: not a readable MBTiles file ({exc})") from exc


def read_tile(path: Path, z: int, x: int, y: int) -> bytes | None:
    """The tile at z/x/y (XYZ, as MapLibre asks; MBTiles rows count from the south), or None."""
    with _open(path) as db:
        row = db.execute("SELECT tile_data FROM tiles WHERE zoom_level=? AND tile_column=? AND tile_row=?",
                         (z, x, (1 << z) - 1 - y)).fetchone()
    return bytes(row[0]) if row else None


def register_routes(server: flask.Flask, settings: Settings) -> MapBase:
    """Resolve the base map into the app's config (`ECD_MAP_BASE`; a tile or style URL also into
    `ECD_MAP_TILES`, which the Content-Security-Policy allows) and serve an MBTiles file's tiles."""
    from ..access import route_policy

    base = resolve_base(settings)
    server.config["ECD_MAP_BASE"] = base
    if base.kind in ("tiles", "style"):
        server.config["ECD_MAP_TILES"] = base.tiles or base.style
    content_type = TILE_TYPES.get(mbtiles_metadata(base.mbtiles).get("format", "png"), "image/png") \
        if base.mbtiles else "image/png"

    @server.route(f"{TILE_PATH}/<int:z>/<int:x>/<int:y>")
    @route_policy(allow=MAP_ROLES, note="the base map's tiles from the configured MBTiles file")
    def map_tile(z: int, x: int, y: int):
        cfg = flask.current_app.config.get("ECD_MAP_BASE")
        if not isinstance(cfg, MapBase) or cfg.mbtiles is None:
            return flask.Response("no MBTiles base map is configured\n", 404, mimetype="text/plain")
        if not 0 <= z <= 24 or not (0 <= x < (1 << z) and 0 <= y < (1 << z)):
            return flask.Response("no such tile\n", 404, mimetype="text/plain")
        data = read_tile(cfg.mbtiles, z, x, y)
        if data is None:
            return flask.Response(status=204)  # MapLibre draws nothing there, without an error
        resp = flask.Response(data, mimetype=content_type)
        resp.headers["Cache-Control"] = "private, max-age=3600"
        return resp

    return base


def tile_url(base: MapBase) -> str | None:
    """The raster tile URL the map loads: the configured template, or this app's MBTiles route."""
    if base.kind == "mbtiles":
        host = flask.request.host_url.rstrip("/") if flask.has_request_context() else ""
        return f"{host}{TILE_PATH}/{{z}}/{{x}}/{{y}}"
    return base.tiles


# ---- vector layers -------------------------------------------------------------------------------
def _fc(features: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": features}


def _speed_class(props: dict[str, Any]) -> str:
    speed = props.get("speed_kmh")
    speed = float(speed) if isinstance(speed, int | float) else 30.0
    return next(name for name, low, _, _ in STREET_CLASSES if speed >= low)


def street_layers(roads: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The streets as line layers, one per speed class, narrow under wide, bridges on top."""
    if not roads:
        return []
    by: dict[str, list] = {name: [] for name, *_ in STREET_CLASSES}
    bridges = []
    for f in roads.get("features", []):
        props = f.get("properties") or {}
        (bridges if props.get("kind") == "bridge" else by[_speed_class(props)]).append(f)
    layers = [{"source": _fc(by[name]), "sourcetype": "geojson", "type": "line", "below": "traces",
               "color": color, "line": {"width": width}, "name": f"streets-{name}"}
              for name, _, color, width in reversed(STREET_CLASSES) if by[name]]
    if bridges:
        layers.append({"source": _fc(bridges), "sourcetype": "geojson", "type": "line", "below": "traces",
                       "color": BRIDGE_COLOR, "line": {"width": BRIDGE_WIDTH}, "name": "streets-bridge"})
    return layers


def water_layer(basemap: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not basemap:
        return []
    return [{"source": basemap, "sourcetype": "geojson", "type": "line", "below": "traces", "color": WATER_COLOR,
             "line": {"width": 5}, "name": "waterways"}]


def closed_segments(net: RoadNetwork | None, records: list[dict[str, Any]], now: int | None) -> dict[str, Any]:
    """The road segments closed at `now` (incidents `road_closed` 100 m, `levee_breach` 500 m) as
    GeoJSON lines, each with the incident that closes it."""
    if net is None or not records:
        return _fc([])
    closures = in_force(records, now if now is not None else 2**62)
    feats = []
    for c in closures:
        mask = net.closed_edges([c])
        lines = []
        seen = set()
        for k in mask.nonzero()[0]:
            u, v = int(net.edge_u[k]), int(net.edge_v[k])
            if (v, u) in seen:
                continue  # a two-way road is two edges: draw it once
            seen.add((u, v))
            lines.append([net.node_lonlat[u].tolist(), net.node_lonlat[v].tolist()])
        if lines:
            feats.append({"type": "Feature", "properties": {"incident": c.id},
                          "geometry": {"type": "MultiLineString", "coordinates": lines}})
    return _fc(feats)


def closure_layer(closed: dict[str, Any]) -> dict[str, Any]:
    """Closed roads: a dashed dark red line over the streets (always present, maybe empty, so that a
    Patch can replace it in place)."""
    return {"source": closed, "sourcetype": "geojson", "type": "line", "below": "traces", "color": CLOSED_COLOR,
            "line": {"width": 5, "dash": [1.5, 1]}, "name": "closed-roads"}


def read_json(r, key: str) -> dict[str, Any] | None:
    raw = r.get(key)
    return orjson.loads(raw) if raw else None


# ---- labels and landmarks -----------------------------------------------------------------------
_LANDMARKS: dict[tuple[str, float], list[dict[str, Any]]] = {}


def landmarks(path: Path | None) -> list[dict[str, Any]]:
    """The landmarks file's points ({id, kind, name, name_zh, lon, lat}); read again when it changes.
    A file that cannot be read draws no landmarks (the map must still draw)."""
    if path is None:
        return []
    try:
        stamp = (str(path), path.stat().st_mtime)
        cached = _LANDMARKS.get(stamp)
        if cached is not None:
            return cached
        doc = orjson.loads(path.read_bytes())
        out = []
        for f in doc.get("features", []):
            p, g = f.get("properties") or {}, f.get("geometry") or {}
            xy = g.get("coordinates") if g.get("type") == "Point" else None
            if not (isinstance(xy, list) and len(xy) >= 2 and all(isinstance(v, int | float) for v in xy[:2])):
                continue
            out.append({"id": str(p.get("id", "")), "kind": str(p.get("kind", "")), "name": str(p.get("name", "")),
                        "name_zh": str(p.get("name_zh") or p.get("name", "")), "lon": float(xy[0]),
                        "lat": float(xy[1])})
    except (OSError, ValueError, AttributeError, TypeError):
        return []
    _LANDMARKS.clear()
    _LANDMARKS[stamp] = out
    return out


def landmark_trace(points: list[dict[str, Any]], lang: str) -> dict[str, Any]:
    """Landmarks as markers coloured by kind (no sprite needed), named in the page's language."""
    name = "name_zh" if lang == "zh" else "name"
    return {"type": "scattermap", "name": t("map.landmarks", lang), "mode": "markers",
            "lon": [p["lon"] for p in points], "lat": [p["lat"] for p in points],
            "marker": {"size": 11, "color": [LANDMARK_COLORS.get(p["kind"], "#546e7a") for p in points],
                       "opacity": 0.85},
            "customdata": [[p["id"], p[name], t(f"landmark.{p['kind']}", lang) if p["kind"] in LANDMARK_COLORS
                            else p["kind"]] for p in points],
            "hovertemplate": "<b>%{customdata[1]}</b><br>%{customdata[2]}<extra></extra>"}


_CENTRES: dict[tuple[str, int], tuple[float, float]] = {}


def _centre(z: Zone) -> tuple[float, float]:
    """A point inside the zone for its label (inside even for a zone of two islands), cached."""
    key = (z.id, hash(orjson.dumps(z.geometry)))
    c = _CENTRES.get(key)
    if c is None:
        pt = shape(z.geometry).representative_point()
        c = _CENTRES[key] = (round(pt.x, 6), round(pt.y, 6))
        if len(_CENTRES) > 4096:
            _CENTRES.clear()
    return c


def labels(zs: dict[str, Zone], points: list[dict[str, Any]], lang: str, vector: bool) -> list[dict[str, Any]]:
    """HTML labels over the map (assets/map-overlay.js): each district's name in the page's language,
    and each landmark's (these only close up). `kind` is the label's CSS class."""
    out = []
    for z in zs.values():
        lon, lat = _centre(z)
        out.append({"id": z.id, "kind": "district", "lon": lon, "lat": lat,
                    "text": (z.name_zh or z.name) if lang == "zh" else (z.name or z.id)})
    if vector:
        for p in points:
            out.append({"id": p["id"], "kind": f"landmark lm-{p['kind']}", "lon": p["lon"], "lat": p["lat"],
                        "text": p["name_zh"] if lang == "zh" else p["name"], "minzoom": 13})
    return out
