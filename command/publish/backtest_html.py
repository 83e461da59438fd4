"""The backtest's pictures: the rule sets side by side (a table per level, the best figure of each row
marked) and, per station, the observed series with its thresholds, the truth and each rule set's
warnings as bands. Self-contained HTML, bilingual (English and 简体中文). See docs/drills.md."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd

from command.scenarios.load import Scenario
from command.scoring.runs import RuleSetRun
from command.scoring.truth import Truth
from command.timeutil import to_datetime

MAX_CHART_POINTS = 1500  # per station: longer series keep each bucket's lowest and highest reading

# What "best" means for each figure of a level's table: the highest or the lowest.
METRICS = (  # key, English, 中文, better
    ("hits", "hits", "命中", max), ("misses", "misses", "漏报", min), ("false_alarms", "false alarms", "空报", min),
    ("pod", "POD (probability of detection)", "命中率", max),
    ("far", "FAR (false alarm ratio)", "空报率", min),
    ("csi", "CSI (critical success index)", "临界成功指数", max),
    ("lead_median_min", "median lead time (min)", "提前量中位数（分钟）", max),
    ("lead_min_min", "shortest lead time (min)", "最短提前量（分钟）", max),
    ("lead_max_min", "longest lead time (min)", "最长提前量（分钟）", max),
)
LEVEL_ZH = {"yellow": "黄色", "orange": "橙色", "red": "红色"}
LEVEL_COLOURS = {"yellow": "#f2c200", "orange": "#ff8c00", "red": "#d62728"}
_SPARE_COLOURS = ("#8c6bb1", "#2b8cbe", "#41ab5d", "#525252")


def best_marks(values: Sequence[Any], better: Callable) -> list[bool]:
    """Which of a row's values is the best (all tied best are marked; nothing when all are equal or
    there is only one figure to compare)."""
    known = [v for v in values if v is not None]
    if len(known) < 2 or len(set(known)) == 1:
        return [False] * len(values)
    top = better(known)
    return [v is not None and v == top for v in values]


def level_tables(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per level, the rows of the side-by-side table: each figure of every rule set, best ones marked."""
    tables = []
    for lv in report["levels"]:
        rows = []
        for key, en, zh, better in METRICS:
            vals = [rs["levels"][lv][key] for rs in report["rule_sets"]]
            rows.append({"key": key, "en": en, "zh": zh,
                         "cells": [{"value": fmt_figure(key, v), "best": b} for v, b in zip(vals, best_marks(vals, better),
                                                                                      strict=True)]})
        tables.append({"level": lv, "zh": LEVEL_ZH.get(lv, lv), "events": report["events"][lv], "rows": rows})
    return tables


def fmt_figure(key: str, v: Any) -> str:
    if v is None:
        return "—"
    if key in ("pod", "far", "csi"):
        return f"{v:.2f}"
    if key.startswith("lead_"):
        return f"{v:+.0f}"
    return str(v)


def _colour(level: str, i: int) -> str:
    return LEVEL_COLOURS.get(level, _SPARE_COLOURS[i % len(_SPARE_COLOURS)])


def _local(ms: Sequence[int] | np.ndarray, tz: str | None) -> list[str]:
    """Times as plotly reads them: local wall time of the scenario's zone, without the offset."""
    if not len(ms):
        return []
    idx = pd.to_datetime(np.asarray(ms, dtype=np.int64), unit="ms", utc=True)
    if tz:
        idx = idx.tz_convert(tz)
    return list(idx.strftime("%Y-%m-%d %H:%M:%S"))


def _hm(ms: int, tz: str | None) -> str:
    return to_datetime(ms, tz).strftime("%m-%d %H:%M")


