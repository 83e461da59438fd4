"""Reading a namespace's results back out: alerts, recommendations, quarantine, after-action report.

The report and the exports take a `viewer` and show what the classification clears them for
(command/trust/classification.py): incidents' reporters and tasks' people assisted are masked for a
viewer not cleared secret; secret values shown are audited once per report. Exports default to an
internal viewer (`classification.INTERNAL`): no personal data leaves in files unless asked for.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from statistics import median
from typing import Any

import orjson
import redis
from jinja2 import Environment, PackageLoader, select_autoescape

from command.keys import Keys
from command.rules import describe_eta
from command.streams import read_stream
from command.timeutil import humanize_ms, to_iso
from command.trust.classification import INTERNAL, Redactor, Viewer


def _meta(r: redis.Redis, keys: Keys) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in r.hgetall(keys.meta).items()}


def collect_alerts(r: redis.Redis, keys: Keys) -> list[dict[str, Any]]:
    """Every alert of the namespace, in opening order."""
    fps = [fp.decode() for fp in r.zrange(keys.alerts_index, 0, -1)]
    out = []
    for i in range(0, len(fps), 1000):
        chunk = fps[i:i + 1000]
        for raw in r.mget([keys.alert(fp) for fp in chunk]):
            if raw is not None:
                out.append(orjson.loads(raw))
    out.sort(key=lambda a: (a["opened_at"], a["rule"], a["subject"]))
    return out


def collect_recommendations(r: redis.Redis, keys: Keys) -> list[dict[str, Any]]:
    return [orjson.loads(f[b"recommendation"]) for _, f in read_stream(r, keys.recommendations_stream)]


def collect_quarantine(r: redis.Redis, keys: Keys) -> list[dict[str, Any]]:
    out = []
    for _, f in read_stream(r, keys.deadletter):
        rec = {"source": f[b"source"].decode(), "reason": f[b"reason"].decode(),
               "row": orjson.loads(f[b"record"])}
        if b"line" in f:
            rec["line"] = int(f[b"line"])
        if b"at" in f:
            rec["at"] = f[b"at"].decode()
        out.append(rec)
    return out


def alert_record(a: dict[str, Any], tz: str | None) -> dict[str, Any]:
    """The public shape of an alert in alerts.jsonl: `level` is the highest level it reached."""
    return {
        "fingerprint": a["fingerprint"], "rule": a["rule"], "rule_kind": a["rule_kind"],
        "subject": a["subject"], "subject_type": a["subject_type"],
        "level": a["peak_level"], "last_level": a["level"], "status": a["status"],
        "opened_at": to_iso(a["opened_at"], tz), "resolved_at": to_iso(a["resolved_at"], tz),
        "first_breach_at": to_iso(a["first_breach_at"], tz),
        "peak_value": a["peak_value"], "unit": a["unit"], "zone": a["zone"], "lon": a["lon"], "lat": a["lat"],
        "trend_per_h": a.get("trend_per_h"), "next_level": a.get("next_level"),
        "next_level_eta": to_iso(a.get("next_level_eta"), tz), "outlook": describe_eta(a),
        "message": a.get("message", ""),
    }


def collect_incidents(r: redis.Redis, keys: Keys, red: Redactor, tz: str | None) -> list[dict[str, Any]]:
    """Every incident of the namespace as `red`'s viewer may see it, in order of report."""
    out = []
    for raw in r.hvals(keys.incidents) if red.allowed("incidents") else []:
        rec = orjson.loads(raw)
        row = {k: rec.get(k) for k in ("id", "category", "severity", "status", "zone", "description",
                                       "reported_by", "reporter")}
        row["t"] = rec.get("time") or 0
        row["time"] = to_iso(rec.get("time"), tz)
        out.append(red.record("incidents", row, rec.get("id", "")) or {})
    out.sort(key=lambda i: (i["t"], str(i["id"])))
    return out


