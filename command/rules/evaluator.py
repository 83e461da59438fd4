"""The shard evaluator: one shard's inputs in order, alert changes out.

`ShardEvaluator` is a deterministic state machine over five kinds of input: readings, clock ticks,
incidents, forecast runs and external warnings. Nothing here does I/O or reads the wall clock: every
input carries its time. Its state can be exported and loaded, which is how an engine resumes a
shard another engine (or a crashed one) left off.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

from command.models import ExternalWarning, Incident, Reading, Station, Zone
from command.rules.alerts import AlertChange, apply_value, open_alert, resolve_alert, step_alert
from command.rules.parse import Rule, RuleSet
from command.rules.state import FORECAST_PREFIX, LevelState, SubjectState, migrate_format_1
from command.rules.windows import HOUR_MS, RESOLUTION_MS, point_time, trim, window_sum
from command.rules.zone_warnings import (
    WARNING_STATUSES,
    ZoneAreas,
    expire_warnings,
    warning_level,
    warning_transition,
)

_THRESHOLD, _RATE_OF_RISE, _ACCUMULATION = 0, 1, 2
_LEVEL_KINDS = {"threshold": _THRESHOLD, "rate_of_rise": _RATE_OF_RISE, "accumulation": _ACCUMULATION}


@dataclass(slots=True)
class _Plan:
    """The level rules that watch one station's readings of one kind."""

    items: tuple[tuple[Rule, dict[str, float], int, int, float], ...]  # (rule, bounds, kind code, window, lowest bound)
    keep: int  # how far back `hist` reaches: the longest window, or the hour of a threshold rule's trend
    acc: bool  # an accumulation rule is among them: `hist` sums the depths within a minute


