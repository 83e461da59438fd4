"""The data catalogue: every dataset the platform holds, what it is, how it is graded, how fresh it is.

Each entry comes from the classification file (sample_data/classification.yaml: title in English and
Chinese, owner department, source, format, expected update frequency, the dataset's and its fields'
classification) and from the namespace itself (number of records, last update, measured here by
`PROBES`). `overdue` (pure) says whether a dataset with an expected frequency has gone quiet for
longer than `overdue_after` times it, against the namespace's clock (scenario time in a drill; in
live the live clock, the wall clock before its first tick).

A viewer sees the entries they are cleared for (`classification.decide` on the dataset); each field
says what that viewer gets of it (keep, mask, drop).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import orjson
import redis

from command.clock import command_time
from command.keys import Keys
from command.timeutil import to_iso
from command.trust.classification import Policy, Redactor, Viewer, policy

Probe = Callable[[redis.Redis, Keys], tuple[int | None, int | None]]  # (records, last update ms)
SCAN_LIMIT = 10_000  # records read to find a dataset's newest time


def overdue(last_update: int | None, frequency_ms: int | None, now: int, factor: float = 1.5) -> bool:
    """True when a dataset expected every `frequency_ms` has not changed for more than `factor` times
    that before `now` (or never has). A dataset with no expected frequency (on event) is never overdue."""
    if frequency_ms is None:
        return False
    if last_update is None:
        return True
    return now - last_update > frequency_ms * factor


# ---- probes: how many records, and when the newest changed ---------------------------------------------
def _stream_last(r: redis.Redis, stream: str) -> dict[bytes, bytes] | None:
    last = r.xrevrange(stream, count=1)
    return last[0][1] if last else None


def _stream_id_ms(r: redis.Redis, stream: str) -> int | None:
    last = r.xrevrange(stream, count=1)
    return int(last[0][0].decode().split("-")[0]) if last else None


def _readings(r: redis.Redis, keys: Keys) -> tuple[int | None, int | None]:
    latest = r.hvals(keys.latest)
    times = [t for v in latest for t, _ in orjson.loads(v).values()]
    return len(latest), max(times, default=None)


def _forecasts(r: redis.Redis, keys: Keys) -> tuple[int | None, int | None]:
    runs = r.hvals(keys.forecasts)
    issued = [int(k["issued"]) for v in runs for k in orjson.loads(v).values() if isinstance(k, dict) and k.get("issued")]
    return len(runs), max(issued, default=None)


def _alerts(r: redis.Redis, keys: Keys) -> tuple[int | None, int | None]:
    last = _stream_last(r, keys.alerts_stream)
    t = None
    if last is not None:
        a = orjson.loads(last[b"alert"])
        t = int(last[b"at"]) if b"at" in last else (a["opened_at"] if last[b"event"] == b"open" else a["updated_at"])
    return r.zcard(keys.alerts_index), t


def _warnings(r: redis.Redis, keys: Keys) -> tuple[int | None, int | None]:
    ws = r.hvals(keys.warnings)
    return len(ws), max((int(orjson.loads(w).get("sent") or 0) for w in ws), default=None)


def _incidents(r: redis.Redis, keys: Keys) -> tuple[int | None, int | None]:
    times = []
    for raw in r.hvals(keys.incidents):
        rec = orjson.loads(raw)
        hist = rec.get("history") or []
        times.append(int(hist[-1].get("at") or rec.get("time") or 0) if hist else int(rec.get("time") or 0))
    return len(times), max(times, default=None)


def _recommendations(r: redis.Redis, keys: Keys) -> tuple[int | None, int | None]:
    last = _stream_last(r, keys.recommendations_stream)
    t = orjson.loads(last[b"recommendation"]).get("created_at") if last is not None else None
    return r.xlen(keys.recommendations_stream), t


def _dispatches(r: redis.Redis, keys: Keys) -> tuple[int | None, int | None]:
    newest = r.zrevrange(keys.dispatches_index, 0, 0, withscores=True)
    return r.zcard(keys.dispatches_index), int(newest[0][1]) if newest else None


def _tasks(r: redis.Redis, keys: Keys) -> tuple[int | None, int | None]:
    with r.pipeline(transaction=False) as p:
        for d in _departments():
            p.zcard(keys.department_tasks(d))
        count = sum(p.execute())
    last = _stream_last(r, keys.status_stream)
    t = None
    if last is not None:
        raw = r.get(keys.task(last[b"task_id"].decode()))
        t = orjson.loads(raw).get("updated_at") if raw else None
    return count, t if t is not None else _dispatches(r, keys)[1]


def _alert_notes(r: redis.Redis, keys: Keys) -> tuple[int | None, int | None]:
    fps = [fp.decode() for fp in r.zrevrange(keys.alerts_index, 0, SCAN_LIMIT - 1)]
    with r.pipeline(transaction=False) as p:
        for fp in fps:
            p.hmget(keys.alert_notes(fp), "acknowledged_at", "escalated_at", "resolved_at")
        notes = p.execute() if fps else []
    ats = [[int(x) for x in n if x] for n in notes]
    return sum(1 for a in ats if a), max((t for a in ats for t in a), default=None)


def _events(r: redis.Redis, keys: Keys) -> tuple[int | None, int | None]:
    last = _stream_last(r, keys.events)
    return r.xlen(keys.events), int(last[b"at"]) if last is not None and b"at" in last else None


def _audit(r: redis.Redis, keys: Keys) -> tuple[int | None, int | None]:
    last = _stream_last(r, keys.audit)
    at = orjson.loads(last[b"body"]).get("at") if last is not None else None
    return r.xlen(keys.audit), at


PROBES: dict[str, Probe] = {
    "readings": _readings,
    "stations": lambda r, k: (r.hlen(k.stations), None),
    "forecasts": _forecasts,
    "zones": lambda r, k: (r.hlen(k.zones), None),
    "alerts": _alerts,
    "warnings": _warnings,
    "incidents": _incidents,
    "resources": lambda r, k: (r.hlen(k.resources), None),
    "recommendations": _recommendations,
    "dispatches": _dispatches,
    "tasks": _tasks,
    "alert_notes": _alert_notes,
    "events": _events,
    "deadletter": lambda r, k: (r.xlen(k.deadletter), _stream_id_ms(r, k.deadletter)),
    "audit": _audit,
}


@functools.cache
def _departments() -> tuple[str, ...]:
    from command.trust.auth import load_departments

    return tuple(load_departments())


@functools.cache
def _department_names() -> dict[str, dict[str, str]]:
    from command.trust.auth import load_departments

    return {d.id: {"en": d.name, "zh": d.name_zh or d.name} for d in load_departments().values()}


# ---- the catalogue -------------------------------------------------------------------------------------
def catalogue(r: redis.Redis, keys: Keys, viewer: Viewer, *, now: int | None = None,
              pol: Policy | None = None) -> dict[str, Any]:
    """The datasets `viewer` is cleared for, with their grading, freshness and size in `keys`' namespace."""
    pol = pol or policy()
    now = command_time(r, keys) if now is None else now
    tz_raw = r.hget(keys.meta, "timezone")
    tz = tz_raw.decode() if tz_raw else None
    names = _department_names()
    red = Redactor(viewer, pol)
    entries = []
    for d in pol.datasets.values():
        if not red.allowed(d.id):
            continue
        probe = PROBES.get(d.id)
        records, last = probe(r, keys) if probe else (None, None)
        fields = [{"field": path, "classification": d.level_of(path),
                   "title": {"en": pol.levels[d.level_of(path)].en, "zh": pol.levels[d.level_of(path)].zh},
                   "not_cleared": rule.mask or "drop", "you_get": red.action(d.id, path)}
                  for path, rule in d.fields.items()]
        entries.append({
            "id": d.id, "title": d.title.model_dump(), "owner": d.owner,
            "owner_name": names.get(d.owner, {"en": d.owner, "zh": d.owner}), "source": d.source.model_dump(),
            "format": d.format, "frequency": d.frequency, "frequency_ms": d.frequency_ms,
            "classification": d.classification,
            "classification_title": {"en": pol.levels[d.classification].en, "zh": pol.levels[d.classification].zh},
            "fields": fields, "records": records, "last_update_ms": last, "last_update": to_iso(last, tz),
            "overdue": overdue(last, d.frequency_ms, now, pol.overdue_after),
        })
    return {"namespace": keys.ns, "now": to_iso(now, tz), "now_ms": now, "clearance": viewer.clearance,
            "overdue_after": pol.overdue_after, "datasets": entries}