def after_action(r: redis.Redis, keys: Keys, alerts: list[dict], recs: list[dict],
                 quarantine: list[dict], viewer: Viewer = INTERNAL) -> dict[str, Any]:
    red = Redactor(viewer)
    alerts = red.records("alerts", alerts, "fingerprint")
    quarantine = [{**q, "row": (red.record("deadletter", {"record": q.get("row")}, q.get("line", "")) or {})
                   .get("record")} for q in quarantine] if red.allowed("deadletter") else []
    recs = recs if red.allowed("recommendations") else []
    meta = _meta(r, keys)
    tz = meta.get("timezone") or None
    levels_order = []
    raw_rules = r.get(keys.rules)
    if raw_rules:
        levels_order = orjson.loads(raw_rules).get("levels", [])
    by_level = Counter(a["peak_level"] for a in alerts)
    by_rule: dict[str, Counter] = defaultdict(Counter)
    delays: dict[str, list[int]] = defaultdict(list)
    for a in alerts:
        by_rule[a["rule"]][a["peak_level"]] += 1
        delays[a["rule"]].append(a["opened_at"] - a["first_breach_at"])
    timeline = []
    for _, f in read_stream(r, keys.alerts_stream):
        a = orjson.loads(f[b"alert"])
        t = int(f[b"at"]) if b"at" in f else (a["updated_at"] if f[b"event"] != b"open" else a["opened_at"])
        timeline.append({"time": to_iso(t, tz), "t": t, "event": f[b"event"].decode(), "rule": a["rule"],
                         "subject": a["subject"], "level": a["level"], "value": a["value"], "unit": a["unit"],
                         "fingerprint": a["fingerprint"]})
    for eid, f in read_stream(r, keys.events) if red.allowed("events") else []:
        at = int(f[b"at"])
        event = red.record("events", {"type": f[b"type"].decode(), "data": orjson.loads(f[b"data"])}, eid) or {}
        timeline.append({"time": to_iso(at, tz), "t": at, "event": "inject:" + event.get("type", ""),
                         "rule": "", "subject": "", "level": "", "value": None, "unit": "",
                         "detail": event.get("data")})
    timeline.sort(key=lambda e: e["t"])
    dispatches = dispatch_timings(r, keys, tz, red)
    incidents = collect_incidents(r, keys, red, tz)
    red.audit(r, keys, "after_action")
    return {
        "scenario": meta.get("scenario", keys.ns), "namespace": keys.ns, "mode": meta.get("mode", ""),
        "start": to_iso(int(meta["start"]), tz) if meta.get("start") else None, "timezone": tz,
        "totals": {"alerts": len(alerts), "open_at_end": sum(a["status"] == "open" for a in alerts),
                   "recommendations": len(recs), "quarantined": len(quarantine)},
        "alerts_by_level": {lv: by_level.get(lv, 0) for lv in (levels_order or sorted(by_level))},
        "alerts_by_rule": {rule: dict(c) for rule, c in sorted(by_rule.items())},
        "breach_to_alert": {
            rule: {"count": len(v), "median_s": median(v) / 1000, "max_s": max(v) / 1000,
                   "median": humanize_ms(int(median(v))), "max": humanize_ms(max(v))}
            for rule, v in sorted(delays.items())
        },
        "timeline": timeline,
        "dispatches": dispatches["tasks"],
        "departments": dispatches["departments"],
        "incidents": incidents,
        "quarantine": quarantine,
        "alerts": [alert_record(a, tz) for a in alerts],
    }


