"""Incidents: the one way an incident gets into a namespace, whoever reports it.

Three callers, one path::

    department form (/department)     ─┐
    POST /api/<ns>/incidents (intake)  ├─▶ submit(r, keys, payload, actor, source)
    drill injects (command/ops/drills) ─┘       │  validate_incident()  every field, every problem at once
                                                │  write_incident()     one MULTI/EXEC: hash + input entry + audit

`validate_incident` raises `command.errors.InvalidInput({field: message})`; `write_incident`
raises `command.errors.Forbidden` when the actor may not change an existing incident. The edges
translate these once (the HTTP route answers 422/403, the form shows the messages).

**Categories.** One list, `CATEGORIES`, for every path: ``flooding``, ``trapped_people``,
``levee_breach``, ``road_closed``, ``power_outage``, ``landslide``, ``medical``, ``other``. It is every
category the form offered, the sample scenarios, rules and docs use, and the exercise page injects
(``levee_breach``). The intake used to take any lower-case word; anything else is now ``other``
(with the detail in the description). Rules name categories from this list.

**Severity.** ``yellow``, ``orange``, ``red`` (`SEVERITIES`), or empty where a source may leave it out.

**Ownership.** An incident belongs to the department that reported it (`reported_by` in the
stored record; ``system`` for drill injects and for incidents from a scenario or feed, which carry
no owner, and for an id the engine already knows but no record names: a headless replay's). A change to an existing incident needs that department or the command centre (role
``operator``); anyone else gets `Forbidden` and nothing is stored.

**History.** Every accepted version appends ``{at, by, department, source, status, time}`` to the
record's ``history`` (the newest `HISTORY_LIMIT` are kept there; the audit log keeps all of them).

**Time.** A reported time must lie within `WINDOW_BEFORE_MS` (7 days) before and `WINDOW_AFTER_MS`
(1 day) after the namespace's clock (`command.clock.command_time`): scenario time in a drill, the live clock
(wall time before the first tick) in live. The audit entry carries that namespace time, never the client's.

**Strings and numbers.** Ids are ``[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}``; text refuses control
characters (a line break is allowed inside a description only), lone surrogates, bidirectional
overrides, leading or trailing spaces and over-long values; lat/lon are finite numbers in range
(a boolean is not a number; numeric strings such as ``"30.5"`` are taken).

**Reporter.** An optional ``reporter`` object, ``{"name": ..., "phone": ...}``: who called it in.
Personal data, graded secret (sample_data/classification.yaml): validated strictly
(command/ops/people.py), kept in the stored record only (not on the engine's input stream, and the
audit entry says only whether there is one). A later version that leaves ``reporter`` out keeps the
one given before; ``"reporter": null`` removes it.

The stored record in `keys.incidents` is the Incident JSON plus ``reported_by``, ``submitted_by``
(the account that first submitted it; older records named it ``reporter``) and ``history`` (readers
that parse it as `Incident` ignore the extra fields); the input stream entry is the Incident without
its reporter.
"""

from __future__ import annotations

import math
import re
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from command.clock import command_time
from command.errors import Forbidden, InvalidInput, NotFound
from command.keys import Keys, shard_of
from command.models import Incident, Person
from command.ops import people
from command.runtime.redis_client import on_cluster
from command.streams import incident_entry, shard_count
from command.timeutil import parse_time, to_iso
from command.trust import audit
from command.trust.throttle import check_submission

CATEGORIES = ("flooding", "trapped_people", "levee_breach", "road_closed", "power_outage", "landslide",
              "medical", "other")
SEVERITIES = ("yellow", "orange", "red")
STATUSES = ("open", "closed")
FIELDS = ("id", "time", "category", "lat", "lon", "severity", "description", "status", "reporter")

MAX_ID = 64
MAX_DESCRIPTION = 2000
MAX_TIME_TEXT = 64
WINDOW_BEFORE_MS = 7 * 86_400_000
WINDOW_AFTER_MS = 1 * 86_400_000
HISTORY_LIMIT = 50
SYSTEM = "system"  # owner of drill injects and of incidents that came from a scenario or feed
OPERATOR_ROLE = "operator"  # the command centre: may change any incident

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_NUMBER_RE = re.compile(r"[+-]?(?:\d{1,12}(?:\.\d{1,15})?|\.\d{1,15})")
_FIELD_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,40}")
# bidirectional overrides and isolates ("Trojan source" text), line and paragraph separators
_INVISIBLE = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")


