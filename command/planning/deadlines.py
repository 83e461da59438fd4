"""An alert's deadline, and the weight of its level.

The deadline of a station alert that is rising is the projected time its value reaches the next
level (`next_level_eta`, "red in about 40 min", see `command.rules.levels`). Otherwise, or when that
comes later, it is the time the alert opened (or last rose) plus the rule's `respond_within`. With
neither, the alert has no deadline: units are then ranked by arrival alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NEXT_LEVEL = "next_level"
RESPOND_WITHIN = "respond_within"
LEVEL_WEIGHT_BASE = 3  # a minute late at a level weighs as much as 3 minutes late at the level below


@dataclass(frozen=True, slots=True)
class Deadline:
    at: int | None  # epoch ms; None: no deadline
    basis: str | None = None  # NEXT_LEVEL or RESPOND_WITHIN
    next_level: str | None = None  # the level the value is projected to reach (basis NEXT_LEVEL)


NO_DEADLINE = Deadline(None)


def alert_deadline(alert: dict[str, Any], respond_within_ms: int | None, since: int | None = None) -> Deadline:
    """The deadline of `alert` (an alert dict as the rules make it). `since` is when the alert took
    its current level (its opening time unless it rose later); `respond_within_ms` the rule's."""
    eta = alert.get("next_level_eta")
    nxt = alert.get("next_level")
    projected = Deadline(int(eta), NEXT_LEVEL, nxt) if eta is not None and nxt else None
    respond = None
    if respond_within_ms:
        start = since if since is not None else alert.get("opened_at")
        if start is not None:
            respond = Deadline(int(start) + int(respond_within_ms), RESPOND_WITHIN)
    if projected is None:
        return respond or NO_DEADLINE
    if respond is not None and respond.at is not None and respond.at < projected.at:  # type: ignore[operator]
        return respond
    return projected


def level_weight(rank: int) -> int:
    """Weight of lateness at the level of this rank (0: the lowest level): 1, 3, 9, ..."""
    return LEVEL_WEIGHT_BASE ** max(rank, 0)
