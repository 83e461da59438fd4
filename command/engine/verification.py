"""Checking that the work worked: the engine's edge of `command.ops.verify` (docs/dispatch.md).

A department's `completed` on a task of a station's alert writes a watch (`Keys.verify_watch`, in the
same transaction as the task, `command.ops.dispatch.update_task`). The engine, which sees the
station's readings and its alert's changes, runs `verification_step` on each batch of a shard that
holds watched stations: the pure decision (`verify_completion`) on what the batch brought, at the
shard's clock (data time, so drills at any speed judge alike). Its writes (the task reopened or
verified, the watch removed, or the watch's baseline once known) go into the engine's commit, so
they land with the batch's ACK or not at all: a re-processed batch decides again, the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
from redis.client import Pipeline

from command.keys import Keys, shard_of
from command.models import Station, Task
from command.ops.dispatch import apply_verdict
from command.ops.verify import REOPENED, VERIFIED, WATCHING, level_bounds, verify_completion
from command.rules import AlertChange, RuleSet
from command.streams import field_map


@dataclass
class VerifyWrites:
    """What a batch's verification writes, in the engine's commit."""

    tasks: list[Task] = field(default_factory=list)  # reopened or verified (`apply_verdict` done)
    drop: list[str] = field(default_factory=list)  # watches that are over (task ids)
    keep: dict[str, bytes] = field(default_factory=dict)  # watches rewritten (their baseline found)

    def __bool__(self) -> bool:
        return bool(self.tasks or self.drop or self.keep)


def _readings(entries: Sequence[tuple[Any, Sequence[bytes]]], subjects: set[str]) -> dict[tuple[str, str], list]:
    """(station, kind) -> [(t, value)] of the watched stations in the batch (a second pass, only
    when something is watched: the engine's per-entry loop stays as it is). An entry is
    ``[id, [field, value, ...]]`` as the server sends it (`command.engine.slots.read_groups`)."""
    out: dict[tuple[str, str], list] = {}
    loads = orjson.loads
    for _, fields in entries:
        raw = field_map(fields).get(b"r")
        if raw is None:
            continue
        sid, kind, t, v = loads(raw)
        if sid in subjects and v is not None:
            out.setdefault((sid, kind), []).append((int(t), float(v)))
    return out


def verification_step(r: redis.Redis | Pipeline, keys: Keys, ruleset: RuleSet, stations: Mapping[str, Station],
                      shard: int, nshards: int, entries: Sequence[tuple[Any, Sequence[bytes]]],
                      changes: Sequence[AlertChange], now: int | None) -> VerifyWrites:
    """The verdicts on the watched tasks of shard `shard`'s stations after a batch; `now` is the
    shard's clock after it. `r` may be the commit's pipeline, in WATCH (immediate) mode: the task keys
    read are watched too."""
    out = VerifyWrites()
    raw = r.hgetall(keys.verify_watch)
    if not raw or now is None:
        return out
    watches = {}
    for k, v in raw.items():
        w = orjson.loads(v)
        if shard_of(str(w.get("subject")), nshards) == shard:
            watches[k.decode()] = w
    if not watches:
        return out
    readings = _readings(entries, {w["subject"] for w in watches.values()})
    ids = sorted(watches)
    if hasattr(r, "watch"):  # the engine's commit pipeline: the verdicts land only on the tasks read here
        r.watch(*(keys.task(i) for i in ids))
    tasks = {tid: Task.model_validate_json(x) for tid, x in zip(ids, r.mget([keys.task(i) for i in ids]), strict=True) if x}
    for tid in ids:
        w = watches[tid]
        task = tasks.get(tid)
        st = stations.get(w["subject"])
        try:
            rule = ruleset.by_id(w["rule"])
        except KeyError:
            rule = None
        completed_at = int(w["completed_at"])
        if task is None or task.status != "completed" or st is None or rule is None:
            out.drop.append(tid)  # nothing to watch any more (the task went on, the station or rule is gone)
            continue
        kind = rule.match_kind or st.kind
        seen = readings.get((w["subject"], kind), [])
        base = w.get("base") or (w.get("latest") or {}).get(kind)
        if base is None and seen:
            first = [p for p in seen if p[0] >= completed_at]
            if first:
                base = list(first[0])
        points = ([(int(base[0]), float(base[1]))] if base else []) + seen
        levels = [(int(c.alert.get("updated_at") or 0), ruleset.level_rank(c.alert["level"])) for c in changes
                  if c.event in ("open", "raise") and c.alert.get("rule") == w["rule"]
                  and c.alert.get("subject") == w["subject"]]
        verdict = verify_completion(station=w["subject"], completed_at=completed_at,
                                    level_rank=ruleset.level_rank(w["level"]) if w["level"] in ruleset.levels else 0,
                                    thresholds=level_bounds(ruleset.levels, st.thresholds, rule.bounds),
                                    readings=points, alert_levels=levels, now=now, within_ms=rule.verify_within_ms,
                                    rise=rule.verify_rise, unit=st.unit or "")
        if verdict.outcome in (REOPENED, VERIFIED):
            out.tasks.append(apply_verdict(task, verdict))
            out.drop.append(tid)
        elif verdict.outcome == WATCHING:
            if base is not None and w.get("base") is None:
                out.keep[tid] = orjson.dumps({**w, "base": list(base)})
        else:  # the window passed with neither: the task stays completed
            out.drop.append(tid)
    return out


__all__ = ["VerifyWrites", "verification_step"]
