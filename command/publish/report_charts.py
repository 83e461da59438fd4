"""The after-action report's pictures, as plotly figures (plain dicts) built from the report itself, so
the file written by a replay and the page of a live drill draw the same charts:

- `timeline`: alerts open by level, every task's status over time (a lane per task, grouped by
  department) and the injects, on one time axis;
- `chain`: per alert, breach -> alert -> dispatch -> on scene, in minutes from the first breach;
- `hydro:<station>`: the hydrograph of every station that alerted, with its thresholds and its alerts.

Labels carry both languages ("open alerts · 未解除预警"), as the rest of the report does.
"""

from __future__ import annotations

from functools import cache
from typing import Any

LEVEL_ZH = {"yellow": "黄色", "orange": "橙色", "red": "红色"}
LEVEL_COLOURS = {"yellow": "#f2c200", "orange": "#ff8c00", "red": "#d62728"}
STATUS_ZH = {"assigned": "已派遣", "acknowledged": "已确认", "en_route": "在途", "on_scene": "到场",
             "need_support": "请求支援", "completed": "已完成", "reopened": "已重开", "verified": "已核实",
             "unverified": "未核实"}
STATUS_COLOURS = {"assigned": "#adb5bd", "acknowledged": "#74c0fc", "en_route": "#339af0", "on_scene": "#2f9e44",
                  "need_support": "#e8590c", "completed": "#868e96", "reopened": "#c2255c"}
_SPARE = "#8c6bb1"


@cache
def plotly_js() -> str:
    """plotly.js from the installed package, inlined once per report: the file opens with no network."""
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def local(iso: str | None) -> str | None:
    """An ISO 8601 time with its offset as plotly reads it: the wall time it names, offset dropped (every
    time of one report is in the same zone)."""
    return None if iso is None else iso[:19].replace("T", " ")


def _label(lv: str) -> str:
    return f"{lv} · {LEVEL_ZH[lv]}" if lv in LEVEL_ZH else lv


def alerts_open_by_level(timeline: list[dict[str, Any]], levels: list[str]) -> tuple[list[str], dict[str, list[int]]]:
    """From the timeline's alert events: at each event, how many alerts were open at each level."""
    current: dict[str, str] = {}
    times: list[str] = []
    counts: dict[str, list[int]] = {lv: [] for lv in levels}
    for e in timeline:
        if e["event"] in ("open", "raise", "lower"):
            current[e["fingerprint"]] = e["level"]
        elif e["event"] == "resolve":
            current.pop(e["fingerprint"], None)
        else:
            continue
        times.append(e["time"])
        for lv in levels:
            counts[lv].append(sum(v == lv for v in current.values()))
    return times, counts


def timeline_chart(report: dict[str, Any]) -> dict[str, Any]:
    levels = list(report["alerts_by_level"]) or list(LEVEL_ZH)
    times, counts = alerts_open_by_level(report["timeline"], levels)
    end = local(report.get("end"))
    data: list[dict[str, Any]] = []
    x = [local(t) for t in times] + ([end] if end else [])
    for lv in levels:
        ys = counts[lv] + ([counts[lv][-1]] if end and counts[lv] else [])
        data.append({"type": "scatter", "mode": "lines", "x": x, "y": ys, "name": _label(lv), "stackgroup": "alerts",
                     "line": {"shape": "hv", "width": 0.5, "color": LEVEL_COLOURS.get(lv, _SPARE)}, "yaxis": "y"})
    tasks = sorted(report["task_timeline"], key=lambda t: (t["department"], t["segments"][0]["from"] if t["segments"] else ""))
    lanes: list[str] = []
    for t in tasks:  # one lane per task; a second task on the same subject (a higher level) gets its own
        lane = base = f"{t['department']} · {t['subject']}"
        n = 1
        while lane in lanes:
            n += 1
            lane = f"{base} #{n}"
        lanes.append(lane)
    seen_status: set[str] = set()
    for t, lane in zip(tasks, lanes, strict=True):
        for seg in t["segments"]:
            st = seg["status"]
            data.append({"type": "scatter", "mode": "lines", "x": [local(seg["from"]), local(seg["to"])], "y": [lane, lane],
                         "yaxis": "y2", "line": {"color": STATUS_COLOURS.get(st, _SPARE), "width": 12},
                         "name": f"{st} · {STATUS_ZH.get(st, st)}", "legendgroup": st, "showlegend": st not in seen_status,
                         "hovertemplate": f"{lane}<br>{st} · {STATUS_ZH.get(st, st)}<br>%{{x}}<extra></extra>"})
            seen_status.add(st)
        if t["completed_at"]:
            data.append({"type": "scatter", "mode": "markers", "x": [local(t["completed_at"])], "y": [lane], "yaxis": "y2",
                         "marker": {"symbol": "star", "size": 11, "color": "#1d2430"}, "legendgroup": "completed",
                         "name": "completed · 已完成", "showlegend": "completed" not in seen_status,
                         "hovertemplate": f"{lane}<br>completed · 已完成<br>%{{x}}<extra></extra>"})
            seen_status.add("completed")
    injects = [e for e in report["timeline"] if e["event"].startswith("inject:")]
    shapes: list[dict[str, Any]] = []
    for e in injects:
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": local(e["time"]), "x1": local(e["time"]),
                       "y0": 0, "y1": 1, "line": {"color": "#6741d9", "width": 1, "dash": "dot"}})
    if injects:
        data.append({"type": "scatter", "mode": "markers", "x": [local(e["time"]) for e in injects],
                     "y": [0] * len(injects), "yaxis": "y", "name": "inject · 注入事件",
                     "marker": {"symbol": "triangle-up", "size": 12, "color": "#6741d9"},
                     "hovertext": [f"{e['event'][7:]}: {e.get('detail') or ''}"[:200] for e in injects],
                     "hoverinfo": "text+x"})
    lane_px = max(22 * len(lanes), 40)
    top_px = 200
    height = top_px + lane_px + 120
    frac = lane_px / (top_px + lane_px)
    return {"data": data, "layout": {
        "height": height, "margin": {"l": 200, "r": 20, "t": 30, "b": 50}, "hovermode": "closest",
        "legend": {"orientation": "h", "y": 1.06, "x": 0}, "shapes": shapes,
        "xaxis": {"type": "date", "anchor": "y2", "title": {"text": f"time 时间 ({report.get('timezone') or 'UTC'})"}},
        "yaxis": {"domain": [min(frac + 0.06, 0.7), 1], "title": {"text": "open alerts · 未解除预警"}, "rangemode": "tozero"},
        "yaxis2": {"domain": [0, frac], "type": "category", "categoryorder": "array", "categoryarray": list(reversed(lanes)),
                   "title": {"text": "tasks · 任务"}, "automargin": True},
        "plot_bgcolor": "#fbfbfc"}}