def _thin(t: np.ndarray, v: np.ndarray, limit: int = MAX_CHART_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most about `limit` points: each bucket keeps its lowest and highest reading (in time order)."""
    if len(t) <= limit:
        return t, v
    buckets = np.array_split(np.arange(len(t)), limit // 2)
    keep = sorted({int(b[np.argmin(v[b])]) for b in buckets} | {int(b[np.argmax(v[b])]) for b in buckets})
    return t[keep], v[keep]


def _lead_text(lead_ms: int | None) -> str:
    if lead_ms is None:
        return "miss · 漏报"
    return f"hit · 命中, lead 提前量 {lead_ms / 60_000:+.0f} min"


def station_chart(sc: Scenario, sid: str, series: tuple[np.ndarray, np.ndarray] | None, truth: Truth,
                  runs: Sequence[RuleSetRun]) -> dict[str, Any]:
    """A plotly figure (plain dict): the observed series and thresholds on top; below, one lane for the
    truth and one per rule set, each showing its periods at every level as coloured bands (false
    alarms hatched). Hovering a band says what it is."""
    st = sc.stations[sid]
    tz = sc.timezone
    levels = list(sc.ruleset.levels)
    t0, t1 = sc.start, sc.end
    x0, x1 = _local([t0, t1], tz)
    data: list[dict[str, Any]] = []
    if series is not None and len(series[0]):
        t, v = _thin(*series)
        data.append({"type": "scatter", "mode": "lines", "x": _local(t, tz), "y": np.round(v, 4).tolist(),
                     "name": "observed · 实测", "line": {"color": "#1d3557", "width": 1.8},
                     "hovertemplate": f"%{{x}}<br>%{{y:.3f}} {st.unit}<extra></extra>", "yaxis": "y"})
    for i, lv in enumerate(levels):
        thr = st.thresholds.get(lv)
        if thr is None:
            continue
        data.append({"type": "scatter", "mode": "lines", "x": [x0, x1], "y": [thr, thr], "yaxis": "y",
                     "name": f"{lv} {LEVEL_ZH.get(lv, '')} {thr:.2f} {st.unit}",
                     "line": {"color": _colour(lv, i), "dash": "dash", "width": 1.2}, "hoverinfo": "name"})
    truth_lane = "truth · 实况"
    lanes = [truth_lane] + [run.spec.name for run in runs]
    # every lane is drawn, even an empty one ("no event", "never warned"): an invisible point on each
    data.append({"type": "scatter", "mode": "markers", "x": [x0] * len(lanes), "y": lanes, "yaxis": "y2",
                 "marker": {"opacity": 0}, "hoverinfo": "skip", "showlegend": False})
    for i, lv in enumerate(levels):  # lowest level first: the higher ones are drawn over it
        events = truth.get(sid, {}).get(lv, [])
        if events:
            outcomes = [[e for e in run.score.detail[sid][lv].events] for run in runs]
            texts = []
            for k, (s, e) in enumerate(events):
                lines = [f"truth 实况 · {lv} {LEVEL_ZH.get(lv, '')}", f"{_hm(s, tz)} → {_hm(e, tz)}"]
                lines += [f"{run.spec.name}: {_lead_text(outcomes[j][k].lead_ms)}" for j, run in enumerate(runs)]
                texts.append("<br>".join(lines))
            data.append(_band(truth_lane, events, lv, i, texts, [False] * len(events), tz))
        for run in runs:
            outs = run.score.detail[sid][lv].warnings
            if not outs:
                continue
            texts = [f"{run.spec.name} · {lv} {LEVEL_ZH.get(lv, '')} warning 预警<br>"
                     f"{_hm(w.period[0], tz)} → {_hm(w.period[1], tz)}<br>"
                     + ("false alarm · 空报" if w.false_alarm else "on an event · 对应实况") for w in outs]
            data.append(_band(run.spec.name, [w.period for w in outs], lv, i, texts,
                              [w.false_alarm for w in outs], tz))
    lane_h = 24 * len(lanes)
    plot_h = 240
    height = plot_h + lane_h + 110
    lane_frac = lane_h / (plot_h + lane_h)
    return {
        "data": data,
        "layout": {
            "height": height, "margin": {"l": 110, "r": 20, "t": 30, "b": 50}, "barmode": "overlay",
            "hovermode": "closest", "legend": {"orientation": "h", "y": 1.08, "x": 0},
            "xaxis": {"type": "date", "anchor": "y2", "range": [x0, x1], "title": {"text": f"time 时间 ({tz or 'UTC'})"}},
            "yaxis": {"domain": [min(lane_frac + 0.08, 0.6), 1], "title": {"text": f"{st.kind} ({st.unit})"}},
            "yaxis2": {"domain": [0, lane_frac], "type": "category", "categoryorder": "array",
                       "categoryarray": list(reversed(lanes)), "fixedrange": True},
            "plot_bgcolor": "#fbfbfc",
        },
    }


def _band(lane: str, periods: Sequence[tuple[int, int]], level: str, i: int, texts: list[str],
          hatched: list[bool], tz: str | None) -> dict[str, Any]:
    return {"type": "bar", "orientation": "h", "yaxis": "y2", "y": [lane] * len(periods),
            "base": _local([p[0] for p in periods], tz), "x": [p[1] - p[0] for p in periods],
            "width": 0.7, "showlegend": False, "hovertext": texts, "hoverinfo": "text",
            "marker": {"color": _colour(level, i), "line": {"width": 0},
                       "pattern": {"shape": ["x" if h else "" for h in hatched], "fillmode": "overlay",
                                   "fgcolor": "#222", "fgopacity": 0.7, "size": 6}}}


def station_charts(sc: Scenario, series: dict[str, tuple[np.ndarray, np.ndarray]], truth: Truth,
                   runs: Sequence[RuleSetRun]) -> list[dict[str, Any]]:
    """A chart and a small table for every scored station with an event or a warning (quiet stations
    are only listed); stations with events first."""
    levels = list(sc.ruleset.levels)
    out = []
    for sid in sorted(truth):
        n_events = sum(len(truth[sid].get(lv, ())) for lv in levels)
        n_warn = sum(len(run.score.detail[sid][lv].warnings) for run in runs for lv in levels)
        st = sc.stations[sid]
        entry: dict[str, Any] = {"id": sid, "name": st.name, "name_zh": st.name_zh, "zone": st.zone, "events": n_events,
                 "warnings": n_warn, "chart": None,
                 "rows": [{"name": run.spec.name, "levels": [run.score.stations[sid][lv] for lv in levels]}
                          for run in runs]}
        if n_events or n_warn:
            entry["chart"] = station_chart(sc, sid, series.get(sid), truth, runs)
        out.append(entry)
    out.sort(key=lambda e: (e["events"] == 0, e["warnings"] == 0, e["id"]))
    return out


def render_html(report: dict[str, Any], stations: list[dict[str, Any]]) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape
    from plotly.offline import get_plotlyjs

    env = Environment(loader=PackageLoader("command.publish", "templates"), autoescape=select_autoescape(["html"]))
    charts = {s["id"]: s["chart"] for s in stations if s["chart"] is not None}
    charts_json = orjson.dumps(charts, option=orjson.OPT_SERIALIZE_NUMPY).decode().replace("</", "<\\/")
    return env.get_template("backtest.html").render(
        report=report, tables=level_tables(report), stations=stations, charts_json=charts_json,
        plotly_js=get_plotlyjs(), level_zh=LEVEL_ZH, level_colours=LEVEL_COLOURS,
        lead_window=duration_label(report["lead_window_min"]))


def duration_label(minutes: float) -> str:
    """360 -> '6 h', 90 -> '1 h 30 min', 45 -> '45 min'."""
    h, m = divmod(round(minutes), 60)
    return " ".join(p for p in (f"{h} h" if h else "", f"{m} min" if m or not h else "") if p)
