"""One plan over every open alert that asks for units: who goes where, and what each one is waiting for.

Input: the *needs* (one per alert: where, its deadline, the weight of its level, what it asks for),
the available units, the road network (or None) and the closures in force. For each type of unit
asked for, every unit's trip to every alert asking for that type is estimated (`roads`), and the
units are shared out by `assignment.assign`. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from command.models import Resource
from command.planning.assignment import UNSERVED_MIN, assign
from command.planning.closures import Closure
from command.planning.profiles import DEFAULT_PROFILE, DETOUR_FACTOR, TypeProfile
from command.planning.roads import RoadNetwork, Route, Trips, haversine_m_array


@dataclass(frozen=True, slots=True)
class Request:
    type: str
    count: int
    profile: TypeProfile = DEFAULT_PROFILE


@dataclass(frozen=True, slots=True)
class Need:
    key: str  # the alert's fingerprint
    lon: float
    lat: float
    weight: int  # `deadlines.level_weight` of the alert's level
    now: int  # when the units would leave (epoch ms)
    deadline: int | None
    requests: tuple[Request, ...]
    order: tuple = ()  # rows are laid out in this order (ties in the assignment go to the first)


@dataclass(slots=True)
class Estimate:
    unit: Resource
    travel_s: float
    setup_ms: int
    working_at: int  # epoch ms: there and set up
    late_min: int
    straight_m: float
    by_road: bool
    _trips: Trips
    _i: int

    def route(self) -> Route:
        return self._trips.route(self._i)


@dataclass(slots=True)
class Allocation:
    """What one alert gets of one type.

    The assignment itself (`unit_ids`, `unreachable`, `none_on_time`) is decided for every alert;
    the per-unit estimates (`chosen`, `held`) are built on first use, since a re-plan outputs only
    the recommendations of the alerts whose units changed (docs/performance.md)."""

    type: str
    wanted: int
    unreachable: int = 0  # available units of the type that no open road takes there
    none_on_time: bool = False  # it has a deadline, and no available unit of the type can make it
    unit_ids: tuple[str, ...] = ()  # the chosen units' ids, earliest working first
    _build: Callable[[], tuple[list[Estimate], list[tuple[Estimate, str]]]] | None = None
    _built: tuple[list[Estimate], list[tuple[Estimate, str]]] | None = None

    def _estimates(self) -> tuple[list[Estimate], list[tuple[Estimate, str]]]:
        if self._built is None:
            self._built = self._build() if self._build is not None else ([], [])
            self._build = None
        return self._built

    @property
    def chosen(self) -> list[Estimate]:
        """The chosen units' estimates, earliest working first."""
        return self._estimates()[0]

    @property
    def held(self) -> list[tuple[Estimate, str]]:
        """(its own best units, the alert holding it)."""
        return self._estimates()[1]


def _straight_trips(target: tuple[float, float], units: np.ndarray, speed_kmh: float) -> Trips:
    straight = haversine_m_array(target[1], target[0], units[:, 1], units[:, 0])
    return Trips(straight * DETOUR_FACTOR / (speed_kmh / 3.6), np.zeros(len(units), dtype=bool), straight)


def _estimate(unit: Resource, t: Trips, j: int, working: float, setup: int, late: float) -> Estimate:
    return Estimate(unit, float(t.seconds[j]), setup, int(round(working)), int(late), float(t.straight_m[j]),
                    bool(t.by_road[j]), t, j)


def _estimates(pool: Sequence[Resource], trips: Trips, working: np.ndarray, late: np.ndarray, setup: int,
               mine: list[int], wanted: int, key: str, holder: dict[int, str],
               ) -> tuple[list[Estimate], list[tuple[Estimate, str]]]:
    """One alert's chosen units' estimates, and those of the units it would have had on its own,
    now held for another alert."""
    chosen = [_estimate(pool[j], trips, j, working[j], setup, late[j]) for j in mine]
    # by lateness, then arrival, then id (the pool is in id order, so its index breaks ties alike)
    order = np.lexsort((np.arange(len(pool)), working, late))
    own = [int(j) for j in order[np.isfinite(working[order])][:wanted]]
    held = [(_estimate(pool[j], trips, j, working[j], setup, late[j]), holder[j])
            for j in own if holder.get(j, key) != key]
    return chosen, held


