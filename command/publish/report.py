"""Reading a namespace's results back out: alerts, recommendations, quarantine, after-action report.

The report and the exports take a `viewer` and show what the classification clears them for
(command/trust/classification.py): incidents' reporters and tasks' people assisted are masked for a
viewer not cleared secret; secret values shown are audited once per report. Exports default to an
internal viewer (`classification.INTERNAL`): no personal data leaves in files unless asked for.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from statistics import median
from typing import Any

import orjson
import redis
from jinja2 import Environment, PackageLoader, select_autoescape

from command.clock import namespace_now
from command.keys import Keys
from command.models import Resource, Station, Task
from command.rules import describe_eta
from command.scoring.objectives import (
    Run,
    answered_at,
    first_status_at,
    overall,
    reopened_entries,
    score_objectives,
)
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
    exercise = exercise_sections(r, keys, meta, alerts, timeline, red, tz)
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
        **exercise,
    }


# ---- objectives, figures and the data behind the report's charts (docs/drills.md) ---------------------
def run_tasks(r: redis.Redis, keys: Keys, red: Redactor) -> list[Task]:
    """Every task of the namespace `red`'s viewer may see, with its history, oldest first."""
    from command.ops.dispatch import dispatch_tasks, recent_dispatches

    if not red.allowed("tasks"):
        return []
    tasks = [t for d in recent_dispatches(r, keys, 10_000) for t in (red.model("tasks", x) for x in dispatch_tasks(r, keys, d))
             if t]
    return sorted(tasks, key=lambda t: (t.created_at, t.id))


def observed(r: redis.Redis, keys: Keys, meta: dict[str, str], stations: dict[str, Station], wanted: set[str],
             until: int | None) -> dict[str, list[tuple[int, float]]]:
    """The readings (SI) of the `wanted` stations up to `until`, oldest first: the scenario's
    readings.csv and the reading injects applied (the input streams are trimmed once the engine has
    read them), else, for a namespace without a scenario folder, each station's recent series."""
    from command.scenarios.load import ScenarioError, load_readings
    from command.scenarios.reference import read_yaml, resolve
    from command.units import UnitError, factor_for

    out: dict[str, list[tuple[int, float]]] = {sid: [] for sid in wanted}
    folder = Path(meta["folder"]) if meta.get("folder") else None
    if not wanted:
        return out
    if folder is None or not (folder / "scenario.yaml").exists():
        from command.publish.views import station_series

        return {sid: station_series(r, keys, sid, count=10_000) for sid in wanted}
    try:
        doc = read_yaml(folder / "scenario.yaml")
        df, _q, _d = load_readings(resolve(folder, doc if isinstance(doc, dict) else {}, "readings", "readings.csv"),
                                   stations)
    except ScenarioError:
        return out
    df = df[df["station_id"].isin(wanted)]
    for sid, g in df.groupby("station_id"):
        kind = stations[str(sid)].kind
        g = g[g["kind"] == kind]
        out[str(sid)] = list(zip(g["t"].astype(int).tolist(), g["value"].astype(float).tolist(), strict=True))
    for _, f in read_stream(r, keys.events):
        if f.get(b"type") != b"reading":
            continue
        d = orjson.loads(f[b"data"])
        sid = str(d.get("station_id"))
        if sid in wanted and d.get("kind") == stations[sid].kind:
            try:
                out[sid].append((int(f[b"at"]), float(d["value"]) * factor_for(str(d["unit"]), stations[sid].kind)[0]))
            except (ValueError, TypeError, UnitError, KeyError):
                continue  # an inject the replay refused: it is in the quarantine, not in the data
    for sid, pts in out.items():
        out[sid] = sorted(p for p in pts if until is None or p[0] <= until)
    return out


def _minutes(a: int | None, b: int | None) -> float | None:
    return None if a is None or b is None else round((b - a) / 60_000, 1)


_SETTLED = frozenset({"verified", "unverified"})  # verification's word on a completion that stands


def _task_segments(t: Task, end: int, tz: str | None) -> list[dict[str, Any]]:
    """The task's statuses as periods: assigned until the first report, each report until the next,
    the last until the end of the run; a completion ends the task unless something (verification)
    reopens it later."""
    marks = [("assigned", t.created_at)] + [(h.status, h.at) for h in t.history]
    segs = []
    for i, (status, at) in enumerate(marks):
        # done: completed, and nothing after but verification's confirmation
        if status == "completed" and all(s in _SETTLED for s, _ in marks[i + 1:]):
            break
        until = marks[i + 1][1] if i + 1 < len(marks) else max(end, at)
        segs.append({"status": status, "from": to_iso(at, tz), "to": to_iso(until, tz)})
    return segs