class ShardEvaluator:
    """Evaluates one shard's inputs in order. Deterministic; no I/O; time comes from the inputs."""

    def __init__(self, ruleset: RuleSet, stations: dict[str, Station], zones: dict[str, Zone],
                 shard_stations: set[str] | None = None, shard_zones: set[str] | None = None) -> None:
        self.rs = ruleset
        self.stations = stations
        self.zones = zones
        # The stations this shard answers for (staleness is checked only for them).
        self.shard_stations = set(stations) if shard_stations is None else shard_stations
        # The zones this shard answers for (external warnings reach every shard; each takes its own zones).
        self.shard_zones = set(zones) if shard_zones is None else shard_zones
        self.state: dict[str, SubjectState] = {}
        self.dirty: set[str] = set()  # subjects whose state changed since the last export
        self.clock_start: int | None = None  # first time this shard saw; silence is counted from it
        self.now: int | None = None
        self.late = 0  # readings older than the newest of their station and kind, ignored
        self._plans: dict[tuple[str, str], _Plan] = {}
        self._stale_rules = [r for r in ruleset.rules if r.kind == "stale"]
        self._silence: tuple[tuple[int, int, int, int], list] | None = None  # `_silence_watch`, worked out
        self._incident_rules = [r for r in ruleset.rules if r.kind == "zone_incident"]
        self._forecast_rules = [r for r in ruleset.rules if r.kind == "forecast_accumulation"]
        self._warning_rules = [r for r in ruleset.rules if r.kind == "zone_warning"]
        self._areas = ZoneAreas(zones, self.shard_zones)

    # ---- state persistence --------------------------------------------------------------------
    def export_dirty(self) -> dict[str, Any]:
        """The state of each subject that changed since the last export (`SubjectState.to_json`)."""
        state = self.state
        out = {sid: state[sid].to_json() for sid in self.dirty}
        self.dirty.clear()
        return out

    def export_clock(self) -> dict[str, Any]:
        return {"clock_start": self.clock_start, "now": self.now, "late": self.late}

    def load(self, subjects: dict[str, Any], clock: dict[str, Any] | None) -> None:
        """Load exported state: the current format, or format 1 (migrated, and written back at the
        next commit)."""
        self.state = {}
        for sid, d in subjects.items():
            s = self.state[sid] = SubjectState.from_json(d)
            if isinstance(d, dict):
                migrate_format_1(s, self.rs.rules, self.stations.get(sid),
                                 lambda kind, sid=sid: self._plan_for(sid, kind).acc)  # type: ignore[misc]  # python/mypy#15459: a lambda with a default
                self.dirty.add(sid)
        if clock:
            self.clock_start = clock.get("clock_start")
            self.now = clock.get("now")
            self.late = clock.get("late") or 0

    def open_alerts(self) -> list[dict[str, Any]]:
        return [ls.alert for s in self.state.values() for ls in s.rules.values() if ls.alert]

    # ---- planning: which rules apply to a station's kind --------------------------------------
    def _plan_for(self, station_id: str, kind: str) -> _Plan:
        key = (station_id, kind)
        plan = self._plans.get(key)
        if plan is None:
            st = self.stations.get(station_id)
            items = []
            keep = 0
            acc = False
            if st is not None:
                for r in self.rs.rules:
                    code = _LEVEL_KINDS.get(r.kind)
                    if code is not None and r.matches_station(st, kind):
                        if r.station_thresholds and st.kind != kind:
                            continue  # a station's thresholds are for its own kind of reading
                        b = r.bounds_for(st) if r.station_thresholds else dict(r.bounds or {})
                        if b:
                            items.append((r, b, code, r.window_ms, min(b.values())))
                            # a threshold rule's trend is taken from the readings of the last hour
                            keep = max(keep, r.window_ms if code else HOUR_MS)
                            acc = acc or code == _ACCUMULATION
            plan = self._plans[key] = _Plan(tuple(items), keep, acc)
        return plan

    def _tick_clock(self, t: int) -> None:
        if self.clock_start is None:
            self.clock_start = t
        if self.now is None or t > self.now:
            self.now = t

    # ---- readings -------------------------------------------------------------------------------
    def on_reading(self, r: Reading) -> list[AlertChange]:
        return self.reading(r.station_id, r.kind, r.t, r.value)

    def reading(self, sid: str, kind: str, t: int, value: float) -> list[AlertChange]:
        """`on_reading` without the Reading (the engine's hot path)."""
        if self.clock_start is None:
            self.clock_start = t
        if self.now is None or t > self.now:
            self.now = t
        s = self.state.get(sid)
        if s is None:
            s = self.state[sid] = SubjectState()
        last = s.last
        prev = last.get(kind)
        if prev is not None and t <= prev:
            if t < prev:
                self.late += 1
            return []  # a duplicate or a late reading: the state has moved past it
        last[kind] = t
        self.dirty.add(sid)
        changes: list[AlertChange] = []
        plan = self._plans.get((sid, kind)) or self._plan_for(sid, kind)
        if plan.items:
            # (windows.add_point and trim, and alerts.apply_value, inlined where a reading changes nothing)
            h = s.hist.get(kind)
            if h is None:
                h = s.hist[kind] = []
            if h and h[-1][0] // RESOLUTION_MS == t // RESOLUTION_MS:
                q = h[-1]
                h[-1] = (t, value, q[-1] + value) if plan.acc else (t, value)
            else:
                h.append((t, value))
            # keep the newest point at or before (t - keep) as the window's start reference
            cut = t - plan.keep
            if len(h) > 2 and h[1][0] <= cut:
                if h[2][0] > cut:
                    del h[0]  # the usual case: one point left the span
                else:
                    trim(h, cut)
            rstate = s.rules
            for rule, bounds, code, window, lowest in plan.items:
                ls = rstate.get(rule.id)
                if code == _THRESHOLD:
                    v = value
                    if v < lowest and (ls is None or (ls.alert is None and not ls.since and not ls.held)):
                        continue  # below every bound, nothing pending or held: nothing changes
                    trend_from = h
                else:
                    lo = t - window
                    if code == _RATE_OF_RISE:
                        ref = h[0]
                        if ref[0] > lo:
                            continue  # not a whole window of data yet
                        if h[1][0] <= lo:  # the newest point at or before the start of the window
                            ref = h[bisect_right(h, lo, key=point_time) - 1]
                        v = (value - ref[1]) / (window / HOUR_MS)
                    else:  # accumulation: depths since the previous reading, summed over (t - window, t]
                        v = window_sum(s.acc, kind, h, window, lo)
                    if ls is None:
                        ls = rstate[rule.id] = LevelState()
                    vh = trend_from = ls.vh  # the rule's values of the last hour, for the trend
                    if vh and vh[-1][0] // RESOLUTION_MS == t // RESOLUTION_MS:
                        vh[-1] = (t, v)
                    else:
                        vh.append((t, v))
                    if len(vh) > 2 and vh[1][0] <= t - HOUR_MS:
                        if vh[2][0] > t - HOUR_MS:
                            del vh[0]
                        else:
                            trim(vh, t - HOUR_MS)
                    if v < lowest and ls.alert is None and not ls.since and not ls.held:
                        continue
                if ls is None:
                    ls = rstate[rule.id] = LevelState()
                ch = step_alert(ls, self.rs, rule, bounds, sid, v, t, trend_from, self.stations)
                if ch:
                    changes.append(ch)
        for rule in self._stale_rules:
            ls = s.rules.get(rule.id)
            if ls is not None and ls.alert is not None:
                # only the kind the rule listens for ends the silence (for a station no longer in
                # the registry: any kind the rule matches)
                st = self.stations.get(sid)
                if (rule.silence_kind(st) if st is not None else rule.match_kind) in (None, kind):
                    changes.append(resolve_alert(ls, rule, t))
        return changes

    # ---- clock ticks: silence, and the forecasts and warnings that time moves on ----------------
    def on_tick(self, t: int) -> list[AlertChange]:
        """The clock moved to `t`: evaluate silence. Opens alerts with no reading at all."""
        self._tick_clock(t)
        changes: list[AlertChange] = []
        if self._forecast_rules or self._warning_rules:
            changes = self._tick_external(t)
        if not self._stale_rules:
            return changes
        clock_start, state = self.clock_start, self.state
        assert clock_start is not None  # _tick_clock(t) above set it
        for rule, watched in self._silence_watch():
            after = rule.after_ms
            for sid, st, kind in watched:
                s = state.get(sid)
                last = s.last.get(kind) if s is not None else None
                base = last if last is not None else clock_start
                silent = t - base
                if silent < after:
                    continue  # the usual case: heard from within `after`
                ls = s.rules.get(rule.id) if s is not None else None
                if ls is None or ls.alert is None:
                    assert rule.level is not None  # a stale rule has its one level (rules/parse.py)
                    if s is None:
                        s = state[sid] = SubjectState()
                    ls = s.rules.setdefault(rule.id, LevelState())
                    ch = open_alert(ls, rule, sid, rule.level, silent / 60_000, base + after, t,
                                    station=st, unit="min")
                    self.dirty.add(sid)
                    changes.append(ch)
                else:
                    ls.alert["value"] = silent / 60_000
                    ls.alert["peak_value"] = max(ls.alert["peak_value"], silent / 60_000)
                    ls.alert["updated_at"] = t
                    self.dirty.add(sid)
        return changes

    def _silence_watch(self) -> list[tuple[Rule, list[tuple[str, Station, str]]]]:
        """Each stale rule with the shard's stations it watches, each with the kind it listens for,
        in the order of `shard_stations` (the order a tick opens their alerts in). Worked out once
        (a tick went over every station and rule each time: most of a replay's tick cost); again
        only if `stations` or `shard_stations` is replaced or changes size (the engine builds a new
        evaluator when the registry changes)."""
        key = (id(self.stations), len(self.stations), id(self.shard_stations), len(self.shard_stations))
        if self._silence is None or self._silence[0] != key:
            watch = []
            for rule in self._stale_rules:
                watched = []
                for sid in self.shard_stations:
                    st = self.stations.get(sid)
                    if st is not None and rule.matches_station(st):
                        watched.append((sid, st, rule.silence_kind(st)))
                watch.append((rule, watched))
            self._silence = (key, watch)
        return self._silence[1]

    def _tick_external(self, t: int) -> list[AlertChange]:
        """Slide forecast windows to `t`; drop warnings whose time is over."""
        changes: list[AlertChange] = []
        if self._forecast_rules:
            for sid in self.shard_stations:
                s = self.state.get(sid)
                if s is None:
                    continue
                for key, issued in list(s.last.items()):
                    if key.startswith(FORECAST_PREFIX) and t > issued:
                        out = self._eval_forecast(s, sid, key[len(FORECAST_PREFIX):], t)
                        self.dirty.add(sid)
                        changes.extend(out)
        if self._warning_rules:
            for zid in self.shard_zones:
                s = self.state.get(zid)
                if s is None:
                    continue
                for rule in self._warning_rules:
                    ls = s.rules.get(rule.id)
                    if ls is None or not ls.ext:
                        continue
                    if expire_warnings(ls, t):
                        self.dirty.add(zid)
                        ch = warning_transition(ls, self.rs, rule, zid, self.zones.get(zid), t)
                        if ch:
                            changes.append(ch)
        return changes

    # ---- incidents ------------------------------------------------------------------------------
    def on_incident(self, inc: Incident) -> list[AlertChange]:
        self._tick_clock(inc.time)
        changes: list[AlertChange] = []
        zone = self.zones.get(inc.zone) if inc.zone else None
        for rule in self._incident_rules:
            if rule.categories is not None and inc.category not in rule.categories:
                continue
            if not rule.matches_zone(zone):
                continue
            assert zone is not None and rule.level is not None  # matches_zone(None) is False; parse.py sets level
            s = self.state.setdefault(inc.id, SubjectState())
            ls = s.rules.setdefault(rule.id, LevelState())
            if inc.status == "closed":
                if ls.alert is not None:
                    changes.append(resolve_alert(ls, rule, inc.time))
                    self.dirty.add(inc.id)
            elif ls.alert is None:
                ch = open_alert(ls, rule, inc.id, rule.level, None, inc.time, inc.time,
                                subject_type="incident", lon=inc.lon, lat=inc.lat, zone=inc.zone,
                                message=f"{inc.category} in {zone.name or zone.id}: {inc.description}".strip())
                changes.append(ch)
                self.dirty.add(inc.id)  # (a report that changes nothing is not written again)
        return changes

    # ---- forecasts: kept apart from the observations -----------------------------------------
    def on_forecast(self, station_id: str, kind: str, issued: int,
                    series: list[tuple[int, float]]) -> list[AlertChange]:
        """A forecast run for one station/point and kind: [(valid time, value)], issued at `issued`.

        Only the newest run counts (an older or repeated run is ignored). `forecast_accumulation`
        sums the forecast values valid in (ref, ref + window], ref being the run's issue time, and
        again at every clock tick (the window slides as time passes).
        """
        self._tick_clock(issued)
        key = FORECAST_PREFIX + kind
        s = self.state.get(station_id)
        if s is None:
            s = self.state[station_id] = SubjectState()
        prev = s.last.get(key)
        if prev is not None and issued <= prev:
            return []
        s.last[key] = issued
        s.hist[key] = sorted((int(t), float(v)) for t, v in series)
        self.dirty.add(station_id)
        return self._eval_forecast(s, station_id, kind, self.now if self.now is not None else issued)

    def _eval_forecast(self, s: SubjectState, station_id: str, kind: str, ref: int) -> list[AlertChange]:
        st = self.stations.get(station_id)
        if st is None:
            return []
        h = s.hist.get(FORECAST_PREFIX + kind) or ()
        changes = []
        for rule in self._forecast_rules:
            if not rule.matches_station(st, kind):
                continue
            hi = ref + rule.window_ms
            value = sum(v for tt, v in h if ref < tt <= hi)
            ch = apply_value(s, self.rs, rule, dict(rule.bounds or {}), station_id, value, ref, self.stations)
            if ch:
                changes.append(ch)
        return changes

    # ---- external warnings --------------------------------------------------------------------
    def on_warning(self, w: ExternalWarning) -> list[AlertChange]:
        """An imported warning (or its update or cancellation) against the zones of this shard.

        A zone's `zone_warning` alert holds the highest level of the warnings in force over it; an
        Update replaces the messages it references, a Cancel removes them, and a warning past its
        end (`ends`, else `expires`) drops out at the next clock tick.
        """
        self._tick_clock(w.sent)
        if not self._warning_rules:
            return []
        t = self.now if self.now is not None else w.sent
        gone = set(w.references)
        until = w.until
        live = (w.msg_type in ("Alert", "Update") and w.status in WARNING_STATUSES
                and (until is None or until > t))
        if not live:
            gone.add(w.id)
        covered = self._areas.covered(w) if live else set()
        changes: list[AlertChange] = []
        for zid in self.shard_zones:
            zone = self.zones.get(zid)
            for rule in self._warning_rules:
                level = (warning_level(rule, w, self.rs.levels)
                         if zid in covered and rule.matches_zone(zone) else None)
                s = self.state.get(zid)
                ls = s.rules.get(rule.id) if s is not None else None
                active = ls.ext if ls is not None else {}
                if level is None and not (gone & active.keys()) and w.id not in active:
                    continue
                if s is None:
                    s = self.state[zid] = SubjectState()
                if ls is None:
                    ls = s.rules[rule.id] = LevelState()
                for wid in gone:
                    ls.ext.pop(wid, None)
                if level is None:
                    ls.ext.pop(w.id, None)
                else:
                    ls.ext[w.id] = [level, until, w.event, w.headline or w.event]
                self.dirty.add(zid)
                ch = warning_transition(ls, self.rs, rule, zid, zone, t)
                if ch:
                    changes.append(ch)
        return changes