def _late_rows(working: np.ndarray, deadlines: Sequence[int | None]) -> np.ndarray:
    """`assignment.late_minutes` of each row against its own deadline (None: never late)."""
    has = np.array([d is not None for d in deadlines])
    dl = np.array([float(d) if d is not None else 0.0 for d in deadlines])[:, None]
    with np.errstate(invalid="ignore"):
        late = np.ceil(np.maximum(working - dl, 0.0) / 60_000.0)
    late = np.where(np.isfinite(late), late, UNSERVED_MIN)
    return np.where(has[:, None], late, 0.0)


def plan(needs: Sequence[Need], units: Sequence[Resource], network: RoadNetwork | None = None,
         closures: Sequence[Closure] = ()) -> dict[str, list[Allocation]]:
    """Each need's allocations, in the order of its requests. `units` are the available ones."""
    needs = sorted(needs, key=lambda n: n.order or (-n.weight, n.key))
    out: dict[str, list[Allocation]] = {n.key: [] for n in needs}
    types: dict[str, TypeProfile] = {}
    for n in needs:
        for q in n.requests:
            types.setdefault(q.type, q.profile)
    by_type: dict[str, list[Resource]] = {}
    for u in sorted(units, key=lambda x: x.id):
        if u.type in types:
            by_type.setdefault(u.type, []).append(u)
    allocs: dict[tuple[str, str], Allocation] = {}
    for n in needs:
        for q in n.requests:
            a = allocs.get((n.key, q.type))
            if a is None:
                a = allocs[(n.key, q.type)] = Allocation(q.type, 0)
                out[n.key].append(a)
            a.wanted += q.count
    for rtype, profile in types.items():
        pool = by_type.get(rtype, [])
        asking = [n for n in needs if (n.key, rtype) in allocs]
        if not pool:
            continue
        pos = np.array([(u.lon, u.lat) for u in pool], dtype=float)
        targets = [(n.lon, n.lat) for n in asking]
        if network is not None:
            trips = network.trips_many(targets, pos, profile.speed_kmh, closures)
        else:
            trips = [_straight_trips(t, pos, profile.speed_kmh) for t in targets]
        setup = int(profile.setup_ms)
        # every alert's row at once (one numpy call per step, not one per alert: a re-plan runs at
        # each instant with an event, over every open alert)
        sec = np.vstack([t.seconds for t in trips])
        reach = np.isfinite(sec)
        nows = np.array([float(n.now) for n in asking])[:, None]
        working_all = np.where(reach, nows + np.where(reach, sec, 0.0) * 1000.0 + setup, np.inf)
        late_all = _late_rows(working_all, [n.deadline for n in asking])
        unreachable = (~reach).sum(axis=1)
        any_reach = reach.any(axis=1)
        earliest = working_all.min(axis=1)
        rows: list[int] = []  # need index (into `asking`) of each slot
        weight: list[int] = []
        for k, n in enumerate(asking):
            a = allocs[(n.key, rtype)]
            a.unreachable = int(unreachable[k])
            a.none_on_time = bool(n.deadline is not None and any_reach[k] and float(earliest[k]) > n.deadline)
            rows += [k] * a.wanted
            weight += [n.weight] * a.wanted
        if not rows:
            continue
        working_of = list(working_all)
        late_of = list(late_all)
        chosen = assign(sec[rows], late_all[rows], weight)
        holder: dict[int, str] = {}
        mine_of: list[list[int]] = [[] for _ in asking]
        for slot, j in enumerate(chosen):
            if j is not None:
                holder[j] = asking[rows[slot]].key
                mine_of[rows[slot]].append(j)

        for k, n in enumerate(asking):
            a = allocs[(n.key, rtype)]
            wk = working_of[k]
            mine = sorted(mine_of[k], key=lambda j: (wk[j], pool[j].id))
            a.unit_ids = tuple(pool[j].id for j in mine)
            a._build = partial(_estimates, pool, trips[k], wk, late_of[k], setup, mine, a.wanted, n.key, holder)
    return out
