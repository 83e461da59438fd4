"""Scripted actions: what the command centre and departments do during a scenario, from `actions:` in
scenario.yaml, applied by the replay through the same command functions the dashboard uses
(`command.ops.dispatch`), audited as done by `scripted`.

```yaml
actions:
  - {at: 2h10m, type: dispatch, rule: incident-in-risk-zone, subject: I4}
  - {at: 2h20m, type: task_status, rule: incident-in-risk-zone, subject: I4, department: fire_rescue,
     status: en_route, note: Boat 1 on its way}
```

- `dispatch`: dispatch the alert's current recommendation (the read model's, as the operator's
  one click does);
- `task_status`: a department's status report on its task for that alert (`acknowledged`,
  `en_route`, `on_scene`, `need_support`, `completed`), with an optional `note`.

The feed applies each at its `at`, after the engine has caught up with everything before it. An
action that cannot be applied then (no open alert for the rule and subject, nothing to dispatch, no
such task, a status that may not follow) is quarantined in the dead-letter stream with its reason,
as an inject that cannot be applied is. `replay --out` writes `tasks.jsonl` (`write_tasks`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis

from command.errors import CommandError
from command.keys import Keys
from command.models import TASK_STATUSES, TASK_SYSTEM_STATUSES, Task
from command.scenarios.reference import ScenarioError
from command.timeutil import parse_duration, to_iso

SCRIPTED = "scripted"  # who a scripted action is audited as
ACTION_TYPES = ("dispatch", "task_status")
ACTION_STATUSES = tuple(s for s in TASK_STATUSES if s not in TASK_SYSTEM_STATUSES)
_NEED = {"dispatch": ("rule", "subject"), "task_status": ("rule", "subject", "department", "status")}
_KNOWN = {"dispatch": {"rule", "subject", "note"}, "task_status": {"rule", "subject", "department", "status", "note"}}


@dataclass
class Action:
    at: int  # epoch ms
    type: str
    data: dict[str, Any]
    where: str = ""  # "scenario.yaml: action #2", for messages


def parse_actions(raw: Any, path: Path, start: int) -> list[Action]:
    """The `actions:` list, validated (a ScenarioError names the file and the action), in time order."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ScenarioError(f"{path}: `actions` must be a list of {{at, type, ...}}")
    out: list[Action] = []
    for i, item in enumerate(raw, 1):
        where = f"{path}: action #{i}"
        if not isinstance(item, dict):
            raise ScenarioError(f"{where}: expected a mapping, got {item!r}")
        kind = item.get("type")
        if kind not in ACTION_TYPES:
            raise ScenarioError(f"{where}: `type` must be one of {', '.join(ACTION_TYPES)}, got {kind!r}")
        where = f"{where} ({kind})"
        try:
            at = start + parse_duration(item.get("at", ""))
        except ValueError as exc:
            raise ScenarioError(f"{where}: `at`: {exc}") from None
        data = {k: v for k, v in item.items() if k not in ("at", "type")}
        missing = [k for k in _NEED[kind] if data.get(k) in (None, "")]
        if missing:
            raise ScenarioError(f"{where}: missing {', '.join(missing)}")
        unknown = sorted(set(data) - _KNOWN[kind])
        if unknown:
            raise ScenarioError(f"{where}: unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
        if kind == "task_status" and data["status"] not in ACTION_STATUSES:
            raise ScenarioError(f"{where}: `status` must be one of {', '.join(ACTION_STATUSES)}, got {data['status']!r}")
        data = {k: str(v) for k, v in data.items()}
        out.append(Action(at=at, type=kind, data=data, where=where))
    out.sort(key=lambda a: a.at)
    return out


def _alerts_for(r: redis.Redis, keys: Keys, rule: str, subject: str, open_only: bool) -> list[dict[str, Any]]:
    """The alerts of this rule and subject (open ones, or any), newest first."""
    fps = r.zrange(keys.alerts_open if open_only else keys.alerts_index, 0, -1)
    raws = r.mget([keys.alert(fp.decode()) for fp in fps]) if fps else []
    found = [a for a in (orjson.loads(x) for x in raws if x) if a.get("rule") == rule and a.get("subject") == subject]
    return sorted(found, key=lambda a: int(a.get("opened_at") or 0), reverse=True)


def _task_for(r: redis.Redis, keys: Keys, rule: str, subject: str, department: str) -> Task | None:
    """The newest task of this department for an alert of this rule and subject."""
    ids = [d.decode() for d in r.zrange(keys.dispatches_index, 0, -1)]
    tasks = [Task.model_validate_json(x) for x in r.mget([keys.task(f"{d}-{department}") for d in ids]) if x] if ids else []
    tasks = [t for t in tasks if t.rule == rule and t.subject == subject]
    return max(tasks, key=lambda t: t.created_at) if tasks else None


def apply_action(r: redis.Redis, keys: Keys, action: Action, now: int) -> str | None:
    """Apply one action at `now` through the dashboard's commands; None, or why it could not be."""
    from command.ops.dispatch import AlreadyDispatched, dispatch, update_task
    from command.publish.views import current_recommendations

    d = action.data
    try:
        if action.type == "dispatch":
            alerts = _alerts_for(r, keys, d["rule"], d["subject"], open_only=True)
            if not alerts:
                return f"no open alert of {d['rule']} for {d['subject']}"
            a = alerts[0]
            rec = current_recommendations(r, keys, [a]).get(a["fingerprint"]) or {}
            ids = [i["resource_id"] for i in rec.get("items", [])]
            if not ids:
                return f"nothing recommended for {d['subject']} ({d['rule']}) to dispatch"
            res = dispatch(r, keys, fingerprint=a["fingerprint"], level=a["level"], resource_ids=ids,
                           operator=SCRIPTED, now=now, note=d.get("note", ""))
            if isinstance(res, AlreadyDispatched):
                return f"{d['subject']} ({d['rule']}) was already dispatched by {res.by}"
            return None
        task = _task_for(r, keys, d["rule"], d["subject"], d["department"])
        if task is None:
            return f"no task of {d['department']} for {d['subject']} ({d['rule']})"
        update_task(r, keys, task_id=task.id, department=d["department"], user=SCRIPTED, status=d["status"],
                    now=now, note=d.get("note", ""))
        return None
    except CommandError as exc:
        return exc.message


def collect_tasks(r: redis.Redis, keys: Keys, tz: str | None) -> list[dict[str, Any]]:
    """Every task of the namespace, oldest first, as written to tasks.jsonl."""
    ids = [d.decode() for d in r.zrange(keys.dispatches_index, 0, -1)]
    out: list[dict[str, Any]] = []
    for raw in (r.mget([keys.dispatch(i) for i in ids]) if ids else []):
        if raw is None:
            continue
        task_ids = orjson.loads(raw).get("task_ids", [])
        for x in (r.mget([keys.task(t) for t in task_ids]) if task_ids else []):
            if x is None:
                continue
            t = Task.model_validate_json(x)
            out.append({"task_id": t.id, "rule": t.rule, "subject": t.subject, "level": t.level,
                        "department": t.department, "resource_ids": t.resource_ids, "status": t.status,
                        "created_at": to_iso(t.created_at, tz),
                        "history": [{"status": h.status, "at": to_iso(h.at, tz), "by": h.by, "note": h.note or ""}
                                    for h in t.history]})
    out.sort(key=lambda x: (x["created_at"], x["task_id"]))
    return out


def write_tasks(r: redis.Redis, keys: Keys, out: Path) -> int:
    """tasks.jsonl in `out`: one line per task, with its final status and its history. The count."""
    tz_raw = r.hget(keys.meta, "timezone")
    tz = tz_raw.decode() if tz_raw else None
    tasks = collect_tasks(r, keys, tz)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "tasks.jsonl").open("w", encoding="utf-8") as fh:
        for t in tasks:
            fh.write(json.dumps(t, ensure_ascii=False) + "\n")
    return len(tasks)


__all__ = ["ACTION_TYPES", "Action", "SCRIPTED", "apply_action", "collect_tasks", "parse_actions", "write_tasks"]