_CHAIN = (("breach_to_alert_min", "breach → alert · 超警→预警", "#adb5bd"),
          ("alert_to_dispatch_min", "alert → dispatch · 预警→派遣", "#339af0"),
          ("dispatch_to_on_scene_min", "dispatch → on scene · 派遣→到场", "#2f9e44"))


def chain_chart(report: dict[str, Any]) -> dict[str, Any]:
    rows = report["response_chain"]
    labels = [f"{c['subject']} · {c['rule']} · {c['level']} ({local(c['opened_at'])[5:16]})" for c in rows]  # type: ignore[index]
    data = []
    for key, name, colour in _CHAIN:
        data.append({"type": "bar", "orientation": "h", "y": labels, "x": [c[key] if c[key] is not None else 0 for c in rows],
                     "name": name, "marker": {"color": colour},
                     "hovertemplate": "%{y}<br>" + name + ": %{x:.0f} min<extra></extra>"})
    return {"data": data, "layout": {
        "barmode": "stack", "height": 120 + 20 * max(len(rows), 1), "margin": {"l": 300, "r": 20, "t": 30, "b": 50},
        "legend": {"orientation": "h", "y": 1.02, "x": 0, "yanchor": "bottom"},
        "xaxis": {"title": {"text": "minutes from the first breach · 自首次超警起（分钟）"}, "rangemode": "tozero"},
        "yaxis": {"type": "category", "categoryorder": "array", "categoryarray": list(reversed(labels)), "automargin": True},
        "plot_bgcolor": "#fbfbfc"}}


def hydrograph_chart(h: dict[str, Any], tz: str | None) -> dict[str, Any]:
    xs = [local(t) for t in h["times"]]
    x0, x1 = (xs[0], xs[-1]) if xs else (None, None)
    data: list[dict[str, Any]] = [{"type": "scatter", "mode": "lines", "x": xs, "y": h["values"],
                                   "name": "observed · 实测", "line": {"color": "#1d3557", "width": 1.8},
                                   "hovertemplate": f"%{{x}}<br>%{{y:.3f}} {h['unit']}<extra></extra>"}]
    for lv, thr in h["thresholds"].items():
        data.append({"type": "scatter", "mode": "lines", "x": [x0, x1], "y": [thr, thr], "hoverinfo": "name",
                     "name": f"{_label(lv)} {thr:.2f} {h['unit']}",
                     "line": {"color": LEVEL_COLOURS.get(lv, _SPARE), "dash": "dash", "width": 1.2}})
    shapes = [{"type": "rect", "xref": "x", "yref": "paper", "x0": local(a["opened_at"]), "x1": local(a["resolved_at"]) or x1,
               "y0": 0, "y1": 1, "fillcolor": LEVEL_COLOURS.get(a["level"], _SPARE), "opacity": 0.12, "line": {"width": 0},
               "layer": "below"} for a in h["alerts"]]
    return {"data": data, "layout": {
        "height": 300, "margin": {"l": 60, "r": 20, "t": 30, "b": 45}, "shapes": shapes,
        "legend": {"orientation": "h", "y": 1.12, "x": 0},
        "xaxis": {"type": "date", "title": {"text": f"time 时间 ({tz or 'UTC'})"}},
        "yaxis": {"title": {"text": f"{h['kind']} ({h['unit']})"}}, "plot_bgcolor": "#fbfbfc"}}


def charts(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every chart of the report by its id (`timeline`, `chain`, `hydro:<station>`)."""
    out = {"timeline": timeline_chart(report)}
    if report.get("response_chain"):
        out["chain"] = chain_chart(report)
    for h in report.get("hydrographs", []):
        out[f"hydro:{h['station']}"] = hydrograph_chart(h, report.get("timezone"))
    return out
