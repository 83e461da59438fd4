"""Level stepping, the trend, and the projected time to the next level ("red in about 2 h 10 min").

Level semantics, shared by threshold, rate_of_rise, accumulation and forecast_accumulation rules:
- a value *reaches* a level when it is >= the level's bound;
- it *takes* the level once it has stayed there for `for` (pending until then);
- a level that is held clears only when the value falls below `bound - clear_margin` (hysteresis);
- the alert's level is the highest level held; the alert resolves when none is held.

Pure: time comes from the input. The words of `describe_eta` come from the translation table.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from command import i18n
from command.rules.parse import RuleSet
from command.rules.state import LevelState
from command.rules.windows import HOUR_MS, point_time
from command.timeutil import humanize_ms

TREND_MIN_SPAN_MS = 15 * 60_000  # a trend over less than this is noise, not a trend

i18n.add({
    "rules.outlook.pending": {"en": "{level} pending", "zh": "已达{level}，等待确认"},
    "rules.outlook.eta": {"en": "{level} in about {duration}", "zh": "约 {duration} 后达到{level}"},
})


def step_levels(st: LevelState, bounds: dict[str, float], value: float, t: int, for_ms: int,
                margin: float) -> None:
    """Advance pending/held levels for one value. Pure, in place."""
    since, held = st.since, st.held
    for lv, b in bounds.items():
        if lv in held:
            if value < b - margin:
                held.remove(lv)
                since.pop(lv, None)
        elif value >= b:
            start = since.setdefault(lv, t)
            if t - start >= for_ms:
                held.append(lv)
        else:
            since.pop(lv, None)


def trend(vh: list, t: int) -> float | None:
    """Rate of change per hour over the last hour (or the span there is, if at least 15 minutes).

    `vh` holds (t, value, ...) points, oldest first; the reference is the newest point at or before
    t - 1 h, or the oldest point when there is none."""
    if len(vh) < 2:
        return None
    last = vh[-1]
    t1, v1 = last[0], last[1]
    cut = t - HOUR_MS
    ref = vh[0]
    if ref[0] <= cut and vh[1][0] <= cut:
        ref = vh[bisect_right(vh, cut, key=point_time) - 1]
    t0, v0 = ref[0], ref[1]
    span = t1 - t0
    if span < TREND_MIN_SPAN_MS:
        return None
    return (v1 - v0) / (span / HOUR_MS)


def trend_and_eta(a: dict[str, Any], rs: RuleSet, points: list, bounds: dict[str, float], value: float,
                  t: int) -> None:
    """Set the open alert `a`'s `trend_per_h`, `next_level` and `next_level_eta` (when the value would
    reach the next level's bound at this pace) from the points `points`. In place."""
    rate = trend(points, t)
    a["trend_per_h"] = None if rate is None else round(rate, 6)
    if rate is not None and a["trend_per_h"] <= 0:
        rate = None  # float noise (e.g. 45.400000000000006 - 45.4) is no rise: no ETA ~1e21 ms away
    nxt = None
    rank = rs.level_rank(a["level"])
    for lv in rs.levels[rank + 1:]:
        if lv in bounds:
            nxt = lv
            break
    a["next_level"] = nxt
    eta = None
    if nxt is not None and rate is not None and rate > 0:
        gap = bounds[nxt] - value
        eta = t if gap <= 0 else t + int(gap / rate * HOUR_MS)
    a["next_level_eta"] = eta


def describe_eta(alert: dict[str, Any], lang: str | None = None) -> str | None:
    """'red in about 2 h 10 min' for an alert that is rising toward its next level ('red pending' when
    the value is over the bound and only the `for` wait remains); None when it is not rising."""
    eta, nxt, now = alert.get("next_level_eta"), alert.get("next_level"), alert.get("updated_at")
    if eta is None or nxt is None or now is None:
        return None
    key = f"level.{nxt}"
    level = i18n.t(key, lang) if key in i18n.TEXT else nxt  # a level of the rules' own naming stays as it is
    if eta <= now:
        return i18n.t("rules.outlook.pending", lang, level=level)
    return i18n.t("rules.outlook.eta", lang, level=level, duration=humanize_ms(eta - now))
