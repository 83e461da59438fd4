"""Dispatch commands, department tasks and operator actions on alerts. Idempotent, audited.

Every command is one WATCH/MULTI/EXEC transaction that also appends its audit entry, so a command
and its record land together. A dispatch claims its (alert, level) with the transaction: a double
click or two operators at the same instant dispatch once, and the loser learns who won and when.

Refusals are `command.errors` classes (InvalidInput, NotFound, Forbidden, Conflict), translated by
the edges. Every command takes its `now` from the caller: the time it is stamped with,
`command.clock.command_time` (the namespace's clock; the wall clock in live before the first tick).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import redis

from command.errors import Conflict, InvalidInput, NotFound
from command.keys import ACK_TIMER_NAMESPACES, Keys
from command.models import (
    TASK_NEXT,
    TASK_RESOURCE_STATUS,
    TASK_STATUSES,
    TASK_SYSTEM_STATUSES,
    Dispatch,
    Resource,
    ResourceStatus,
    StatusUpdate,
    Task,
)
from command.ops.people import MAX_PEOPLE
from command.ops.people import people as valid_people
from command.ops.verify import REOPENED, VERIFIER, Verdict
from command.trust import audit

DEFAULT_ACK_MS = 10 * 60_000


@dataclass
class AlreadyDispatched:
    by: str
    at: int
    dispatch_id: str


def _load_alert(r: redis.Redis, keys: Keys, fingerprint: str) -> dict[str, Any]:
    raw = r.get(keys.alert(fingerprint))
    if raw is None:
        raise NotFound(f"unknown alert {fingerprint}", key="err.alert_gone")
    return orjson.loads(raw)


def _retrying(r: redis.Redis, fn):
    """Run fn(pipe) under WATCH until no watched key changed underneath it."""
    with r.pipeline() as pipe:
        while True:
            try:
                return fn(pipe)
            except redis.WatchError:
                continue


def dispatch(r: redis.Redis, keys: Keys, *, fingerprint: str, level: str, resource_ids: list[str],
             operator: str, now: int, note: str = "", ack_ms: int = DEFAULT_ACK_MS) -> Dispatch | AlreadyDispatched:
    """Send `resource_ids` to the alert; one task per department involved."""
    if not resource_ids:
        raise InvalidInput("choose at least one resource", field="resources", key="err.no_resources")
    if len(set(resource_ids)) != len(resource_ids):
        raise InvalidInput("a resource is listed twice", field="resources", key="err.resource_twice")
    alert = _load_alert(r, keys, fingerprint)
    claim_key = keys.dispatch_claim(fingerprint, level)
    dispatch_id = f"{fingerprint}-{level}"

    def attempt(pipe) -> Dispatch | AlreadyDispatched:
        pipe.watch(claim_key, keys.resources, keys.audit_head)

        def lost() -> AlreadyDispatched | None:
            claim = pipe.get(claim_key)
            if claim is None:
                return None
            c = orjson.loads(claim)
            pipe.unwatch()
            return AlreadyDispatched(by=c["by"], at=c["at"], dispatch_id=c["dispatch_id"])

        if (other := lost()) is not None:
            return other
        raws = pipe.hmget(keys.resources, resource_ids)
        resources: list[Resource] = []
        for rid, raw in zip(resource_ids, raws, strict=True):
            if raw is None:
                raise NotFound(f"unknown resource {rid}", field="resources", key="err.unknown_resource",
                               params={"id": rid})
            res = Resource.model_validate_json(raw)
            if res.status != ResourceStatus.available:
                # a rival's dispatch of this same alert may have landed between our two reads:
                # then the resources went to it, and this click lost the race rather than failed
                if (other := lost()) is not None:
                    return other
                raise Conflict(f"{res.name or rid} is {res.status.value.replace('_', ' ')}, not available",
                               field="resources", key="err.unit_unavailable",
                               params={"name": res.name or rid, "status": res.status.value})
            resources.append(res)
        by_dept: dict[str, list[str]] = {}
        for res in resources:
            by_dept.setdefault(res.department, []).append(res.id)
        tasks = [Task(id=f"{dispatch_id}-{dept}", department=dept, dispatch_id=dispatch_id, fingerprint=fingerprint,
                      subject=alert["subject"], rule=alert["rule"], level=level, lat=alert.get("lat"),
                      lon=alert.get("lon"), resource_ids=ids, created_at=now, updated_at=now,
                      ack_deadline=now + ack_ms)
                 for dept, ids in sorted(by_dept.items())]
        d = Dispatch(id=dispatch_id, fingerprint=fingerprint, level=level, subject=alert["subject"], rule=alert["rule"],
                     resource_ids=list(resource_ids), departments=sorted(by_dept), task_ids=[t.id for t in tasks],
                     operator=operator, created_at=now, note=note)
        head = pipe.get(keys.audit_head)
        pipe.multi()
        pipe.set(claim_key, orjson.dumps({"by": operator, "at": now, "dispatch_id": dispatch_id}))
        for res in resources:
            res.status = ResourceStatus.dispatched
        pipe.hset(keys.resources, mapping={res.id: res.model_dump_json() for res in resources})
        pipe.set(keys.dispatch(d.id), d.model_dump_json())
        pipe.zadd(keys.dispatches_index, {d.id: now})
        for t in tasks:
            pipe.set(keys.task(t.id), t.model_dump_json())
            pipe.zadd(keys.department_tasks(t.department), {t.id: now})
        # the acknowledgement timers, in the same transaction: the worker's sweep flags a task past its
        # deadline even if the RQ job for it was never enqueued (command/ops/jobs.py)
        pipe.zadd(keys.ack_timers, {t.id: t.ack_deadline for t in tasks})
        pipe.sadd(ACK_TIMER_NAMESPACES, keys.ns)
        pipe.xadd(keys.dispatches_stream, {"event": "dispatch", "dispatch_id": d.id, "fingerprint": fingerprint})
        audit.append(pipe, keys, head.decode() if head else None, who=operator, action="dispatch", at=now,
                     details={"dispatch_id": d.id, "alert": fingerprint, "level": level, "resources": resource_ids,
                              "note": note})
        pipe.execute()
        return d

    return _retrying(r, attempt)


def get_task(r: redis.Redis, keys: Keys, task_id: str, department: str | None) -> Task:
    """A task, for `department` only (None: the command centre, which sees every task). Another
    department's task is answered exactly as a task that does not exist (no oracle)."""
    raw = r.get(keys.task(task_id))
    task = None if raw is None else Task.model_validate_json(raw)
    if task is None or department is not None and task.department != department:
        raise NotFound(f"unknown task {task_id}")
    return task


