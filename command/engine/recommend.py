"""Which units to send, when they must leave, and why. Pure: alerts, rules and units in.

`recommendation_stage` is the one stage that turns alerts into recommendations: the engine's commit
runs it on each batch's alert events (`command.engine.plan_inputs.engine_recommendations`), the read
model (`publish.views`) on the alerts whose recommendation names a unit no longer available. It
plans over *every* open alert it is given (`PlanContext.alerts`, plus those of the call), never one
alert at a time (docs/dispatch.md):

- each alert gets a deadline (`planning.deadlines`): the projected time its value reaches the next
  level, or its opening (or rising) time plus the rule's `respond_within`, whichever comes first;
- each available unit's trip to each alert is estimated on the road network (`planning.roads`),
  avoiding the roads that incidents close (`planning.closures`), plus the type's set-up time;
- the units are shared out to minimise lateness weighted by level, then travel time
  (`planning.assignment`); an alert already dispatched at its level keeps what it has.

Events re-plan at their own time (the alerts' `updated_at`, data time), once per instant: alerts
that open together share the units at once. An alert that opens or rises gets its recommendation,
and every other open alert whose units changed gets a new one that says why ("Rescue Crew 3
(Shahe) is held for WL-017 (red, rapid-rise), red in 40 min"); a resolved alert frees its units the
same way. Whatever the engine's batch size, the same events leave each alert with the same units (a
batch that ends between two alerts of one instant only adds a passing recommendation).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from command.models import Recommendation, RecommendedResource, Resource, ResourceStatus
from command.planning.closures import in_force
from command.planning.deadlines import (
    NEXT_LEVEL,
    NO_DEADLINE,
    RESPOND_WITHIN,
    Deadline,
    alert_deadline,
    level_weight,
)
from command.planning.plan import Allocation, Estimate, Need, Request, plan
from command.planning.profiles import DEFAULT_PROFILE
from command.planning.roads import EARTH_RADIUS_M, RoadNetwork
from command.rules import Recommend, Rule, RuleSet
from command.timeutil import humanize_ms, to_datetime

EARTH_RADIUS_KM = EARTH_RADIUS_M / 1000.0
_VERB = {"open": "opened", "raise": "rose", "resolve": "was resolved"}


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


@dataclass
class PlanContext:
    """What a plan needs besides the alerts of the call, read at the edge (`command.engine.plan_inputs`).

    `alerts`: every open alert (stored copies); `recommendations`: their current recommendations
    (fingerprint -> the stored JSON as a dict), whose deadlines are kept and against which a change
    is told; `served`: fingerprints dispatched at their current level (never re-planned);
    `closures`: closure records (`planning.closures`); `now`: the time of a refresh (an alert given
    with no event), the namespace clock."""

    alerts: Sequence[dict[str, Any]] = ()
    recommendations: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    served: frozenset[str] = frozenset()
    ruleset: RuleSet | None = None
    network: RoadNetwork | None = None
    closures: Sequence[dict[str, Any]] = ()
    tz: str | None = None
    now: int | None = None


@dataclass
class _Open:
    alert: dict[str, Any]
    rule: Rule
    deadline: Deadline

    @property
    def rank(self) -> int:
        lv = self.alert.get("level")
        return self.rule.levels.index(lv) if lv in self.rule.levels else 0


def _stored_deadline(rec: Mapping[str, Any] | None) -> Deadline | None:
    if not rec or "deadline" not in rec:
        return None
    return Deadline(rec.get("deadline"), rec.get("deadline_basis"), rec.get("deadline_level"))


def _placed(a: Mapping[str, Any]) -> bool:
    return a.get("lat") is not None and a.get("lon") is not None


# ---- words ----------------------------------------------------------------------------------------
def _hm(ms: int | float, tz: str | None, up: bool = False) -> str:
    ms = int(ms)
    if up and ms % 60_000:
        ms += 60_000 - ms % 60_000
    return to_datetime(ms, tz).strftime("%H:%M")


def _span(ms: int | float) -> str:
    return humanize_ms(int(ms))


def _basis_target(d: Deadline, tz: str | None) -> str:
    """What the deadline is, as the end of 'before ...' / 'after ...'."""
    if d.basis == NEXT_LEVEL and d.next_level:
        return d.next_level
    return f"the {_hm(d.at, tz)} response deadline" if d.at is not None else "the deadline"


def _outlook(d: Deadline, now: int, tz: str | None) -> str:
    """The deadline from `now`: 'red in 40 min', 'red due now', 'due by 12:15', 'no deadline'."""
    if d.at is None:
        return ""
    if d.basis == NEXT_LEVEL and d.next_level:
        return f"{d.next_level} in {_span(d.at - now)}" if d.at > now else f"{d.next_level} due now"
    return f"due by {_hm(d.at, tz)}"


def _who(a: Mapping[str, Any]) -> str:
    """An alert in a sentence: 'WL-017 (red, rapid-rise)'."""
    return f"{a.get('subject')} ({a.get('level')}, {a.get('rule')})"


def _unit_name(res: Resource) -> str:
    return res.name or res.id


def _item(e: Estimate, d: Deadline, now: int, tz: str | None) -> RecommendedResource:
    res = e.unit
    route = e.route()
    arrive = e.working_at
    parts = [_unit_name(res), " \u2014 "]
    leave_by = None
    margin = None
    if d.at is not None:
        leave_by = int(d.at - e.setup_ms - e.travel_s * 1000.0)
        margin = math.floor((d.at - arrive) / 60_000)
        target = _basis_target(d, tz)
        if e.late_min == 0:
            parts.append(f"leave by {_hm(max(leave_by, now), tz)}; leaving now, working by {_hm(arrive, tz, up=True)}, "
                         f"{_span(max(margin, 0) * 60_000)} before {target}")
        else:
            parts.append(f"leave now: working by {_hm(arrive, tz, up=True)}, "
                         f"{_span(e.late_min * 60_000)} after {target}")
    else:
        parts.append(f"leave now: working by {_hm(arrive, tz, up=True)}")
    km = route.metres / 1000.0
    if e.by_road:
        said = route.describe()
        parts.append(f" ({km:.1f} km by road{' via ' + said if said else ''})")
    else:
        parts.append(f" (about {km:.1f} km: no road map here, straight line x 1.3)")
    return RecommendedResource(
        resource_id=res.id, type=res.type, department=res.department, name=res.name,
        distance_km=round(e.straight_m / 1000.0, 2), reason="".join(parts),
        travel_min=round(e.travel_s / 60.0, 1), setup_min=round(e.setup_ms / 60_000, 1), route_km=round(km, 2),
        arrive_at=arrive, leave_by=leave_by, deadline=d.at, margin_min=margin, late_min=e.late_min,
        via=list(route.via), by_road=e.by_road,
    )


# ---- the plan -------------------------------------------------------------------------------------
class _TripMemo:
    """The road network as `planning.plan` uses it, remembering each target's trips. The engine
    re-plans at every instant with an event, batch after batch, over the same units and (mostly) the
    same open alerts and closures: a target's trips depend only on the network, the units, their
    type's speed and the closures in force, so they are estimated once, not once per instant or per
    batch (docs/performance.md). One memo per network (`_trip_memo`), the least recently used
    entries dropped beyond `TRIP_MEMO_TARGETS`."""

    def __init__(self, net: RoadNetwork) -> None:
        self.net = net
        self.memo: OrderedDict[tuple, Any] = OrderedDict()
        self.lock = threading.Lock()  # the read model may plan from several threads

    def trips_many(self, targets: Sequence[tuple[float, float]], units: Any, speed_kmh: float,
                   closures: Sequence[Any] = ()) -> list:
        key = (units.tobytes() if hasattr(units, "tobytes") else repr(units), float(speed_kmh),
               tuple(sorted((c.id, c.lon, c.lat, c.radius_m) for c in closures)))
        wanted = [(key, (float(x), float(y))) for x, y in targets]
        with self.lock:
            found = {w: self.memo[w] for w in wanted if w in self.memo}
            for w in found:
                self.memo.move_to_end(w)
        missing = list(dict.fromkeys(w for w in wanted if w not in found))
        if missing:
            trips = self.net.trips_many([t for _, t in missing], units, speed_kmh, closures)
            found.update(zip(missing, trips, strict=True))
            with self.lock:
                self.memo.update(zip(missing, trips, strict=True))
                while len(self.memo) > TRIP_MEMO_TARGETS:
                    self.memo.popitem(last=False)
        return [found[w] for w in wanted]


TRIP_MEMO_TARGETS = 1024  # per network, above a city's open alerts x types; at most ~40 MB on 10,000 road vertices
_TRIP_MEMOS: WeakKeyDictionary[RoadNetwork, _TripMemo] = WeakKeyDictionary()
_TRIP_MEMOS_LOCK = threading.Lock()


def _trip_memo(net: RoadNetwork) -> _TripMemo:
    with _TRIP_MEMOS_LOCK:
        memo = _TRIP_MEMOS.get(net)
        if memo is None:
            memo = _TRIP_MEMOS[net] = _TripMemo(net)
        return memo


def forget_trips(net: RoadNetwork) -> None:
    """Drop the travel times remembered for `net` (a benchmark's cold start)."""
    with _TRIP_MEMOS_LOCK:
        _TRIP_MEMOS.pop(net, None)


class _Planner:
    """The open alerts that ask for units, and their current recommendations, as events arrive."""

    def __init__(self, ctx: PlanContext, units: list[Resource]) -> None:
        self.ctx, self.units = ctx, units
        self.network: Any = _trip_memo(ctx.network) if ctx.network is not None else None
        self.book: dict[str, _Open] = {}
        self.current: dict[str, tuple[str, ...]] = {
            fp: tuple(i["resource_id"] for i in rec.get("items", ())) for fp, rec in ctx.recommendations.items()}
        rs = ctx.ruleset
        for a in ctx.alerts:
            fp = a.get("fingerprint")
            rule = _rule(rs, a.get("rule"))
            if fp is None or rule is None or not rule.recommend or not _placed(a) or fp in ctx.served:
                continue
            rec = ctx.recommendations.get(fp)
            d = _stored_deadline(rec)
            if d is None:
                d = alert_deadline(a, rule.respond_within_ms, a.get("opened_at"))
            self.book[fp] = _Open(dict(a), rule, d)

    def put(self, a: dict[str, Any], rule: Rule, deadline: Deadline) -> None:
        self.book[a["fingerprint"]] = _Open(dict(a), rule, deadline)

    def plan(self, now: int) -> dict[str, list[Allocation]]:
        needs = []
        for fp, o in self.book.items():
            a = o.alert
            reqs = tuple(Request(q.type, q.count, q.profile or DEFAULT_PROFILE) for q in o.rule.recommend)
            needs.append(Need(fp, float(a["lon"]), float(a["lat"]), level_weight(o.rank), now, o.deadline.at, reqs,
                              order=(-o.rank, a.get("opened_at") or 0, fp)))
        return plan(needs, self.units, self.network, in_force(self.ctx.closures, now))

    def recommendation(self, fp: str, allocs: list[Allocation], now: int, why: str = "") -> Recommendation:
        o = self.book[fp]
        a, d, tz = o.alert, o.deadline, self.ctx.tz
        items: list[RecommendedResource] = []
        shortfall: list[dict[str, Any]] = []
        held: list[dict[str, Any]] = []
        notes: list[str] = [why] if why else []
        subject = a.get("subject", "")
        for al in allocs:
            items += [_item(e, d, now, tz) for e in al.chosen]
            if len(al.chosen) < al.wanted:
                sf: dict[str, Any] = {"type": al.type, "wanted": al.wanted, "found": len(al.chosen)}
                if al.unreachable:
                    sf["unreachable"] = al.unreachable
                shortfall.append(sf)
            for e, other in al.held:
                oo = self.book[other]
                held.append({"resource_id": e.unit.id, "name": e.unit.name, "type": e.unit.type,
                             "for_fingerprint": other, "for_subject": oo.alert.get("subject"),
                             "for_level": oo.alert.get("level"), "for_deadline": oo.deadline.at})
                outlook = _outlook(oo.deadline, now, tz)
                notes.append(f"{_unit_name(e.unit)} is held for {_who(oo.alert)}{', ' + outlook if outlook else ''}.")
            kind = al.type.replace("_", " ")
            if al.none_on_time and al.chosen:
                notes.append(f"No {kind} can be working before {_basis_target(d, tz)}: the earliest is proposed.")
            if al.unreachable:
                notes.append(f"{al.unreachable} available {kind}{'s' if al.unreachable > 1 else ''} cannot reach "
                             f"{subject} by road (roads closed).")
        return Recommendation(fingerprint=fp, rule=a["rule"], subject=subject, level=a["level"], created_at=now,
                              items=items, shortfall=shortfall, deadline=d.at, deadline_basis=d.basis,
                              deadline_level=d.next_level, reason=" ".join(notes), held=held)


def _rule(rs: RuleSet | None, rule_id: Any) -> Rule | None:
    if rs is None or not isinstance(rule_id, str):
        return None
    try:
        return rs.by_id(rule_id)
    except KeyError:
        return None


def recommendation_stage(alerts: Iterable[tuple[Any, ...]], resources: Callable[[], list[Resource]],
                         context: PlanContext | None = None) -> list[Recommendation]:
    """Recommendations for the alerts given, in order, planned over every open alert.

    Each element is `(alert, rule)` or `(alert, rule, event)`, event being the lifecycle event of an
    `AlertChange` (`open`, `raise`, `lower`, `resolve`). An `open` or `raise` re-plans at the alert's
    `updated_at` and yields its recommendation, then those of the other open alerts whose units
    changed; a `resolve` re-plans and yields only the changed ones; a `lower` re-plans nothing (the
    alert keeps its units, at its lower weight). An alert given with no event is refreshed: all of
    them are planned together, at `context.now` (else the newest `updated_at`), each yielding its
    recommendation, except one already dispatched at its level (`context.served`).

    `resources` is called once, and only when some rule asks for units; only the `available` ones
    are proposed. `context` gives the other open alerts, the road network, closures and time zone
    (without one: only the alerts given, straight lines x 1.3, UTC).
    """
    ctx = context or PlanContext()
    items = []
    for x in alerts:
        a, rule = x[0], x[1]
        if rule is None or not getattr(rule, "recommend", None):
            continue
        items.append((a, rule, x[2] if len(x) > 2 else None))
    if not items:
        return []
    units = [u for u in resources() if u.status == ResourceStatus.available]
    pl = _Planner(ctx, units)
    out: list[Recommendation] = []

    def replan(now: int, triggers: list[tuple[dict[str, Any], str]], own: list[str]) -> None:
        allocs = pl.plan(now)
        for fp in own:
            if fp in pl.book:
                out.append(pl.recommendation(fp, allocs[fp], now))
                pl.current[fp] = tuple(i for al in allocs[fp] for i in al.unit_ids)
        if triggers:
            first, event = triggers[0]
            more = len(triggers) - 1
            why = (f"Re-planned at {_hm(now, ctx.tz)} when {_who(first)} {_VERB.get(event, event)}"
                   + (f" and {more} more alert{'s' if more > 1 else ''} changed." if more else "."))
        else:
            why = f"Re-planned at {_hm(now, ctx.tz)} with the units available then."
        for fp, al in allocs.items():
            if fp in own:
                continue
            ids = tuple(i for x in al for i in x.unit_ids)
            if ids != pl.current.get(fp, ()):
                out.append(pl.recommendation(fp, al, now, why))
                pl.current[fp] = ids

    # consecutive items of one kind and instant form a group, planned once after its last item:
    # events (with the same `updated_at`: alerts that open together share the units at once), or
    # refreshes (no event)
    def group_key(item: tuple[dict[str, Any], Rule, str | None]) -> tuple[bool, int]:
        a, _, event = item
        return (event is None, 0 if event is None else int(a.get("updated_at") or 0))

    i = 0
    while i < len(items):
        j = i
        while j < len(items) and group_key(items[j]) == group_key(items[i]):
            j += 1
        group, i = items[i:j], j
        if group[0][2] is None:  # refreshes: each proposed again, with every other open alert
            own = []
            for a, rule, _ in group:
                fp = a.get("fingerprint")
                if fp in ctx.served or not _placed(a):
                    continue
                rec = ctx.recommendations.get(fp)
                same = bool(rec) and rec.get("level") == a.get("level")  # type: ignore[union-attr]
                d = _stored_deadline(rec) if same else None
                if d is None:
                    since = rec.get("created_at") if same else a.get("opened_at")  # type: ignore[union-attr]
                    d = alert_deadline(a, rule.respond_within_ms, since)
                pl.put(a, rule, d)
                if fp not in own:
                    own.append(fp)
            if own:
                now = ctx.now if ctx.now is not None else max(pl.book[fp].alert.get("updated_at") or 0 for fp in own)
                replan(int(now), [], own)
            continue
        triggers: list[tuple[dict[str, Any], str]] = []
        own = []
        for a, rule, event in group:
            fp = a.get("fingerprint")
            if event == "lower":  # keeps its units, at its lower weight
                if fp in pl.book:
                    pl.book[fp].alert = dict(a)
                continue
            if event == "resolve":
                if pl.book.pop(fp, None) is not None:
                    pl.current.pop(fp, None)
                    triggers.append((a, event))
                if fp in own:
                    own.remove(fp)
                continue
            if not _placed(a):
                continue
            pl.put(a, rule, alert_deadline(a, rule.respond_within_ms, a.get("updated_at")))
            triggers.append((a, str(event)))
            if fp not in own:
                own.append(fp)
        if triggers:
            replan(int(group[0][0]["updated_at"]), triggers, own)
    return out


def recommend(alert: dict[str, Any], requests: Iterable[Recommend], resources: Iterable[Resource], now: int, *,
              network: RoadNetwork | None = None, closures: Sequence[dict[str, Any]] = (), tz: str | None = None,
              respond_within_ms: int | None = None, levels: tuple[str, ...] = ("yellow", "orange", "red"),
              ) -> Recommendation | None:
    """One alert on its own (no other alert competes): its recommendation at `now`, or None when it
    asks for nothing or has no position."""
    requests = tuple(requests)
    if not requests or not _placed(alert):
        return None
    rule = Rule(id=alert.get("rule", ""), kind="threshold", levels=levels, recommend=requests,
                respond_within_ms=respond_within_ms)
    a = dict(alert, updated_at=now)
    a.setdefault("opened_at", now)
    pool = list(resources)
    recs = recommendation_stage([(a, rule, "open")], lambda: pool,
                                PlanContext(network=network, closures=closures, tz=tz))
    return recs[0] if recs else None


__all__ = ["NO_DEADLINE", "RESPOND_WITHIN", "PlanContext", "haversine_km", "recommend", "recommendation_stage"]
