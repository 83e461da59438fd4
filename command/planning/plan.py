"""One plan over every open alert that asks for units: who goes where, and what each one is waiting for.

Input: the *needs* (one per alert: where, its deadline, the weight of its level, what it asks for),
the available units, the road network (or None) and the closures in force. For each type of unit
asked for, every unit's trip to every alert asking for that type is estimated (`roads`), and the
units are shared out by `assignment.assign`. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from command.models import Resource
from command.planning.assignment import assign, late_minutes
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
    """What one alert gets of one type."""

    type: str
    wanted: int
    chosen: list[Estimate] = field(default_factory=list)  # earliest working first
    held: list[tuple[Estimate, str]] = field(default_factory=list)  # (its own best units, the alert holding it)
    unreachable: int = 0  # available units of the type that no open road takes there
    none_on_time: bool = False  # it has a deadline, and no available unit of the type can make it


def _straight_trips(target: tuple[float, float], units: np.ndarray, speed_kmh: float) -> Trips:
    straight = haversine_m_array(target[1], target[0], units[:, 1], units[:, 0])
    return Trips(straight * DETOUR_FACTOR / (speed_kmh / 3.6), np.zeros(len(units), dtype=bool), straight)


def _estimate(unit: Resource, t: Trips, j: int, working: float, setup: int, deadline: int | None) -> Estimate:
    return Estimate(unit, float(t.seconds[j]), setup, int(round(working)),
                    int(late_minutes(np.array([working]), deadline)[0]), float(t.straight_m[j]), bool(t.by_road[j]), t, j)


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
        rows: list[int] = []  # need index (into `asking`) of each slot
        travel, late, weight = [], [], []
        working_of: list[np.ndarray] = []
        for k, n in enumerate(asking):
            sec = trips[k].seconds
            working = n.now + np.where(np.isfinite(sec), sec, 0.0) * 1000.0 + setup
            working = np.where(np.isfinite(sec), working, np.inf)
            working_of.append(working)
            lm = late_minutes(working, n.deadline)
            a = allocs[(n.key, rtype)]
            a.unreachable = int((~np.isfinite(sec)).sum())
            reach = np.isfinite(sec)
            a.none_on_time = bool(n.deadline is not None and reach.any()
                                  and float(working[reach].min()) > n.deadline)
            for _ in range(a.wanted):
                rows.append(k)
                travel.append(sec)
                late.append(lm)
                weight.append(n.weight)
        if not rows:
            continue
        chosen = assign(np.vstack(travel), np.vstack(late), weight)
        holder: dict[int, str] = {}
        for slot, j in enumerate(chosen):
            if j is not None:
                holder[j] = asking[rows[slot]].key

        for k, n in enumerate(asking):
            a = allocs[(n.key, rtype)]
            mine = sorted((j for slot, j in enumerate(chosen) if j is not None and rows[slot] == k),
                          key=lambda j: (working_of[k][j], pool[j].id))
            a.chosen = [_estimate(pool[j], trips[k], j, working_of[k][j], setup, n.deadline) for j in mine]
            # the units this alert would have had on its own, now held for another one
            lm = late_minutes(working_of[k], n.deadline)
            own = sorted((j for j in range(len(pool)) if np.isfinite(working_of[k][j])),
                         key=lambda j: (lm[j], working_of[k][j], pool[j].id))[: a.wanted]
            a.held = [(_estimate(pool[j], trips[k], j, working_of[k][j], setup, n.deadline), holder[j])
                      for j in own if holder.get(j, n.key) != n.key]
    return out