DEPARTMENT_PAGE_TASKS = 200  # a department's page shows its newest tasks, this many


def department_task_records(r: redis.Redis, keys: Keys, department: str) -> list[bytes | None]:
    """The stored records of a department's newest tasks, newest first (None: one just deleted)."""
    ids = [i.decode() for i in r.zrevrange(keys.department_tasks(department), 0, DEPARTMENT_PAGE_TASKS - 1)]
    return r.mget([keys.task(i) for i in ids]) if ids else []


def department_tasks(r: redis.Redis, keys: Keys, department: str) -> list[Task]:
    return [Task.model_validate_json(x) for x in department_task_records(r, keys, department) if x is not None]


def dispatch_tasks(r: redis.Redis, keys: Keys, d: Dispatch) -> list[Task]:
    raws = r.mget([keys.task(t) for t in d.task_ids]) if d.task_ids else []
    return [Task.model_validate_json(x) for x in raws if x is not None]


def recent_dispatches(r: redis.Redis, keys: Keys, count: int = 100) -> list[Dispatch]:
    ids = [i.decode() for i in r.zrevrange(keys.dispatches_index, 0, count - 1)]
    raws = r.mget([keys.dispatch(i) for i in ids]) if ids else []
    return [Dispatch.model_validate_json(x) for x in raws if x is not None]