def exercise_sections(r: redis.Redis, keys: Keys, meta: dict[str, str], alerts: list[dict], timeline: list[dict],
                      red: Redactor, tz: str | None) -> dict[str, Any]:
    """The report's exercise sections: the objectives scored with their evidence and an overall figure,
    the tasks reopened by verification, the per-department figures, and the data of the charts (each
    alert's breach -> alert -> dispatch -> on scene, each task's statuses, the hydrograph of every
    station that alerted with its thresholds)."""
    from command.scenarios.load import ScenarioError, read_objectives

    stations = {k.decode(): Station.model_validate_json(v) for k, v in r.hgetall(keys.stations).items()}
    resources = [Resource.model_validate_json(v) for v in r.hvals(keys.resources)]
    tasks = run_tasks(r, keys, red)
    end = namespace_now(r, keys) or max([a["opened_at"] for a in alerts] + [t.updated_at for t in tasks] + [0])
    objectives, objectives_error = [], None
    if not red.allowed("tasks"):  # scored without the tasks, every objective would read as failed
        objectives_error = "the objectives are scored from the tasks, which this viewer is not cleared for"
    elif meta.get("folder"):
        try:
            objectives = read_objectives(meta["folder"])
        except ScenarioError as exc:
            objectives_error = exc.message
    alerted = sorted({a["subject"] for a in alerts if a["subject"] in stations and stations[a["subject"]].thresholds})
    wanted = set(alerted) | {o.subject for o in objectives if o.kind == "on_scene_before_level" and o.subject
                             and o.subject in stations}
    readings = observed(r, keys, meta, stations, wanted, end)
    run = Run(alerts=alerts, tasks=tasks, readings=readings, thresholds={s: st.thresholds for s, st in stations.items()},
              resource_types={x.id: x.type for x in resources}, end=end, tz=tz)
    results = score_objectives(objectives, run)

    by_alert: dict[str, list[Task]] = defaultdict(list)
    for t in tasks:
        by_alert[t.fingerprint].append(t)
    chain = []
    for a in alerts:
        ts = by_alert.get(a["fingerprint"], [])
        dispatched = min((t.created_at for t in ts), default=None)
        on_scene = min((x for x in (first_status_at(t, "on_scene") for t in ts) if x is not None), default=None)
        chain.append({"fingerprint": a["fingerprint"], "rule": a["rule"], "subject": a["subject"], "level": a["peak_level"],
                      "breach_at": to_iso(a["first_breach_at"], tz), "opened_at": to_iso(a["opened_at"], tz),
                      "dispatched_at": to_iso(dispatched, tz), "on_scene_at": to_iso(on_scene, tz),
                      "breach_to_alert_min": _minutes(a["first_breach_at"], a["opened_at"]),
                      "alert_to_dispatch_min": _minutes(a["opened_at"], dispatched),
                      "dispatch_to_on_scene_min": _minutes(dispatched, on_scene)})

    reopened = [{"task": t.id, "department": t.department, "subject": t.subject, "rule": t.rule,
                 "at": to_iso(at, tz), "reason": why} for t, at, why in reopened_entries(tasks)]
    figures: dict[str, dict[str, Any]] = {}
    for dept in sorted({t.department for t in tasks}):
        ts = [t for t in tasks if t.department == dept]

        def med(label: str, ts: list[Task] = ts) -> float | None:
            at = [(t.created_at, answered_at(t) if label == "acknowledged" else first_status_at(t, label)) for t in ts]
            v = [b - a for a, b in at if b is not None]
            return round(median(v) / 60_000, 1) if v else None

        figures[dept] = {"tasks": len(ts), "acknowledged": sum(answered_at(t) is not None for t in ts),
                         "unacknowledged": sum(answered_at(t) is None for t in ts),
                         "on_scene": sum(first_status_at(t, "on_scene") is not None for t in ts),
                         "completed": sum(first_status_at(t, "completed") is not None for t in ts),
                         "reopened": sum(x["department"] == dept for x in reopened),
                         "median_acknowledge_min": med("acknowledged"), "median_on_scene_min": med("on_scene"),
                         "median_completed_min": med("completed")}
    hydrographs = []
    for sid in alerted:
        st = stations[sid]
        pts = readings.get(sid, [])
        hydrographs.append({"station": sid, "name": st.name, "name_zh": st.name_zh, "kind": st.kind, "unit": st.unit,
                            "thresholds": st.thresholds, "times": [to_iso(t, tz) for t, _ in pts],
                            "values": [round(v, 4) for _, v in pts],
                            "alerts": [{"rule": a["rule"], "level": a["peak_level"], "opened_at": to_iso(a["opened_at"], tz),
                                        "resolved_at": to_iso(a["resolved_at"], tz)}
                                       for a in alerts if a["subject"] == sid]})
    return {
        "end": to_iso(end, tz),
        "objectives": results,
        "objectives_overall": overall(results),
        "objectives_error": objectives_error,
        "reopened": {"count": len(reopened), "tasks": reopened},
        "department_figures": figures,
        "response_chain": chain,
        "task_timeline": [{"task": t.id, "department": t.department, "subject": t.subject, "rule": t.rule,
                           "status": t.status, "segments": _task_segments(t, end, tz),
                           "completed_at": to_iso(first_status_at(t, "completed"), tz)} for t in tasks],
        "hydrographs": hydrographs,
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
    from command.publish.report_charts import LEVEL_ZH, STATUS_ZH, charts, plotly_js

    figs = charts(report)
    return _env.get_template("after_action.html").render(
        report=report, plotly_js=plotly_js(), level_zh=LEVEL_ZH, status_zh=STATUS_ZH,
        # "<" only ever occurs inside JSON strings: as \u003c no text can end or restart the script
        charts_json=orjson.dumps(figs).decode().replace("<", "\\u003c").replace(">", "\\u003e"), chart_ids=list(figs))


_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def inline_script_hashes(html: str) -> list[str]:
    """The CSP sources (`'sha256-...'`) of the report's inline scripts (plotly.js and the code that draws
    the charts): a page serving the report under a Content-Security-Policy without 'unsafe-inline' (the
    web app's, layouts/web_headers.py) adds exactly these to its script-src, or the charts stay blank."""
    return [f"'sha256-{base64.b64encode(hashlib.sha256(m.encode()).digest()).decode()}'"
            for m in _INLINE_SCRIPT.findall(html)]


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