@dataclass(frozen=True)
class Source:
    """Where a report comes from: how it is validated and audited."""

    name: str  # audit detail `source`, history `source`
    action: str  # audit action
    id_prefix: str | None  # the server makes the id (`<prefix>-<8 hex>`) when none is given
    stamped: bool  # the report's time is the server's namespace time; a `time` field is refused
    required: tuple[str, ...]


FORM = Source("department", "incident_report", "R", True, ("category", "severity", "lat", "lon", "description"))
INTAKE = Source("intake", "incident_intake", None, False, ("id", "time", "category", "lat", "lon"))
DRILL = Source("drill", "inject_incident", "INJ", True, ("category", "lat", "lon"))


@dataclass(frozen=True)
class Actor:
    """Who is reporting: a signed-in user, or the system (drill injects) on behalf of `username`."""

    username: str
    department: str
    role: str

    @classmethod
    def of_user(cls, user: Mapping[str, Any]) -> Actor:
        return cls(str(user["username"]), str(user["department"]), str(user.get("role", "department")))

    @classmethod
    def system(cls, by: str) -> Actor:
        return cls(str(by), SYSTEM, SYSTEM)

    def may_change(self, owner: str) -> bool:
        return self.role == OPERATOR_ROLE or self.department == owner


@dataclass(frozen=True)
class Submitted:
    incident: Incident
    taken: bool  # False: this exact version was already stored (a repeated post changes nothing)


# ---- validation -------------------------------------------------------------------------------------
def _text_problem(v: Any, max_len: int, *, multiline: bool = False) -> str | None:
    if not isinstance(v, str):
        return "must be text"
    if len(v) > max_len:
        return f"at most {max_len:,} characters"
    for ch in v:
        if ch == "\n" and multiline:
            continue
        if unicodedata.category(ch) in ("Cc", "Cs") or ch in _INVISIBLE:
            return "contains a control character or an invalid character"
    if v != v.strip():
        return "no leading or trailing spaces or line breaks"
    return None


def _coordinate(v: Any, bound: int) -> float | str:
    """A finite number within ±bound, or the message saying what is wrong."""
    msg = f"a number from {-bound} to {bound}"
    if isinstance(v, bool):
        return msg
    if isinstance(v, int):
        return float(v) if -bound <= v <= bound else msg
    if isinstance(v, float):
        return v if math.isfinite(v) and -bound <= v <= bound else msg
    if isinstance(v, str) and _NUMBER_RE.fullmatch(v):
        f = float(v)
        return f if -bound <= f <= bound else msg
    return msg


def _missing(v: Any) -> bool:
    return v is None or v == ""


