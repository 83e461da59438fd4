"""When each station was warned, at each level, from the alert event stream.

A station is *warned at level L* while at least one alert covering it is at L or higher. An alert
covers:

- the station that is its subject (``subject_type`` station: threshold, rate of rise, accumulation,
  stale rules);
- every station in its zone when it is about an area, not a station: a zone (``subject_type`` zone,
  the `zone_warning` rule: the zone is the subject) or an incident (``subject_type`` incident, the
  `zone_incident` rule: the incident's zone).

An alert about one station never covers its neighbours, even in the same zone.

An alert's level over time comes from its events, in stream order: ``open`` (at ``opened_at``),
``raise`` and ``lower`` (at ``updated_at``), ``resolve`` (at ``resolved_at``). An alert still open at
the end lasts until `horizon`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from command.scoring.periods import Period, merge

Segment = tuple[int, int, int]  # start, end (ms), level rank


def _event_time(event: str, alert: Mapping[str, Any]) -> int:
    if event == "open":
        return int(alert["opened_at"])
    if event == "resolve" and alert.get("resolved_at") is not None:
        return int(alert["resolved_at"])
    return int(alert["updated_at"])


def alert_segments(events: Iterable[tuple[str, Mapping[str, Any]]], levels: Sequence[str],
                   horizon: int) -> dict[str, tuple[Mapping[str, Any], list[Segment]]]:
    """Each alert (by fingerprint): its last snapshot and its level over time, as segments
    ``(start, end, rank)`` (rank: index in `levels`). `events` are ``(event, alert snapshot)`` in
    stream order. A level not in `levels` is ignored (it warns at no level)."""
    rank = {lv: i for i, lv in enumerate(levels)}
    open_at: dict[str, tuple[int, int | None]] = {}  # fp -> (since, rank) of the current segment
    out: dict[str, tuple[Mapping[str, Any], list[Segment]]] = {}
    for event, alert in events:
        fp = alert["fingerprint"]
        t = _event_time(event, alert)
        segs = out[fp][1] if fp in out else []
        out[fp] = (alert, segs)
        cur = open_at.pop(fp, None)
        if cur is not None and cur[1] is not None and t > cur[0]:
            segs.append((cur[0], t, cur[1]))
        if event != "resolve":
            open_at[fp] = (t, rank.get(alert.get("level", "")))
    for fp, (since, r) in open_at.items():
        if r is not None and horizon > since:
            out[fp][1].append((since, horizon, r))
    return out


def covered_stations(alert: Mapping[str, Any], stations: Mapping[str, str | None],
                     zone_members: Mapping[str, list[str]]) -> list[str]:
    """The stations an alert covers (see the module docstring). `stations` maps id to zone."""
    kind = alert.get("subject_type") or "station"
    subject = alert.get("subject", "")
    if kind == "station":
        return [subject] if subject in stations else []
    zone = subject if kind == "zone" else alert.get("zone")
    return list(zone_members.get(zone, ())) if zone else []


def warning_periods(events: Iterable[tuple[str, Mapping[str, Any]]], stations: Mapping[str, str | None],
                    levels: Sequence[str], horizon: int) -> dict[str, dict[str, list[Period]]]:
    """``{station: {level: [maximal warning periods at that level or higher]}}`` for every station of
    `stations` (id -> zone id or None), from the alert events (``(event, alert snapshot)``, stream order)."""
    zone_members: dict[str, list[str]] = {}
    for sid, zone in stations.items():
        if zone:
            zone_members.setdefault(zone, []).append(sid)
    raw: dict[str, list[list[Period]]] = {sid: [[] for _ in levels] for sid in stations}
    for alert, segs in alert_segments(events, levels, horizon).values():
        if not segs:
            continue
        for sid in covered_stations(alert, stations, zone_members):
            per_level = raw[sid]
            for s, e, r in segs:
                for i in range(r + 1):
                    per_level[i].append((s, e))
    return {sid: {lv: merge(per_level[i]) for i, lv in enumerate(levels)} for sid, per_level in raw.items()}
