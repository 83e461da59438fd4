"""Exercise objectives: what the planner set out to test, scored against what the run did.

Pure: no Redis, no files, no clock. The scenario loader parses `objectives:` from scenario.yaml into
`Objective`s (command/scenarios/load.py); the after-action report gathers the run's alerts, tasks (with
their history) and readings and calls `score_objectives` (command/publish/report.py). Each objective
comes out **met** (True), **not met** (False) or **not tested** (None: the run never gave it a chance),
with the evidence: which alert, which task, the times. docs/drills.md explains them to planners.

Kinds:
- `dispatch_within` (`rule`, optional `subject`, `within`): every alert of the rule (on that subject)
  is dispatched within `within` of its opening;
- `acknowledge_within` (`department`, `within`): every task of the department is acknowledged within
  `within` of its assignment;
- `on_scene_before_level` (`resource_type`, `subject`, `level`): a unit of that type is on scene at the
  station before the station's first reading at or above that level;
- `no_unacknowledged`: no task is still unacknowledged at the end of the run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from command.models import Task
from command.timeutil import humanize_ms, to_iso

OBJECTIVE_KINDS = ("dispatch_within", "acknowledge_within", "on_scene_before_level", "no_unacknowledged")
# kind -> (required fields, optional fields), besides id, kind, text and text_zh
OBJECTIVE_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "dispatch_within": (("rule", "within"), ("subject",)),
    "acknowledge_within": (("department", "within"), ()),
    "on_scene_before_level": (("resource_type", "subject", "level"), ()),
    "no_unacknowledged": ((), ()),
}
# A status report that answers the task (any of them implies it was seen); a verification's
# `reopened` entry is the system's, not the department's, and answers nothing.
ANSWERS = frozenset({"acknowledged", "en_route", "on_scene", "need_support", "completed"})
VERIFICATION = "verification"  # who a task reopened by verification is recorded as (command/ops/verify.py)


@dataclass(frozen=True)
class Objective:
    id: str
    kind: str
    text: str
    text_zh: str = ""
    rule: str | None = None
    subject: str | None = None
    within_ms: int | None = None
    department: str | None = None
    resource_type: str | None = None
    level: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The objective as scenario.yaml writes it (durations in ms under `within_ms`)."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Run:
    """What a run did, as the scoring reads it. Times are epoch ms on the run's clock.

    - `alerts`: each with `fingerprint`, `rule`, `subject`, `opened_at`;
    - `tasks`: every task with its history;
    - `readings`: station id -> [(t, value in SI)] in time order;
    - `thresholds`: station id -> {level: bound in SI};
    - `resource_types`: resource id -> its type;
    - `end`: the run's clock when it is scored (the end of a replay, "now" in a live drill).
    """

    alerts: Sequence[Mapping[str, Any]]
    tasks: Sequence[Task]
    readings: Mapping[str, Sequence[tuple[int, float]]]
    thresholds: Mapping[str, Mapping[str, float]]
    resource_types: Mapping[str, str]
    end: int
    tz: str | None = None


def answered_at(task: Task) -> int | None:
    """When the department first answered the task (acknowledged or any later status), or None."""
    return min((h.at for h in task.history if h.status in ANSWERS and h.by != VERIFICATION), default=None)


def first_status_at(task: Task, status: str) -> int | None:
    return min((h.at for h in task.history if h.status == status), default=None)


def reopened_entries(tasks: Sequence[Task]) -> list[tuple[Task, int, str]]:
    """Each time verification reopened a task: (task, when, the reason)."""
    return [(t, h.at, h.note or "") for t in tasks for h in t.history
            if h.status == "reopened" and h.by == VERIFICATION]


def first_at_or_above(series: Sequence[tuple[int, float]], bound: float) -> int | None:
    return next((t for t, v in series if v >= bound), None)


def _result(obj: Objective, met: bool | None, evidence: list[dict[str, Any]], en: str, zh: str) -> dict[str, Any]:
    return {"id": obj.id, "kind": obj.kind, "text": obj.text, "text_zh": obj.text_zh or obj.text,
            "met": met, "evidence": evidence, "summary": en, "summary_zh": zh}


def _verdict(oks: Sequence[bool | None]) -> bool | None:
    """Every judged case fine: met; one not: not met; nothing judged: not tested."""
    judged = [ok for ok in oks if ok is not None]
    if not judged:
        return None
    return all(judged)


def _dispatch_within(obj: Objective, run: Run) -> dict[str, Any]:
    assert obj.within_ms is not None
    alerts = [a for a in run.alerts if a["rule"] == obj.rule and (obj.subject is None or a["subject"] == obj.subject)]
    first_dispatch: dict[str, Task] = {}
    for t in sorted(run.tasks, key=lambda t: t.created_at):
        first_dispatch.setdefault(t.fingerprint, t)
    evidence, oks = [], []
    for a in sorted(alerts, key=lambda a: a["opened_at"]):
        opened, deadline = int(a["opened_at"]), int(a["opened_at"]) + obj.within_ms
        task = first_dispatch.get(a["fingerprint"])
        at = task.created_at if task is not None else None
        if at is not None:
            ok: bool | None = at <= deadline
        else:  # never dispatched: late once the deadline passed, untested if the run ended before it
            ok = False if deadline <= run.end else None
        oks.append(ok)
        evidence.append({"alert": a["fingerprint"], "rule": a["rule"], "subject": a["subject"],
                         "opened_at": to_iso(opened, run.tz), "deadline": to_iso(deadline, run.tz),
                         "dispatched_at": to_iso(at, run.tz), "task": task.id if task is not None else None,
                         "after": humanize_ms(at - opened) if at is not None else None, "ok": ok})
    met = _verdict(oks)
    where = f"{obj.rule}" + (f" on {obj.subject}" if obj.subject else "")
    limit = humanize_ms(obj.within_ms)
    if not alerts:
        return _result(obj, None, evidence, f"no alert of {where} opened", f"未出现 {where} 预警")
    late = sum(ok is False for ok in oks)
    on_time = sum(ok is True for ok in oks)
    return _result(obj, met, evidence,
                   f"{on_time} of {len(alerts)} alerts of {where} dispatched within {limit}"
                   + (f", {late} late or never" if late else ""),
                   f"{where} 预警 {len(alerts)} 条，{on_time} 条在 {limit} 内派遣" + (f"，{late} 条超时或未派遣" if late else ""))


def _acknowledge_within(obj: Objective, run: Run) -> dict[str, Any]:
    assert obj.within_ms is not None
    tasks = sorted((t for t in run.tasks if t.department == obj.department), key=lambda t: (t.created_at, t.id))
    evidence, oks = [], []
    for t in tasks:
        ack, deadline = answered_at(t), t.created_at + obj.within_ms
        ok: bool | None = (ack <= deadline) if ack is not None else (False if deadline <= run.end else None)
        oks.append(ok)
        evidence.append({"task": t.id, "department": t.department, "subject": t.subject, "rule": t.rule,
                         "assigned_at": to_iso(t.created_at, run.tz), "deadline": to_iso(deadline, run.tz),
                         "acknowledged_at": to_iso(ack, run.tz),
                         "after": humanize_ms(ack - t.created_at) if ack is not None else None, "ok": ok})
    limit = humanize_ms(obj.within_ms)
    if not tasks:
        return _result(obj, None, evidence, f"no task for {obj.department}", f"{obj.department} 未接到任务")
    on_time = sum(ok is True for ok in oks)
    return _result(obj, _verdict(oks), evidence,
                   f"{on_time} of {len(tasks)} tasks of {obj.department} acknowledged within {limit}",
                   f"{obj.department} 任务 {len(tasks)} 项，{on_time} 项在 {limit} 内确认")


def _on_scene_before_level(obj: Objective, run: Run) -> dict[str, Any]:
    assert obj.subject is not None and obj.level is not None
    bound = run.thresholds.get(obj.subject, {}).get(obj.level)
    reached = first_at_or_above(run.readings.get(obj.subject, ()), bound) if bound is not None else None
    arrivals = []  # (on scene at, task, resources of the type)
    for t in run.tasks:
        units = [rid for rid in t.resource_ids if run.resource_types.get(rid) == obj.resource_type]
        on_scene = first_status_at(t, "on_scene")
        if t.subject == obj.subject and units and on_scene is not None:
            arrivals.append((on_scene, t, units))
    arrivals.sort(key=lambda x: x[0])
    first = arrivals[0] if arrivals else None
    ev: dict[str, Any] = {"subject": obj.subject, "level": obj.level, "threshold": bound,
                          "level_reached_at": to_iso(reached, run.tz),
                          "on_scene_at": to_iso(first[0], run.tz) if first else None,
                          "task": first[1].id if first else None, "resources": first[2] if first else []}
    what = f"{obj.resource_type} at {obj.subject}"
    if reached is None:  # the water never came: the readiness was not put to the test
        ev["ok"] = None
        return _result(obj, None, [ev], f"{obj.subject} never reached {obj.level}",
                       f"{obj.subject} 未达到{obj.level}级")
    ok = first is not None and first[0] < reached
    ev["ok"] = ok
    if first is None:
        return _result(obj, False, [ev], f"no {what} on scene; {obj.level} reached at {ev['level_reached_at']}",
                       f"{obj.subject} 无 {obj.resource_type} 到场；{ev['level_reached_at']} 达到{obj.level}级")
    gap = humanize_ms(abs(reached - first[0]))
    return _result(obj, ok, [ev],
                   f"{what} on scene {gap} {'before' if ok else 'after'} it reached {obj.level}",
                   f"{what} 在达到{obj.level}级{'前' if ok else '后'} {gap} 到场")


def _no_unacknowledged(obj: Objective, run: Run) -> dict[str, Any]:
    open_tasks = sorted((t for t in run.tasks if answered_at(t) is None), key=lambda t: (t.created_at, t.id))
    evidence = [{"task": t.id, "department": t.department, "subject": t.subject, "rule": t.rule,
                 "assigned_at": to_iso(t.created_at, run.tz), "ok": False} for t in open_tasks]
    if not run.tasks:
        return _result(obj, None, evidence, "nothing was dispatched", "未派遣任何任务")
    if open_tasks:
        return _result(obj, False, evidence, f"{len(open_tasks)} of {len(run.tasks)} tasks never acknowledged",
                       f"{len(run.tasks)} 项任务中 {len(open_tasks)} 项始终未确认")
    return _result(obj, True, evidence, f"all {len(run.tasks)} tasks acknowledged",
                   f"全部 {len(run.tasks)} 项任务均已确认")


_SCORERS = {"dispatch_within": _dispatch_within, "acknowledge_within": _acknowledge_within,
            "on_scene_before_level": _on_scene_before_level, "no_unacknowledged": _no_unacknowledged}


def score_objectives(objectives: Sequence[Objective], run: Run) -> list[dict[str, Any]]:
    """Each objective's verdict, evidence and a one-line summary in English and Chinese, in the
    scenario's order."""
    return [_SCORERS[o.kind](o, run) for o in objectives]


def overall(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The overall figure: how many met, not met and not tested, and the share met of those tested
    (None when none was tested)."""
    met = sum(r["met"] is True for r in results)
    not_met = sum(r["met"] is False for r in results)
    return {"total": len(results), "met": met, "not_met": not_met, "not_tested": len(results) - met - not_met,
            "share_met": round(met / (met + not_met), 3) if met + not_met else None}


__all__ = ["ANSWERS", "OBJECTIVE_FIELDS", "OBJECTIVE_KINDS", "Objective", "Run", "VERIFICATION", "answered_at",
           "first_at_or_above", "first_status_at", "overall", "reopened_entries", "score_objectives"]