def validate_incident(payload: Any, source: Source, *, now: int) -> Incident:
    """Check every field of a report and name every problem at once (no partial acceptance).

    `now` is the namespace's current time: the time of a `stamped` source's report, and the centre
    of the window a reported time must fall in. Raises InvalidInput({field: message}).
    """
    if not isinstance(payload, Mapping):
        raise InvalidInput({"body": "expected a JSON object"})
    errors: dict[str, str] = {}
    allowed = set(FIELDS) - ({"time"} if source.stamped else set())
    for k in payload:
        if k in allowed:
            continue
        if isinstance(k, str) and _FIELD_NAME_RE.fullmatch(k):
            errors[k] = ("set by the server; leave it out" if k in FIELDS
                         else f"unknown field (allowed: {', '.join(f for f in FIELDS if f in allowed)})")
        else:
            errors["body"] = "a field name that is not plain text"
    for k in source.required:
        if _missing(payload.get(k)):
            errors[k] = "required"

    iid: Any = payload.get("id")
    if _missing(iid) and source.id_prefix and "id" not in source.required:
        iid = f"{source.id_prefix}-{uuid.uuid4().hex[:8].upper()}"
    elif "id" not in errors and (not isinstance(iid, str) or not _ID_RE.fullmatch(iid)):
        errors["id"] = f"letters, digits and _ . : - only (starting with a letter or digit), at most {MAX_ID} characters"

    t = now
    if not source.stamped and "time" not in errors:
        raw: Any = payload.get("time")
        problem = _text_problem(raw, MAX_TIME_TEXT)
        if problem is None:
            try:
                t = parse_time(raw)
            except (ValueError, OverflowError, OSError):
                problem = "ISO 8601 with a UTC offset, e.g. 2026-07-14T16:05:00+08:00"
        if problem is None and not now - WINDOW_BEFORE_MS <= t <= now + WINDOW_AFTER_MS:
            problem = (f"must be between {to_iso(now - WINDOW_BEFORE_MS)} and {to_iso(now + WINDOW_AFTER_MS)} "
                       f"(7 days before to 1 day after the current time {to_iso(now)})")
        if problem is not None:
            errors["time"] = problem

    cat: Any = payload.get("category")
    if "category" not in errors and cat not in CATEGORIES:
        errors["category"] = f"one of: {', '.join(CATEGORIES)}"

    coords: dict[str, float] = {}
    for field, bound in (("lat", 90), ("lon", 180)):
        if field in errors:
            continue
        v = _coordinate(payload.get(field), bound)
        if isinstance(v, str):
            errors[field] = v
        else:
            coords[field] = v

    sev = payload.get("severity", "")
    if "severity" not in errors and sev not in ("", *SEVERITIES):
        errors["severity"] = f"one of: {', '.join(SEVERITIES)}"

    desc = payload.get("description", "")
    if desc is None:
        desc = ""
    if "description" not in errors:
        problem = _text_problem(desc, MAX_DESCRIPTION, multiline=True)
        if problem:
            errors["description"] = problem

    status = payload.get("status", "open")
    if "status" not in errors and status not in STATUSES:
        errors["status"] = "open or closed"

    reporter, problems = people.person(payload.get("reporter"), "reporter")
    errors.update(problems)

    if errors:
        raise InvalidInput(errors)
    return Incident(id=iid, time=t, category=cat, lat=coords["lat"], lon=coords["lon"], severity=sev or "",
                    description=desc, status=status, reporter=reporter)


# ---- the one write ----------------------------------------------------------------------------------
def with_zone(r: redis.Redis, keys: Keys, inc: Incident) -> Incident:
    """The incident with the zone containing it (from the namespace's zones), when not set yet."""
    if inc.zone is not None:
        return inc
    from command.geo import ZoneLocator
    from command.publish.views import zones as load_zones

    zs = load_zones(r, keys)
    if not zs:
        return inc
    return inc.model_copy(update={"zone": ZoneLocator(zs).zone_of(inc.lon, inc.lat)})


def owner_of(record: Mapping[str, Any]) -> str:
    """The department an incident belongs to (`system` when it came with no owner)."""
    return str(record.get("reported_by") or SYSTEM)


