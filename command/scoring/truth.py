"""What really happened: when each station was at or above each level.

Two sources, one shape (``{station: {level: [periods]}}``, every level present, each level's periods
the maximal periods at that level *or higher*):

- `parse_truth`: a scenario's ``truth.csv`` (``subject,level,start,end``), when the exercise planner
  knows better than the gauges (a survey after the flood, a gauge that fell silent at the crest).
  It is the whole truth: a station without a row had no event;
- `derive_truth`: from each station's own thresholds and its observed values. A level is reached
  from the first reading at or above its threshold until the first reading below it; a level still
  reached at the last reading lasts until `horizon` (the end of the scenario). A station at red is
  also at orange and yellow; a station without a threshold for a level is at that level only when
  it is at a higher one.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from command.errors import InvalidInput
from command.scoring.periods import Period, merge
from command.timeutil import parse_time

TRUTH_HEADER = ["subject", "level", "start", "end"]
_OFFSET_RE = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})\Z")  # `\Z`, never `$`: that lets a trailing newline through

Truth = dict[str, dict[str, list[Period]]]


class TruthError(InvalidInput):
    """A truth.csv that cannot be used. The message names the file and the line."""


def _time(raw: str, column: str) -> int:
    if not _OFFSET_RE.search(raw):
        raise ValueError(f"{column}: time {raw!r} has no UTC offset (write e.g. 2026-07-14T08:00:00+08:00)")
    try:
        return parse_time(raw)
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"{column}: invalid time {raw!r} (ISO 8601 with an offset, "
                         "e.g. 2026-07-14T08:00:00+08:00)") from None


def parse_truth(text: str, source: str, stations: Collection[str], levels: Sequence[str], horizon: int) -> Truth:
    """The events of a truth.csv's `text` for every station of `stations` (none for a station without a
    row). `source` names the file in errors (``<source>:<line>: ...``); an empty `end` means the level
    was still reached at the end of the scenario (`horizon`). Raises TruthError."""
    rank = {lv: i for i, lv in enumerate(levels)}
    rows = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header = next(rows, None)
    if not header or not any(h.strip() for h in header):
        raise TruthError(f"{source}:1: empty file, expected the header {','.join(TRUTH_HEADER)}")
    if [h.strip() for h in header] != TRUTH_HEADER:
        raise TruthError(f"{source}:1: bad header {','.join(h.strip() for h in header)!r} "
                         f"(expected {','.join(TRUTH_HEADER)})")
    raw: dict[str, list[tuple[int, Period]]] = {}
    for row in rows:
        line = rows.line_num
        if not any(c.strip() for c in row):
            continue
        try:
            if len(row) != len(TRUTH_HEADER):
                raise ValueError(f"expected {len(TRUTH_HEADER)} columns ({','.join(TRUTH_HEADER)}), got {len(row)}")
            subject, level, start_raw, end_raw = (c.strip() for c in row)
            if not subject:
                raise ValueError("subject: empty (a station id)")
            if subject not in stations:
                raise ValueError(f"subject: unknown station {subject!r}")
            if level not in rank:
                raise ValueError(f"level: must be one of {', '.join(levels)}, got {level!r}")
            if not start_raw:
                raise ValueError("start: empty (ISO 8601 with an offset)")
            start = _time(start_raw, "start")
            end = _time(end_raw, "end") if end_raw else max(horizon, start + 1)
            if end <= start:
                raise ValueError(f"end {end_raw!r} is not after start {start_raw!r}")
        except ValueError as exc:
            raise TruthError(f"{source}:{line}: {exc}") from None
        raw.setdefault(subject, []).append((rank[level], (start, end)))
    out: Truth = {}
    for sid in stations:
        got = raw.get(sid, [])
        out[sid] = {lv: merge(p for r, p in got if r >= i) for i, lv in enumerate(levels)}
    return out


def derive_truth(series: Mapping[str, tuple[ArrayLike, ArrayLike]],
                 thresholds: Mapping[str, Mapping[str, float]], levels: Sequence[str], horizon: int) -> Truth:
    """Events from observed values: for every station with at least one threshold of `levels`, its
    `series` (times in ms, ascending, and values in the thresholds' unit) against its `thresholds`.
    Stations without thresholds are left out: nothing can be said about them."""
    out: Truth = {}
    for sid, th in thresholds.items():
        bounds = [(i, float(th[lv])) for i, lv in enumerate(levels) if th.get(lv) is not None]
        if not bounds:
            continue
        t_raw, v_raw = series.get(sid, ((), ()))
        t = np.asarray(t_raw, dtype=np.int64)
        v = np.asarray(v_raw, dtype=np.float64)
        reached = np.full(len(t), -1, dtype=np.int64)  # the highest level reached at each reading
        for i, bound in bounds:
            reached = np.where(v >= bound, np.maximum(reached, i), reached)
        out[sid] = {lv: _runs(t, reached >= i, horizon) for i, lv in enumerate(levels)}
    return out


def _runs(t: np.ndarray, above: np.ndarray, horizon: int) -> list[Period]:
    """[first reading above, first reading below) for each run of readings above; a run still going at
    the last reading ends at `horizon` (at least a millisecond after it began)."""
    if not len(t) or not above.any():
        return []
    a = above.astype(np.int8)
    edges = np.diff(np.concatenate(([0], a, [0])))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)  # index of the first reading below (len(t) when none)
    out: list[Period] = []
    for s, e in zip(starts.tolist(), stops.tolist(), strict=True):
        begin = int(t[s])
        end = int(t[e]) if e < len(t) else max(horizon, begin + 1)
        out.append((begin, end))
    return merge(out)
