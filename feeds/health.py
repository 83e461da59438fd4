"""A source's health: what one poll did (`PollReport`), the health hash it updates, and reading it back.

Health lives in `keys.feed_health(source)` (see `HEALTH_FIELDS`) and the source is added to
`keys.feeds`. The log gets a line when a source's state changes and when it recovers, not at every
poll.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import redis

from command.keys import Keys

from .errors import FeedError

log = logging.getLogger(__name__)

# What `keys.feed_health(source)` holds (all strings in Redis; times are epoch ms):
HEALTH_FIELDS = {
    "state": "ok | failing | waiting (held back by Retry-After) | idle (never polled)",
    "interval_s": "the polling interval, seconds",
    "last_poll": "when the last poll started",
    "last_success": "when a poll last completed without error (a 304 counts)",
    "last_error": "the last error, in words (kept after recovery; see last_error_at)",
    "last_error_at": "when it happened",
    "error_kind": "the error class: TransientError, RateLimited, PermanentError, PayloadError",
    "retryable": "1 when a retry can help with the last error, else 0",
    "consecutive_failures": "polls in a row that failed (0 when healthy)",
    "readings": "readings taken since the health was created (new ones only, never repeats)",
    "forecasts": "forecast runs taken",
    "warnings": "external warnings currently in force from this source",
    "rejected": "records sent to the dead-letter stream",
    "rate_limited": "new readings over the source's rate limit, quarantined (dead letters, reason rate_limited)",
    "newest": "time of the newest reading taken (ms)",
    "newest_age_s": "how old the newest reading was at the last poll, seconds",
    "last_poll_readings": "new readings in the last poll",
    "last_poll_rejected": "rejected records in the last poll",
    "not_modified": "1 when the last poll's answers were all 304 Not Modified",
    "missing": "station ids delivered before but absent from the last good payload, comma separated",
    "not_before": "a Retry-After wait: no request before this time",
}
_INT_FIELDS = ("last_poll", "last_success", "last_error_at", "consecutive_failures", "readings", "rejected",
               "rate_limited",
               "forecasts", "warnings", "newest", "last_poll_readings", "last_poll_rejected", "not_before")
_FLOAT_FIELDS = ("interval_s", "newest_age_s")


@dataclass
class PollReport:
    """What one poll of one source did."""

    source: str
    ok: bool
    readings: int = 0
    forecasts: int = 0
    warnings: int = 0
    rejected: int = 0
    rate_limited: int = 0  # new readings over the source's rate limit (quarantined)
    duplicates: int = 0
    not_modified: bool = False
    errors: list[FeedError] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    skipped: bool = False  # held back by Retry-After


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------
def register(r: redis.Redis, keys: Keys, source: str, interval_s: float) -> None:
    """List the source in `keys.feeds`, idle until its first poll."""
    r.sadd(keys.feeds, source)
    r.hsetnx(keys.feed_health(source), "state", "idle")
    r.hset(keys.feed_health(source), "interval_s", interval_s)


def not_before(r: redis.Redis, keys: Keys, source: str) -> int | None:
    """The time (ms) a Retry-After holds the source back until, if any."""
    nb = r.hget(keys.feed_health(source), "not_before")
    return int(nb) if nb else None


def poll_started(r: redis.Redis, keys: Keys, source: str, now: int, *, held_back: bool = False) -> None:
    mapping: dict[str, Any] = {"last_poll": now}
    if held_back:
        mapping["state"] = "waiting"
    r.hset(keys.feed_health(source), mapping=mapping)


def update_health(r: redis.Redis, keys: Keys, source: str, report: PollReport, now: int,
                  prev_state: str | None = None) -> str:
    """Write a finished poll's outcome; log a change of state. Returns the new state."""
    hk = keys.feed_health(source)
    prev_state = prev_state or (r.hget(hk, "state") or b"idle").decode()
    mapping: dict[str, Any] = {"last_poll_readings": report.readings, "last_poll_rejected": report.rejected,
                               "not_modified": int(report.not_modified), "warnings": report.warnings}
    newest = r.hget(hk, "newest")
    if newest is not None:
        mapping["newest_age_s"] = round((now - int(newest)) / 1000, 1)
    old_missing = (r.hget(hk, "missing") or b"").decode()
    new_missing = ",".join(report.missing)
    if report.ok:
        mapping.update({"state": "ok", "last_success": now, "consecutive_failures": 0, "missing": new_missing})
        r.hdel(hk, "not_before")
        state = "ok"
    else:
        err = report.errors[-1]
        where = f" ({err.url})" if err.url else ""
        words = f"{err}{where}"
        if len(report.errors) > 1:
            words += f"; and {len(report.errors) - 1} more failed request(s)"
        mapping.update({"state": "failing", "last_error": words, "last_error_at": now,
                        "error_kind": type(err).__name__, "retryable": int(err.retryable)})
        if err.retry_after is not None:
            mapping["not_before"] = now + int(err.retry_after * 1000)
            mapping["state"] = "waiting"
        state = mapping["state"]
        r.hincrby(hk, "consecutive_failures", 1)
    r.hset(hk, mapping=mapping)
    if state != prev_state:
        if state == "ok" and prev_state in ("failing", "waiting"):
            log.warning("feed %s recovered", source)
        elif state != "ok":
            log.warning("feed %s %s: %s", source, state, mapping.get("last_error"))
        else:
            log.info("feed %s ok", source)
    if report.ok and new_missing != old_missing:
        if new_missing:
            log.warning("feed %s: stations no longer delivered: %s", source, new_missing)
        else:
            log.warning("feed %s: every station is delivered again", source)
    return state


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------
def read_health(r: redis.Redis, keys: Keys, source: str) -> dict[str, Any]:
    raw = {k.decode(): v.decode() for k, v in r.hgetall(keys.feed_health(source)).items()}
    out: dict[str, Any] = {"source": source}
    for k, v in raw.items():
        if k in _INT_FIELDS:
            out[k] = int(v) if v not in ("", "None") else None
        elif k in _FLOAT_FIELDS:
            out[k] = float(v) if v not in ("", "None") else None
        else:
            out[k] = v
    return out


def all_health(r: redis.Redis, keys: Keys) -> list[dict[str, Any]]:
    return [read_health(r, keys, s.decode()) for s in sorted(r.smembers(keys.feeds))]


def feed_status(health: dict[str, Any], now: int, late_after_intervals: float = 2.5) -> str:
    """green | late | failing | idle, for the feeds page: failing when the last poll failed, late when
    no success for `late_after_intervals` polling intervals."""
    if not health.get("last_poll"):
        return "idle"
    if health.get("consecutive_failures"):
        return "failing"
    last = health.get("last_success") or 0
    interval = health.get("interval_s") or 300
    if now - last > late_after_intervals * interval * 1000:
        return "late"
    return "green"


__all__ = ["HEALTH_FIELDS", "PollReport", "register", "not_before", "poll_started", "update_health",
           "read_health", "all_health", "feed_status"]
