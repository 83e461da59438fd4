"""The road network: `roads.geojson` in, travel times and routes out. Pure (no I/O).

The file is a GeoJSON FeatureCollection of LineString or MultiLineString features:

| property | required | meaning |
|---|---|---|
| `speed_kmh` | no | a number > 0: the speed on this road, for every type of unit. Left out: the unit type's own speed (`resource_types:` in rules.yaml) |
| `oneway` | no | `true`: drivable only in the direction the line is drawn |
| `name` | no | the road's name, given in a route's "via" |
| `kind` | no | free text; `bridge` marks a bridge, which a route's description names first |

Lines join where they share a vertex (exactly the same coordinates); lines that only cross do not.

A trip from a unit to a target is three legs: the straight line from the unit to its nearest road
vertex at 10 km/h, the fastest road route from there to the target's nearest road vertex, and the
straight line from that vertex to the target at 10 km/h (`profiles.ACCESS_SPEED_KMH`). A point
farther than 2 km from every road is off the network: its trips are estimated as with no network,
the straight line x 1.3 at the unit type's speed. Closed segments (`closures`) are left out of the
routes; a point snaps only to a vertex that still has an open segment; a target no route reaches
is unreachable.

The graph is built with networkx (edge weight: travel seconds; the road's name kept for "via");
the nearest vertex comes from a scipy cKDTree, the fastest routes from scipy's csgraph Dijkstra
(one search from each target over the reversed graph gives every unit's time at once).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from command.errors import InvalidInput
from command.planning.closures import Closure
from command.planning.profiles import ACCESS_SPEED_KMH, DETOUR_FACTOR, MAX_SNAP_M

EARTH_RADIUS_M = 6_371_008.8
_MIN_EDGE_S = 1e-3  # csgraph reads an explicit zero as "no edge": a zero-length hop costs a millisecond
_CACHE_BYTES = 64_000_000  # shortest-path trees kept per network (dist + predecessors)


class RoadsError(InvalidInput):
    """A road network file that cannot be used. The message names the file and the feature."""


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def haversine_m_array(lat1: float, lon1: float, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    p1, p2 = math.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lon2) - math.radians(lon1)
    a = np.sin(dp / 2) ** 2 + math.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(a)))


# ---- the file -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RoadLine:
    coords: tuple[tuple[float, float], ...]  # (lon, lat), at least two distinct positions
    speed_kmh: float | None = None
    oneway: bool = False
    name: str = ""
    kind: str = ""


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _line(raw: Any, where: str) -> tuple[tuple[float, float], ...]:
    if not isinstance(raw, list) or len(raw) < 2:
        raise RoadsError(f"{where}: a line needs at least two positions [lon, lat]")
    out = []
    for j, pos in enumerate(raw, 1):
        if not isinstance(pos, list | tuple) or len(pos) < 2 or not (_number(pos[0]) and _number(pos[1])):
            raise RoadsError(f"{where}: position #{j} must be [lon, lat] numbers, got {pos!r}")
        lon, lat = float(pos[0]), float(pos[1])
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise RoadsError(f"{where}: position #{j} {[lon, lat]} out of range (expected [lon, lat])")
        out.append((lon, lat))
    if len(set(out)) < 2:
        raise RoadsError(f"{where}: the line has no length (every position is the same)")
    return tuple(out)


def parse_roads(doc: Any, source: str = "roads.geojson") -> list[RoadLine]:
    """Validate a loaded roads document. Every error names the file and the feature."""
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        raise RoadsError(f"{source}: expected a GeoJSON FeatureCollection of LineStrings")
    lines: list[RoadLine] = []
    for i, feat in enumerate(doc["features"], 1):
        where = f"{source}: feature #{i}"
        if not isinstance(feat, dict):
            raise RoadsError(f"{where}: expected a GeoJSON Feature, got {feat!r}")
        props = feat.get("properties") or {}
        if not isinstance(props, dict):
            raise RoadsError(f"{where}: `properties` must be an object")
        name = props.get("name")
        if name is not None and not isinstance(name, str | int):
            raise RoadsError(f"{where}: `name` must be text, got {name!r}")
        name = "" if name is None else str(name)
        if name:
            where = f"{source}: feature #{i} ({name!r})"
        speed = props.get("speed_kmh")
        if speed is not None and (not _number(speed) or speed <= 0):
            raise RoadsError(f"{where}: `speed_kmh` must be a number above 0, got {speed!r}")
        oneway = props.get("oneway", False)
        if oneway is None:
            oneway = False
        if not isinstance(oneway, bool):
            raise RoadsError(f"{where}: `oneway` must be true or false, got {oneway!r}")
        kind = props.get("kind")
        if kind is not None and not isinstance(kind, str):
            raise RoadsError(f"{where}: `kind` must be text, got {kind!r}")
        geom = feat.get("geometry")
        if not isinstance(geom, dict):
            geom = {}
        gtype = geom.get("type")
        parts: Any
        if gtype == "LineString":
            parts = [geom.get("coordinates")]
        elif gtype == "MultiLineString":
            parts = geom.get("coordinates")
            if not isinstance(parts, list) or not parts:
                raise RoadsError(f"{where}: a MultiLineString needs a list of lines")
        else:
            raise RoadsError(f"{where}: geometry must be a LineString or MultiLineString, got {gtype!r}")
        for k, part in enumerate(parts, 1):
            coords = _line(part, where if len(parts) == 1 else f"{where}, line #{k}")
            lines.append(RoadLine(coords, None if speed is None else float(speed), oneway, name, kind or ""))
    if not lines:
        raise RoadsError(f"{source}: no road lines (a FeatureCollection of LineStrings is expected)")
    return lines


def roads_document(doc: Any, source: str = "roads.geojson") -> dict[str, Any]:
    """The roads document validated and normalised (one LineString per line): what a namespace stores."""
    feats = []
    for ln in parse_roads(doc, source):
        props: dict[str, Any] = {}
        if ln.name:
            props["name"] = ln.name
        if ln.speed_kmh is not None:
            props["speed_kmh"] = ln.speed_kmh
        if ln.oneway:
            props["oneway"] = True
        if ln.kind:
            props["kind"] = ln.kind
        feats.append({"type": "Feature", "properties": props,
                      "geometry": {"type": "LineString", "coordinates": [list(p) for p in ln.coords]}})
    return {"type": "FeatureCollection", "features": feats}


# ---- trips ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Route:
    metres: float  # the whole trip, access legs included
    via: tuple[str, ...]  # road names in the order driven (no repeats in a row)
    bridges: tuple[str, ...] = ()  # the names of the bridges crossed, in order
    main: str = ""  # the named road driven the longest

    def describe(self) -> str:
        """The road names worth saying: the bridges crossed, else the main road ('' for none)."""
        if self.bridges:
            return " and ".join(self.bridges)
        return self.main


class Trips:
    """Travel from several units to one target at one speed: `seconds[i]` (inf: unreachable) and
    `by_road[i]` (False: estimated as the straight line x 1.3, off the network). `route(i)` gives
    the road names and the distance."""

    def __init__(self, seconds: np.ndarray, by_road: np.ndarray, straight_m: np.ndarray,
                 net: RoadNetwork | None = None, unit_nodes: np.ndarray | None = None,
                 unit_access_m: np.ndarray | None = None, target_node: int = -1, target_access_m: float = 0.0,
                 pred: np.ndarray | None = None) -> None:
        self.seconds, self.by_road, self.straight_m = seconds, by_road, straight_m
        self._net, self._nodes, self._access = net, unit_nodes, unit_access_m
        self._t, self._t_access, self._pred = target_node, target_access_m, pred

    def route(self, i: int) -> Route:
        if not self.by_road[i] or self._net is None or not math.isfinite(self.seconds[i]):
            return Route(float(self.straight_m[i]) * DETOUR_FACTOR, (), ())
        net, pred = self._net, self._pred
        assert pred is not None and self._nodes is not None and self._access is not None
        node, metres = int(self._nodes[i]), float(self._access[i]) + self._t_access
        via: list[str] = []
        bridges: list[str] = []
        by_name: dict[str, float] = {}
        guard = net.n_nodes + 1
        while node != self._t and guard:
            nxt = int(pred[node])
            e = net.edge_of[(node, nxt)]
            m = float(net.edge_m[e])
            metres += m
            name = net.edge_name[e]
            if name:
                by_name[name] = by_name.get(name, 0.0) + m
                if not via or via[-1] != name:
                    via.append(name)
                if net.edge_kind[e] == "bridge" and name not in bridges:
                    bridges.append(name)
            node, guard = nxt, guard - 1
        main = max(by_name, key=lambda k: (by_name[k], k)) if by_name else ""
        return Route(metres, tuple(via), tuple(bridges), main)

    def path(self, i: int) -> list[tuple[float, float]]:
        """The road vertices (lon, lat) unit `i` drives through, first to last, for drawing its route
        (empty when it is not by road or cannot get there; the access legs are left to the caller)."""
        if not self.by_road[i] or self._net is None or not math.isfinite(self.seconds[i]):
            return []
        assert self._pred is not None and self._nodes is not None
        node, pred, lonlat = int(self._nodes[i]), self._pred, self._net.node_lonlat
        out = [(float(lonlat[node][0]), float(lonlat[node][1]))]
        guard = self._net.n_nodes + 1
        while node != self._t and guard:
            node, guard = int(pred[node]), guard - 1
            out.append((float(lonlat[node][0]), float(lonlat[node][1])))
        return out


class _State:
    """The network with one set of closures: open segments, snapping, shortest-path trees."""

    def __init__(self, net: RoadNetwork, open_edges: np.ndarray) -> None:
        self.net = net
        self.open_edges = open_edges
        nodes = np.zeros(net.n_nodes, dtype=bool)
        nodes[net.edge_u[open_edges]] = True
        nodes[net.edge_v[open_edges]] = True
        self.open_nodes = np.flatnonzero(nodes)
        self.tree = cKDTree(net.node_xy[self.open_nodes]) if len(self.open_nodes) else None
        self._reversed: dict[float | None, csr_matrix] = {}
        self._trees: OrderedDict[tuple[float | None, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._max_trees = max(16, _CACHE_BYTES // max(1, 12 * net.n_nodes))

    def snap(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest vertex with an open segment, and the distance to it (m), for each point."""
        if self.tree is None:
            return np.full(len(xy), -1), np.full(len(xy), np.inf)
        d, i = self.tree.query(xy)
        return self.open_nodes[i], d

    def _graph(self, speed_key: float | None) -> csr_matrix:
        g = self._reversed.get(speed_key)
        if g is None:
            net, m = self.net, self.open_edges
            w = np.maximum(net.edge_seconds(speed_key)[m], _MIN_EDGE_S)
            # reversed: a search from the target over it gives every vertex's time *to* the target
            g = csr_matrix((w, (net.edge_v[m], net.edge_u[m])), shape=(net.n_nodes, net.n_nodes))
            self._reversed[speed_key] = g
        return g

    def trees(self, speed_key: float | None, targets: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(seconds to the target, next vertex toward it) for every vertex, per target vertex."""
        missing = sorted({t for t in targets if (speed_key, t) not in self._trees})
        if missing:
            dist, pred = dijkstra(self._graph(speed_key), directed=True, indices=missing, return_predecessors=True)
            for k, t in enumerate(missing):  # rows copied: a kept row must not keep the whole batch alive
                self._trees[(speed_key, t)] = (dist[k].copy(), pred[k].copy())
        out = []
        for t in targets:
            self._trees.move_to_end((speed_key, t))
            out.append(self._trees[(speed_key, t)])
        while len(self._trees) > max(self._max_trees, len(set(targets))):
            self._trees.popitem(last=False)
        return out


class RoadNetwork:
    """A road network built from validated lines (`parse_roads`). Immutable once built; caches the
    closure states and shortest-path trees it has computed (bounded)."""

    def __init__(self, lines: Iterable[RoadLine]) -> None:
        index: dict[tuple[float, float], int] = {}
        graph = nx.DiGraph()

        def node(p: tuple[float, float]) -> int:
            n = index.get(p)
            if n is None:
                n = index[p] = len(index)
                graph.add_node(n, lon=p[0], lat=p[1])
            return n

        def add(u: int, v: int, metres: float, ln: RoadLine) -> None:
            secs = metres / (((ln.speed_kmh or 0) or 40.0) / 3.6)  # parallel roads: keep the faster
            old = graph.get_edge_data(u, v)
            if old is not None and old["rank_s"] <= secs:
                return
            graph.add_edge(u, v, metres=metres, speed_kmh=ln.speed_kmh, name=ln.name, kind=ln.kind, rank_s=secs,
                           seconds=None if ln.speed_kmh is None else metres / (ln.speed_kmh / 3.6))

        for ln in lines:
            pts = ln.coords
            for a, b in zip(pts, pts[1:], strict=False):
                if a == b:
                    continue
                u, v = node(a), node(b)
                metres = haversine_m(a[1], a[0], b[1], b[0])
                add(u, v, metres, ln)
                if not ln.oneway:
                    add(v, u, metres, ln)
        if graph.number_of_edges() == 0:
            raise RoadsError("the road network has no segment")
        self.graph = graph
        self.n_nodes = graph.number_of_nodes()
        lonlat = np.array([(graph.nodes[n]["lon"], graph.nodes[n]["lat"]) for n in range(self.n_nodes)])
        self.node_lonlat = lonlat
        self._lat0 = float(np.radians(lonlat[:, 1].mean()))
        self.node_xy = self.project(lonlat[:, 0], lonlat[:, 1])
        edges = list(graph.edges(data=True))
        self.n_edges = len(edges)
        self.edge_u = np.array([u for u, _, _ in edges], dtype=np.int64)
        self.edge_v = np.array([v for _, v, _ in edges], dtype=np.int64)
        self.edge_m = np.array([d["metres"] for _, _, d in edges])
        self.edge_speed = np.array([np.nan if d["speed_kmh"] is None else d["speed_kmh"] for _, _, d in edges])
        self.edge_name = [d["name"] for _, _, d in edges]
        self.edge_kind = [d["kind"] for _, _, d in edges]
        self.edge_of = {(u, v): k for k, (u, v, _) in enumerate(edges)}
        self.has_unspeeded = bool(np.isnan(self.edge_speed).any())
        seg_a, seg_b = self.node_xy[self.edge_u], self.node_xy[self.edge_v]
        self._seg_a, self._seg_d = seg_a, seg_b - seg_a
        self._states: OrderedDict[tuple[Closure, ...], _State] = OrderedDict()
        self._seconds: dict[float | None, np.ndarray] = {}

    @classmethod
    def from_geojson(cls, doc: Any, source: str = "roads.geojson") -> RoadNetwork:
        return cls(parse_roads(doc, source))

    # ---- geometry ----------------------------------------------------------------------------
    def project(self, lon: Any, lat: Any) -> np.ndarray:
        """Local metres (equirectangular about the network's mean latitude): fine within a city."""
        lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
        x = EARTH_RADIUS_M * np.radians(lon) * math.cos(self._lat0)
        y = EARTH_RADIUS_M * np.radians(lat)
        return np.stack([x, y], axis=-1)

    def closed_edges(self, closures: Iterable[Closure]) -> np.ndarray:
        """Mask of the segments within a closure's radius of it."""
        closed = np.zeros(self.n_edges, dtype=bool)
        a, d = self._seg_a, self._seg_d
        dd = np.maximum((d * d).sum(axis=1), 1e-12)
        for c in closures:
            pt = self.project(c.lon, c.lat)
            t = np.clip(((pt - a) * d).sum(axis=1) / dd, 0.0, 1.0)
            nearest = a + d * t[:, None]
            closed |= ((nearest - pt) ** 2).sum(axis=1) <= c.radius_m ** 2
        return closed

    def _state(self, closures: Sequence[Closure]) -> _State:
        key = tuple(sorted(closures, key=lambda c: (c.id, c.lon, c.lat, c.radius_m)))
        st = self._states.get(key)
        if st is None:
            st = self._states[key] = _State(self, ~self.closed_edges(key))
            while len(self._states) > 8:
                self._states.popitem(last=False)
        self._states.move_to_end(key)
        return st

    def edge_seconds(self, speed_key: float | None) -> np.ndarray:
        """Each segment's travel time (s): its own speed, else `speed_key` (the unit type's)."""
        s = self._seconds.get(speed_key)
        if s is None:
            speed = self.edge_speed if speed_key is None else np.where(np.isnan(self.edge_speed), speed_key,
                                                                        self.edge_speed)
            s = self._seconds[speed_key] = self.edge_m / (speed / 3.6)
        return s

    # ---- trips -------------------------------------------------------------------------------
    def trips(self, target: tuple[float, float], units: np.ndarray, speed_kmh: float,
              closures: Sequence[Closure] = ()) -> Trips:
        """Travel from each unit (rows of [lon, lat]) to `target` (lon, lat) for a type whose own speed
        is `speed_kmh` (used off the network and on roads drawn without a speed)."""
        return self.trips_many([target], units, speed_kmh, closures)[0]

    def trips_many(self, targets: Sequence[tuple[float, float]], units: np.ndarray, speed_kmh: float,
                   closures: Sequence[Closure] = ()) -> list[Trips]:
        """`trips` for several targets at once (one batched shortest-path search)."""
        units = np.asarray(units, dtype=float).reshape(-1, 2)
        st = self._state(closures)
        speed_key = float(speed_kmh) if self.has_unspeeded else None
        access = ACCESS_SPEED_KMH / 3.6
        u_nodes, u_d = st.snap(self.project(units[:, 0], units[:, 1]))
        t_arr = np.asarray(targets, dtype=float).reshape(-1, 2)
        t_nodes, t_d = st.snap(self.project(t_arr[:, 0], t_arr[:, 1]))
        on = [k for k in range(len(t_arr)) if t_d[k] <= MAX_SNAP_M]
        trees = dict(zip(on, st.trees(speed_key, [int(t_nodes[k]) for k in on]), strict=True))
        out = []
        for k, (lon, lat) in enumerate(t_arr):
            straight = haversine_m_array(lat, lon, units[:, 1], units[:, 0])
            fallback = straight * DETOUR_FACTOR / (speed_kmh / 3.6)
            if k not in trees:
                out.append(Trips(fallback, np.zeros(len(units), dtype=bool), straight))
                continue
            dist, pred = trees[k]
            near = u_d <= MAX_SNAP_M
            road = np.where(near, u_d / access + dist[np.where(near, u_nodes, 0)] + t_d[k] / access, np.inf)
            seconds = np.where(near, road, fallback)
            out.append(Trips(seconds, near, straight, self, u_nodes, u_d, int(t_nodes[k]), float(t_d[k]), pred))
        return out


__all__ = ["RoadLine", "RoadNetwork", "RoadsError", "Route", "Trips", "haversine_m", "parse_roads",
           "roads_document"]