def update_task(r: redis.Redis, keys: Keys, *, task_id: str, department: str, user: str, status: str,
                now: int, note: str = "", people_assisted: int | None = None, lat: float | None = None,
                lon: float | None = None, people: list[Any] | None = None) -> Task:
    """A department's status report on its own task. Validated field by field; never another's task.

    `people`: people assisted, each ``{name, phone}`` (command/ops/people.py), added to the task's
    `people` (personal data, graded secret: the audit entry carries only how many)."""
    added, problems = valid_people(people)
    if problems:
        raise InvalidInput(problems)
    if status not in TASK_STATUSES or status in TASK_SYSTEM_STATUSES:
        raise InvalidInput(f"unknown status {status!r}", field="status")
    if people_assisted is not None and (people_assisted < 0 or people_assisted > 100_000):
        raise InvalidInput("people assisted must be a whole number from 0", field="people_assisted")
    if (lat is None) != (lon is None):
        raise InvalidInput("give both latitude and longitude, or neither", field="position")
    if lat is not None and lon is not None and not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise InvalidInput("position out of range (latitude -90..90, longitude -180..180)", field="position")
    if len(note) > 2000:
        raise InvalidInput("note is too long (2,000 characters at most)", field="note")

    def attempt(pipe) -> Task:
        pipe.watch(keys.task(task_id), keys.resources, keys.audit_head)
        task = get_task(pipe, keys, task_id, department)
        if status not in TASK_NEXT[task.status]:
            raise Conflict(f"a task that is {task.status.replace('_', ' ')} cannot become "
                               f"{status.replace('_', ' ')}", field="status")
        upd = StatusUpdate(status=status, note=note, people_assisted=people_assisted, lat=lat, lon=lon, by=user, at=now)
        task.status = status
        task.updated_at = now
        task.history.append(upd)
        if added:
            if len(task.people) + len(added) > MAX_PEOPLE:
                raise InvalidInput(f"a task holds at most {MAX_PEOPLE} people", field="people")
            task.people.extend(added)
        if task.flagged and status != "need_support":
            task.flagged = None  # the department answered
        if status == "need_support":
            task.flagged = "needs support"
        res_status = TASK_RESOURCE_STATUS.get(status)
        updated: dict[str, str] = {}
        if res_status is not None:
            for rid, raw in zip(task.resource_ids, pipe.hmget(keys.resources, task.resource_ids), strict=True):
                if raw is not None:
                    res = Resource.model_validate_json(raw)
                    res.status = res_status
                    if lat is not None and lon is not None and status in ("on_scene", "need_support"):
                        res.lat, res.lon = lat, lon
                    updated[rid] = res.model_dump_json()
        watch = _verify_watch(pipe, keys, task, now) if status == "completed" else None
        head = pipe.get(keys.audit_head)
        pipe.multi()
        pipe.set(keys.task(task.id), task.model_dump_json())
        if updated:
            pipe.hset(keys.resources, mapping=updated)
        if watch is not None:  # the engine checks that the work worked (command/engine/verification.py)
            pipe.hset(keys.verify_watch, task.id, orjson.dumps(watch))
        pipe.xadd(keys.status_stream, {"task_id": task.id, "department": department, "status": status,
                                       "dispatch_id": task.dispatch_id})
        audit.append(pipe, keys, head.decode() if head else None, who=user, action="task_status", at=now,
                     details={"task": task.id, "department": department, "status": status, "note": note,
                              "people_assisted": people_assisted, "lat": lat, "lon": lon,
                              **({"people_named": len(added)} if added else {})})
        pipe.execute()
        return task

    return _retrying(r, attempt)


def _verify_watch(pipe, keys: Keys, task: Task, now: int) -> dict[str, Any] | None:
    """What the engine needs to watch a task completed on a station's alert: the alert's level then,
    and the station's newest readings (the baseline a rise is measured from). None for other alerts."""
    raw = pipe.get(keys.alert(task.fingerprint))
    alert = orjson.loads(raw) if raw else None
    if alert is None or alert.get("subject_type") != "station":
        return None
    latest = pipe.hget(keys.latest, task.subject)
    level = alert.get("level") if alert.get("status") == "open" else task.level
    return {"task": task.id, "fingerprint": task.fingerprint, "rule": task.rule, "subject": task.subject,
            "level": level or task.level, "completed_at": now, "latest": orjson.loads(latest) if latest else {}}


def apply_verdict(task: Task, verdict: Verdict) -> Task:
    """The task after the verification's verdict (`command.ops.verify`): reopened (its status, a flag
    for the department and the command centre, the reason in its history) or verified (a history entry;
    it stays completed). `at` is the time of what decided it."""
    at = verdict.at if verdict.at is not None else task.updated_at
    task.history.append(StatusUpdate(status=verdict.outcome, note=verdict.reason, by=VERIFIER, at=at))
    task.updated_at = max(task.updated_at, at)
    if verdict.outcome == REOPENED:
        task.status = REOPENED
        task.flagged = verdict.reason
    return task