def dispatch_timings(r: redis.Redis, keys: Keys, tz: str | None, red: Redactor | None = None) -> dict[str, Any]:
    """Per task: how long the department took to acknowledge, reach the scene, complete, and the people
    it assisted (as `red`'s viewer may see them); per department, the medians. Times are from the
    dispatch, on the namespace's clock."""
    from command.ops.dispatch import dispatch_tasks, recent_dispatches

    red = red or Redactor(INTERNAL)
    per_dept: defaultdict[str, defaultdict[str, list[int]]]  # department -> label -> ms after the dispatch
    tasks, per_dept = [], defaultdict(lambda: defaultdict(list))
    for d in reversed(recent_dispatches(r, keys, 10_000) if red.allowed("tasks") else []):
        for task in (t for t in (red.model("tasks", t) for t in dispatch_tasks(r, keys, d)) if t):
            first: dict[str, int] = {}
            for h in task.history:
                first.setdefault(h.status, h.at)
            ack = min((first[s] for s in first), default=None)
            row: dict[str, Any] = {"dispatch_id": d.id, "subject": d.subject, "level": d.level, "department": task.department,
                   "dispatched_at": to_iso(d.created_at, tz), "operator": d.operator, "status": task.status,
                   "flagged": task.flagged, "resources": task.resource_ids,
                   "people": [p.model_dump() for p in task.people]}
            for label, at in (("acknowledged", ack), ("on_scene", first.get("on_scene")),
                              ("completed", first.get("completed"))):
                row[f"{label}_after"] = None if at is None else humanize_ms(at - d.created_at)
                if at is not None:
                    per_dept[task.department][label].append(at - d.created_at)
            tasks.append(row)
    departments = {dept: {label: humanize_ms(int(median(v))) for label, v in labels.items()}
                   | {"tasks": sum(1 for t in tasks if t["department"] == dept)}
                   for dept, labels in sorted(per_dept.items())}
    for t in tasks:
        departments.setdefault(t["department"], {"tasks": sum(1 for x in tasks if x["department"] == t["department"])})
    return {"tasks": tasks, "departments": departments}


_env = Environment(loader=PackageLoader("command.publish", "templates"), autoescape=select_autoescape(["html"]))


def render_html(report: dict[str, Any]) -> str:
    return _env.get_template("after_action.html").render(report=report)


def write_outputs(r: redis.Redis, keys: Keys, out: Path, viewer: Viewer = INTERNAL) -> dict[str, Any]:
    """Write alerts.jsonl, recommendations.jsonl, quarantine.jsonl and the after-action report, with
    what `viewer` is cleared for (default internal: personal data masked)."""
    out.mkdir(parents=True, exist_ok=True)
    tz = _meta(r, keys).get("timezone") or None
    red = Redactor(viewer)
    alerts = red.records("alerts", collect_alerts(r, keys), "fingerprint")
    recs = collect_recommendations(r, keys) if red.allowed("recommendations") else []
    quarantine = collect_quarantine(r, keys) if red.allowed("deadletter") else []
    with (out / "alerts.jsonl").open("w", encoding="utf-8") as fh:
        for a in alerts:
            fh.write(json.dumps(alert_record(a, tz), ensure_ascii=False) + "\n")
    with (out / "recommendations.jsonl").open("w", encoding="utf-8") as fh:
        for rec in recs:
            rec = dict(rec)
            rec["resource_ids"] = [i["resource_id"] for i in rec["items"]]
            rec["created_at"] = to_iso(rec["created_at"], tz)
            if "deadline" in rec:  # dispatch by deadline (docs/dispatch.md): its times as ISO 8601 too
                rec["deadline"] = to_iso(rec["deadline"], tz)
                rec["items"] = [{**i, **{f: to_iso(i.get(f), tz) for f in ("arrive_at", "leave_by", "deadline")}}
                                for i in rec["items"]]
                rec["held"] = [{**h, "for_deadline": to_iso(h.get("for_deadline"), tz)} for h in rec.get("held", [])]
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    with (out / "quarantine.jsonl").open("w", encoding="utf-8") as fh:
        for q in quarantine:
            fh.write(json.dumps(q, ensure_ascii=False) + "\n")
    report = after_action(r, keys, alerts, recs, quarantine, viewer)
    (out / "after_action.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    (out / "after_action.html").write_text(render_html(report), encoding="utf-8")
    from command.publish.cap import (  # interop: every alert as CAP 1.2, and an Atom feed of them
        atom_feed,
        write_cap,
    )

    write_cap(r, keys, out / "cap", viewer=viewer)
    (out / "alerts.atom").write_bytes(atom_feed(r, keys, viewer=viewer))
    return report