def write_incident(r: redis.Redis, keys: Keys, inc: Incident, actor: Actor, source: Source, *, now: int,
                   keep_reporter: bool = False) -> bool:
    """Store one version of an incident (its zone filled in), in one MULTI/EXEC under WATCH: the
    record in `keys.incidents`, an ``i`` entry on its shard's input stream (so the engine sees it
    exactly once) and its audit entry, stamped `now` (the namespace time).

    A new incident belongs to `actor.department`. Changing an existing one (recorded, or known to
    the engine's rule state, which then counts as the system's) needs its owner or the command
    centre, else Forbidden and nothing is written. Returns False when this exact version is
    already stored (nothing written). `keep_reporter`: the report left `reporter` out, so the stored
    one (if any) stays."""
    inc = with_zone(r, keys, inc)
    shard = shard_of(inc.id, shard_count(r, keys))
    stream, state = keys.shard_stream(shard), keys.shard_state(shard)
    with r.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(keys.incidents, keys.audit_head)
                raw = pipe.hget(keys.incidents, inc.id)
                old: dict[str, Any] | None = orjson.loads(raw) if raw is not None else None
                if old is not None:
                    owner: str | None = owner_of(old)
                elif r.hexists(state, inc.id) or pipe.hexists(keys.stations, inc.id):  # state: the shard's slot
                    # known to the engine but never recorded (a headless replay records no incidents),
                    # or a station's id: not free for the taking
                    owner = SYSTEM
                else:
                    owner = None
                if owner is not None and not actor.may_change(owner):
                    pipe.unwatch()
                    raise Forbidden(f"incident {inc.id} belongs to {owner}; only that department "
                                    "or the command centre may change it", field="id")
                if keep_reporter and old is not None and isinstance(old.get("reporter"), dict):
                    inc = inc.model_copy(update={"reporter": Person.model_validate(old["reporter"])})
                if old is not None and Incident.model_validate(old) == inc:
                    pipe.unwatch()
                    return False
                history = list(old.get("history") or []) if old else []
                history.append({"at": now, "by": actor.username, "department": actor.department,
                                "source": source.name, "status": inc.status, "time": inc.time})
                record = {**inc.model_dump(mode="json"), "reported_by": owner or actor.department,
                          "submitted_by": _submitted_by(old) if old else ("" if owner else actor.username),
                          "history": history[-HISTORY_LIMIT:]}
                head = pipe.get(keys.audit_head)
                pipe.multi()
                pipe.hset(keys.incidents, inc.id, orjson.dumps(record))
                entry = incident_entry(inc.model_copy(update={"reporter": None}))
                split = on_cluster(r)  # a Redis Cluster: the shard's stream is in another slot
                if not split:
                    pipe.xadd(stream, entry)
                    pipe.incr(keys.shard_added(shard))  # the input count outlives the stream's trimming
                audit.append(pipe, keys, head.decode() if head else None, who=actor.username, action=source.action,
                             at=now, details={"incident": inc.id, "change": "update" if old else "new",
                                              "category": inc.category, "severity": inc.severity,
                                              "status": inc.status, "lat": inc.lat, "lon": inc.lon,
                                              "reported_time": inc.time, "department": actor.department,
                                              "source": source.name, "reporter": inc.reporter is not None})
                pipe.execute()
                if split:  # the engine's input, in the shard's slot, once the record is stored (its own MULTI)
                    with r.pipeline(transaction=True) as shard_pipe:
                        shard_pipe.xadd(stream, entry)
                        shard_pipe.incr(keys.shard_added(shard))
                        shard_pipe.execute()
                return True
            except redis.WatchError:
                continue


def _submitted_by(old: Mapping[str, Any]) -> str:
    """The account that first submitted a stored incident (`reporter`, a string, in older records)."""
    legacy = old.get("reporter")
    return str(old.get("submitted_by") or (legacy if isinstance(legacy, str) else ""))


def submit(r: redis.Redis, keys: Keys, payload: Any, actor: Actor, source: Source, *,
           now: int | None = None) -> Submitted:
    """Validate a report and write it: the one path for the form, the HTTP intake and drill injects.
    `now` defaults to the time a command is stamped with (`command.clock.command_time`). Raises
    InvalidInput, NotFound (no such namespace), Forbidden or RateLimited; nothing is stored then."""
    if not r.exists(keys.meta):  # a crafted namespace name must not bring a namespace into being
        raise NotFound(f"no such namespace {keys.ns!r}")
    if source is not DRILL:  # a person's report (form, intake): RateLimited when they or theirs burst
        check_submission(r, keys, actor.username, actor.department, "incident reports")
    now = command_time(r, keys) if now is None else now
    inc = with_zone(r, keys, validate_incident(payload, source, now=now))
    keep = isinstance(payload, Mapping) and "reporter" not in payload
    return Submitted(inc, write_incident(r, keys, inc, actor, source, now=now, keep_reporter=keep))


def history(r: redis.Redis, keys: Keys, incident_id: str) -> list[dict[str, Any]]:
    """An incident's recorded changes, oldest first (the newest HISTORY_LIMIT)."""
    raw = r.hget(keys.incidents, incident_id)
    return list(orjson.loads(raw).get("history") or []) if raw else []
