"""Units to alerts: the assignment that minimises lateness weighted by level, then travel time.

Every alert that asks for k units of a type has k *slots*. Each slot may take one unit, or none.
The cost of giving unit j to slot i is, lexicographically,

1. the minutes it would be late (working after the alert's deadline; 0 on time or with no
   deadline), times the weight of the alert's level (`deadlines.level_weight`: 1, 3, 9, ...);
2. its travel time in seconds.

A slot left empty costs as much as being `UNSERVED_MIN` minutes late at its level, so a unit is
always given where one is needed, to the highest level first; a unit that cannot reach the target
can never be given to it. The problem is solved exactly with scipy's `linear_sum_assignment`
(one column per unit plus one "no unit" column per slot).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

UNSERVED_MIN = 7 * 24 * 60  # an empty slot weighs as much as a week late
_EXACT = 2.0 ** 52  # costs are whole numbers: their sums stay exact below this


def late_minutes(working_at: np.ndarray, deadline: float | None) -> np.ndarray:
    """Whole minutes after `deadline` (rounded up; 0 when on time or with no deadline)."""
    if deadline is None:
        return np.zeros(np.shape(working_at))
    with np.errstate(invalid="ignore"):
        late = np.ceil(np.maximum(np.asarray(working_at, dtype=float) - deadline, 0.0) / 60_000.0)
    return np.where(np.isfinite(late), late, UNSERVED_MIN)


def assign(travel_s: np.ndarray, late_min: np.ndarray, weight: Sequence[int]) -> list[int | None]:
    """The unit (column) for each slot (row), or None.

    `travel_s[i, j]`: travel time of unit j to slot i's target (inf: cannot reach it);
    `late_min[i, j]`: minutes late it would be there; `weight[i]`: the weight of slot i's level.
    """
    travel_s = np.asarray(travel_s, dtype=float)
    n_slots, n_units = travel_s.shape
    if n_slots == 0:
        return []
    if n_units == 0:
        return [None] * n_slots
    ok = np.isfinite(travel_s)
    travel = np.where(ok, np.ceil(travel_s), 0.0)
    w = np.asarray(weight, dtype=float)[:, None]
    late = np.minimum(np.asarray(late_min, dtype=float), UNSERVED_MIN - 1)
    # lateness first: one minute of weighted lateness outweighs any sum of travel times
    scale = float(n_slots) * float(travel.max(initial=0.0)) + 1.0
    if float(w.max()) * UNSERVED_MIN * scale * n_slots >= _EXACT:  # too big to stay exact: minutes of travel
        travel = np.ceil(travel / 60.0)
        scale = float(n_slots) * float(travel.max(initial=0.0)) + 1.0
    unserved = w * UNSERVED_MIN * scale
    cost = np.where(ok, late * w * scale + travel, unserved + 1.0)
    dummies = np.repeat(unserved, n_slots, axis=1)
    rows, cols = linear_sum_assignment(np.hstack([cost, dummies]))
    out: list[int | None] = [None] * n_slots
    for i, j in zip(rows, cols, strict=True):
        if j < n_units and ok[i, j]:
            out[i] = int(j)
    return out


def greedy(travel_s: np.ndarray, late_min: np.ndarray, weight: Sequence[int]) -> list[int | None]:
    """The one-alert-at-a-time answer (highest weight first, each slot its best free unit): the
    baseline the assignment is measured against in tests and `bench/dispatch.py`."""
    travel_s = np.asarray(travel_s, dtype=float)
    taken: set[int] = set()
    out: list[int | None] = [None] * travel_s.shape[0]
    for i in sorted(range(travel_s.shape[0]), key=lambda i: -weight[i]):
        best, key = None, (math.inf, math.inf)
        for j in range(travel_s.shape[1]):
            if j in taken or not math.isfinite(travel_s[i, j]):
                continue
            k = (late_min[i, j], travel_s[i, j])
            if k < key:
                best, key = j, k
        if best is not None:
            taken.add(best)
            out[i] = best
    return out