def queue_verdict(pipe, keys: Keys, task: Task, head: str | None) -> str:
    """Queue on `pipe` (in MULTI, with the caller's other writes) the task as `apply_verdict` left it,
    its status event and audit entry; the new audit head (for the next verdict of the same transaction)."""
    last = task.history[-1]
    pipe.set(keys.task(task.id), task.model_dump_json())
    pipe.xadd(keys.status_stream, {"task_id": task.id, "department": task.department, "status": last.status,
                                   "dispatch_id": task.dispatch_id})
    return audit.append(pipe, keys, head, who=VERIFIER, action=f"task_{last.status}", at=last.at,
                        details={"task": task.id, "department": task.department, "reason": last.note})


def flag_unacknowledged(r: redis.Redis, keys: Keys, task_id: str, now: int) -> bool:
    """Flag a task still `assigned` past its acknowledgement deadline. True if it was flagged now."""
    def attempt(pipe) -> bool:
        pipe.watch(keys.task(task_id), keys.audit_head)
        task = get_task(pipe, keys, task_id, None)
        if task.status != "assigned" or task.flagged or task.ack_deadline is None or now < task.ack_deadline:
            pipe.unwatch()
            return False
        minutes = round((now - task.created_at) / 60_000)
        task.flagged = f"no acknowledgement after {minutes} min"
        head = pipe.get(keys.audit_head)
        pipe.multi()
        pipe.set(keys.task(task.id), task.model_dump_json())
        pipe.xadd(keys.status_stream, {"task_id": task.id, "department": task.department, "status": "flagged",
                                       "dispatch_id": task.dispatch_id})
        audit.append(pipe, keys, head.decode() if head else None, who="system", action="escalate_unacknowledged",
                     at=now, details={"task": task.id, "department": task.department, "reason": task.flagged})
        pipe.execute()
        return True

    return _retrying(r, attempt)


# ---- operator actions on alerts -------------------------------------------------------------------
ALERT_ACTIONS = ("acknowledge", "escalate", "resolve")


def alert_action(r: redis.Redis, keys: Keys, *, fingerprint: str, action: str, user: str, now: int,
                 comment: str = "") -> dict[str, Any]:
    """Acknowledge (never silences: the alert keeps rising and showing), escalate, or resolve with a note."""
    if action not in ALERT_ACTIONS:
        raise InvalidInput(f"unknown action {action!r}")
    if action == "resolve" and not comment.strip():
        raise InvalidInput("say why the alert is resolved", field="comment", key="err.resolve_why")
    if len(comment) > 2000:
        raise InvalidInput("comment is too long (2,000 characters at most)", field="comment", key="err.comment_long")
    alert = _load_alert(r, keys, fingerprint)
    notes_key = keys.alert_notes(fingerprint)

    def attempt(pipe) -> dict[str, Any]:
        pipe.watch(notes_key, keys.audit_head)
        notes = {k.decode(): v.decode() for k, v in pipe.hgetall(notes_key).items()}
        if action == "acknowledge":
            notes.update(acknowledged_by=user, acknowledged_at=str(now), ack_comment=comment)
        elif action == "escalate":
            notes.update(escalated_by=user, escalated_at=str(now), escalate_note=comment,
                         escalations=str(int(notes.get("escalations", "0")) + 1))
        else:
            # resolved at this level: if the data take it higher, it comes back to the queue
            notes.update(resolved_by=user, resolved_at=str(now), resolve_note=comment, resolved_level=alert["level"])
        head = pipe.get(keys.audit_head)
        pipe.multi()
        pipe.hset(notes_key, mapping=notes)
        pipe.xadd(keys.alerts_stream, {"event": f"operator:{action}", "fingerprint": fingerprint, "at": now,
                                       "by": user, "alert": orjson.dumps(alert)}, maxlen=200_000, approximate=True)
        audit.append(pipe, keys, head.decode() if head else None, who=user, action=f"alert_{action}", at=now,
                     details={"alert": fingerprint, "level": alert["level"], "comment": comment})
        pipe.execute()
        return notes

    return _retrying(r, attempt)


def alert_notes(r: redis.Redis, keys: Keys, fingerprints: list[str]) -> dict[str, dict[str, str]]:
    with r.pipeline(transaction=False) as pipe:
        for fp in fingerprints:
            pipe.hgetall(keys.alert_notes(fp))
        res = pipe.execute()
    return {fp: {k.decode(): v.decode() for k, v in n.items()} for fp, n in zip(fingerprints, res, strict=True)}
