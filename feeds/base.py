"""The framework every live feed uses: polling, HTTP with timeouts and retries, conditional
requests, high-water marks, dead letters and health, all in Redis.

A *source* (``feeds/usgs.py``, ``feeds/ea.py`` ...) is two things:

- a pure ``parse(payload_bytes, ...) -> ParseResult`` (readings, stations, warnings, rejected
  records; no I/O, no clock), and
- a small `Source` subclass that says which URLs to fetch for a poll.

A `FeedCoordinator` runs one source: it fetches, parses and writes into a namespace. Everything
it needs from outside (the HTTP transport, the clock, the sleep used between retries, Redis) is
passed in, so tests drive it with a local HTTP server and a fake clock.

Guarantees:

- **Exactly once.** Each reading is keyed by (station, kind) and taken only when newer than the
  source's high-water mark (`keys.feed_hwm`). The stream entries and the new marks are written in
  one MULTI/EXEC, so a crash or restart between polls neither loses nor repeats a reading.
- **One bad record never drops the rest.** A record with a missing or sentinel value goes to the
  dead-letter stream with its reason; the others go on. A payload that cannot be parsed at all
  goes to the dead-letter stream whole (truncated), and the last good data stays.
- **Errors are translated once, here,** into `FeedError` subclasses that say whether a retry can
  help (`retryable`). Timeouts, connection failures, 5xx and 429 are retried with exponential
  backoff and jitter; `Retry-After` is honoured (seconds or an HTTP date); a wait longer than the
  backoff cap ends the poll and holds the next one back until then.
- **Health** lives in `keys.feed_health(source)` (see `HEALTH_FIELDS`) and the source is added to
  `keys.feeds`. The log gets a line when a source's state changes and when it recovers, not at
  every poll.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import redis

from command.keys import Keys
from command.models import ExternalWarning, Station
from command.streams import StreamWriter, ensure_group, shard_count
from command.timeutil import now_ms
from feeds.replay import deadletter

log = logging.getLogger(__name__)

USER_AGENT = "flood-command/0.1 (+https://github.com/; emergency operations dashboard)"
DEADLETTER_PAYLOAD_MAX = 8192  # bytes of an unparseable payload kept in its dead letter

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
    "newest": "time of the newest reading taken (ms)",
    "newest_age_s": "how old the newest reading was at the last poll, seconds",
    "last_poll_readings": "new readings in the last poll",
    "last_poll_rejected": "rejected records in the last poll",
    "not_modified": "1 when the last poll's answers were all 304 Not Modified",
    "missing": "station ids delivered before but absent from the last good payload, comma separated",
    "not_before": "a Retry-After wait: no request before this time",
}


# ------------------------------------------------------------------------------------------------
# Parse results
# ------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class FeedReading:
    """One value in SI. `issued` is None for an observation, the run's issue time for a forecast."""

    station_id: str
    kind: str
    t: int  # epoch ms (valid time for a forecast)
    value: float
    unit: str  # the SI unit
    issued: int | None = None

    def to_json(self) -> dict[str, Any]:
        from command.timeutil import to_iso

        d: dict[str, Any] = {"station_id": self.station_id, "kind": self.kind, "time": to_iso(self.t),
                             "value": self.value, "unit": self.unit}
        if self.issued is not None:
            d["issued"] = to_iso(self.issued)
        return d


@dataclass(slots=True)
class Rejected:
    """A record the adapter could not use, and why (it goes to the dead-letter stream)."""

    record: Any
    reason: str


@dataclass
class ParseResult:
    readings: list[FeedReading] = field(default_factory=list)
    stations: list[Station] = field(default_factory=list)
    warnings: list[ExternalWarning] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    forecasts: list[FeedReading] = field(default_factory=list)
    # documents to fetch and parse too (CAP feeds whose entries only link to the CAP message)
    follow: list[str] = field(default_factory=list)

    def extend(self, other: ParseResult) -> None:
        self.readings += other.readings
        self.stations += other.stations
        self.warnings += other.warnings
        self.rejected += other.rejected
        self.forecasts += other.forecasts
        self.follow += other.follow

    @property
    def records(self) -> int:
        return len(self.readings) + len(self.forecasts) + len(self.warnings) + len(self.rejected)


# ------------------------------------------------------------------------------------------------
# Errors: translated once, at the edge
# ------------------------------------------------------------------------------------------------
class FeedError(Exception):
    """A poll went wrong. `retryable` says whether trying again soon can help."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None,
                 url: str | None = None) -> None:
        super().__init__(message)
        self.status, self.retry_after, self.url = status, retry_after, url


class TransientError(FeedError):
    """Timeouts, refused or reset connections, HTTP 408 and 5xx: a retry may succeed."""

    retryable = True


class RateLimited(TransientError):
    """HTTP 429: retry, but not before `retry_after` seconds."""


class PermanentError(FeedError):
    """HTTP 4xx (other than 408 and 429): the request itself is wrong; retrying will not help."""


class PayloadError(PermanentError):
    """The answer cannot be read: an HTML page instead of JSON, truncated JSON, the wrong shape."""


def describe_http_error(exc: httpx.HTTPError, timeout: httpx.Timeout | None = None) -> FeedError:
    """An httpx exception as a FeedError with a message an operator understands."""
    url = None
    if isinstance(exc, httpx.ConnectTimeout):
        return TransientError(f"no connection within {timeout.connect if timeout else '?'} s (connect timeout)", url=url)
    if isinstance(exc, httpx.ReadTimeout):
        return TransientError(f"no answer within {timeout.read if timeout else '?'} s (read timeout)", url=url)
    if isinstance(exc, httpx.TimeoutException):
        return TransientError(f"timed out ({type(exc).__name__})", url=url)
    if isinstance(exc, httpx.ConnectError):
        return TransientError(f"cannot connect: {exc}", url=url)
    if isinstance(exc, httpx.RemoteProtocolError):
        return TransientError(f"the server broke the connection: {exc}", url=url)
    return TransientError(f"HTTP failure: {type(exc).__name__}: {exc}", url=url)


def parse_retry_after(value: str | None, now: int) -> float | None:
    """`Retry-After` as seconds from now: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if dt is None:
        return None
    return max(0.0, dt.timestamp() - now / 1000)


def _body_hint(body: bytes, limit: int = 200) -> str:
    """A short, readable excerpt of an error body (JSON `reason`/`message`, an HTML title, or text)."""
    text = body[:4096].decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
        if isinstance(doc, dict):
            for k in ("reason", "message", "detail", "title", "error"):
                if isinstance(doc.get(k), str):
                    return doc[k][:limit]
    except ValueError:
        pass
    m = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
    if m:
        return " ".join(m.group(1).split())[:limit]
    return " ".join(text.split())[:limit]


def load_json(payload: bytes) -> Any:
    """Parse JSON, or raise PayloadError saying what the bytes are instead."""
    if payload.startswith(b"\xef\xbb\xbf"):
        payload = payload[3:]
    head = payload.lstrip()[:200].lower()
    if not head:
        raise PayloadError("empty body where JSON was expected")
    if head.startswith(b"<"):
        what = "an HTML page" if b"<html" in head or b"<!doctype html" in head else "XML/HTML"
        hint = _body_hint(payload)
        raise PayloadError(f"expected JSON, got {what}" + (f": {hint!r}" if hint else ""))
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        if exc.pos is not None and exc.pos >= len(payload.rstrip()) - 1:
            raise PayloadError(f"truncated JSON: the body ends at byte {len(payload)} inside a value") from None
        raise PayloadError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


# ------------------------------------------------------------------------------------------------
# Retries
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter. Try `max_tries` times in one poll; the n-th wait is
    uniform in [d/2, d] with d = min(cap, base * 2**(n-1)) seconds ("equal jitter")."""

    max_tries: int = 3
    base: float = 1.0
    cap: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        d = min(self.cap, self.base * 2 ** (attempt - 1))
        return d / 2 + rng.uniform(0, d / 2)

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> RetryPolicy:
        cfg = cfg or {}
        return cls(max_tries=int(cfg.get("max_tries", 3)), base=float(cfg.get("base", 1.0)),
                   cap=float(cfg.get("cap", 30.0)))


# ------------------------------------------------------------------------------------------------
# Sources
# ------------------------------------------------------------------------------------------------
@dataclass
class Request:
    """One URL a poll fetches. `context` goes to the source's parse; `complete_warnings` says the
    answer lists every warning in force, so one that is no longer listed has ended."""

    url: str
    params: dict[str, Any] | None = None
    context: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] | None = None
    complete_warnings: bool = False

    @property
    def full_url(self) -> str:
        return str(httpx.URL(self.url, params=self.params)) if self.params else self.url


class Source:
    """A source's polling plan. Subclasses set `name` and implement `requests` and `parse`."""

    name = "source"
    accept = "application/json"

    def __init__(self, cfg: dict[str, Any] | None = None) -> None:
        from command.timeutil import parse_duration

        self.cfg = dict(cfg or {})
        self.interval_s = parse_duration(self.cfg.get("interval", "5m")) / 1000
        self.timeout = httpx.Timeout(float(self.cfg.get("read_timeout", 20.0)),
                                     connect=float(self.cfg.get("connect_timeout", 5.0)))
        self.retry = RetryPolicy.from_config(self.cfg.get("retry"))
        self.user_agent = str(self.cfg.get("user_agent") or USER_AGENT)
        # per-station settings from the config: {station id: {thresholds: {...,unit}, zone, name}}
        self.station_overrides: dict[str, dict[str, Any]] = dict(self.cfg.get("station_overrides") or {})

    def requests(self, now: int) -> list[Request]:  # pragma: no cover - abstract
        raise NotImplementedError

    def parse(self, payload: bytes, req: Request, fetched_at: int) -> ParseResult:  # pragma: no cover
        raise NotImplementedError

    def parse_follow(self, payload: bytes, url: str, fetched_at: int) -> ParseResult:
        """Parse a document a feed linked to (`ParseResult.follow`); by default like any payload."""
        return self.parse(payload, Request(url), fetched_at)


def apply_overrides(st: Station, overrides: dict[str, dict[str, Any]]) -> Station:
    """Config thresholds (in `unit`, converted to SI), zone and names for a feed's station."""
    from command.units import factor_for

    o = overrides.get(st.id) or overrides.get(st.id.split(":", 1)[-1])
    if not o:
        return st
    st = st.model_copy(deep=True)
    th = o.get("thresholds")
    if th:
        factor, _ = factor_for(str(th.get("unit") or st.unit), st.kind)
        st.thresholds = {lv: round(float(v) * factor, 6) for lv, v in th.items() if lv != "unit"}
    for k in ("zone", "name", "name_zh"):
        if o.get(k) is not None:
            setattr(st, k, o[k])
    return st


# ------------------------------------------------------------------------------------------------
# Health
# ------------------------------------------------------------------------------------------------
def read_health(r: redis.Redis, keys: Keys, source: str) -> dict[str, Any]:
    raw = {k.decode(): v.decode() for k, v in r.hgetall(keys.feed_health(source)).items()}
    out: dict[str, Any] = {"source": source}
    for k, v in raw.items():
        if k in ("last_poll", "last_success", "last_error_at", "consecutive_failures", "readings", "rejected",
                 "forecasts", "warnings", "newest", "last_poll_readings", "last_poll_rejected", "not_before"):
            out[k] = int(v) if v not in ("", "None") else None
        elif k in ("interval_s", "newest_age_s"):
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


# ------------------------------------------------------------------------------------------------
# The coordinator
# ------------------------------------------------------------------------------------------------
@dataclass
class PollReport:
    source: str
    ok: bool
    readings: int = 0
    forecasts: int = 0
    warnings: int = 0
    rejected: int = 0
    duplicates: int = 0
    not_modified: bool = False
    errors: list[FeedError] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    skipped: bool = False  # held back by Retry-After


class _NotModified:
    pass


NOT_MODIFIED = _NotModified()


class FeedCoordinator:
    """Polls one source into one namespace."""

    def __init__(self, source: Source, r: redis.Redis, keys: Keys, *, client: httpx.Client | None = None,
                 transport: httpx.BaseTransport | None = None, clock: Callable[[], int] = now_ms,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
                 shards: int | None = None) -> None:
        self.source, self.r, self.keys = source, r, keys
        self.name = source.name
        self.clock, self.sleep = clock, sleep
        self.rng = rng or random.Random()
        self._own_client = client is None
        self.client = client or httpx.Client(transport=transport, timeout=source.timeout, follow_redirects=True,
                                             headers={"User-Agent": source.user_agent, "Accept": source.accept})
        self.shards = shards if shards is not None else shard_count(r, keys)
        for s in range(self.shards):
            ensure_group(r, keys.shard_stream(s))
        self._state: str | None = None
        r.sadd(keys.feeds, self.name)
        r.hsetnx(keys.feed_health(self.name), "state", "idle")
        r.hset(keys.feed_health(self.name), "interval_s", source.interval_s)

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    # ---- HTTP ----------------------------------------------------------------------------------
    def _fetch_once(self, req: Request, url: str) -> bytes | _NotModified:
        headers = dict(req.headers or {})
        cached = self.r.hget(self.keys.feed_http(self.name), url)
        if cached:
            c = orjson.loads(cached)
            if c.get("etag"):
                headers["If-None-Match"] = c["etag"]
            if c.get("last_modified"):
                headers["If-Modified-Since"] = c["last_modified"]
        try:
            resp = self.client.get(url, headers=headers, timeout=self.source.timeout)
            body = resp.read()
        except httpx.HTTPError as exc:
            err = describe_http_error(exc, self.source.timeout)
            err.url = url
            raise err from None
        status = resp.status_code
        if status == 304:
            return NOT_MODIFIED
        if 200 <= status < 300:
            self._validators = {"etag": resp.headers.get("ETag"), "last_modified": resp.headers.get("Last-Modified")}
            return body
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), self.clock())
        hint = _body_hint(body)
        msg = f"HTTP {status} {resp.reason_phrase}".rstrip() + (f": {hint}" if hint else "")
        if status == 429:
            raise RateLimited(msg, status=status, retry_after=retry_after, url=url)
        if status == 408 or status >= 500:
            raise TransientError(msg, status=status, retry_after=retry_after, url=url)
        raise PermanentError(msg, status=status, url=url)

    def fetch(self, req: Request, url: str | None = None) -> bytes | _NotModified:
        """GET with retries: backoff with jitter between tries; Retry-After honoured."""
        url = url or req.full_url
        policy = self.source.retry
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._fetch_once(req, url)
            except FeedError as exc:
                if not exc.retryable or attempt >= policy.max_tries:
                    raise
                wait = policy.delay(attempt, self.rng)
                if exc.retry_after is not None:
                    if exc.retry_after > policy.cap:
                        raise  # longer than we wait inside a poll: the next poll is held back instead
                    wait = max(wait, exc.retry_after)
                self.sleep(wait)

    # ---- one poll --------------------------------------------------------------------------------
    def poll(self) -> PollReport:
        now = self.clock()
        hk = self.keys.feed_health(self.name)
        report = PollReport(self.name, ok=True)
        nb = self.r.hget(hk, "not_before")
        if nb and int(nb) > now:
            report.skipped = True
            self.r.hset(hk, mapping={"last_poll": now, "state": "waiting"})
            return report
        self.r.hset(hk, "last_poll", now)
        results: list[tuple[str, ParseResult, dict[str, Any]]] = []
        not_modified = 0
        warnings_complete = True
        requests = self.source.requests(now)
        for req in requests:
            url = req.full_url
            self._validators = {}
            try:
                body = self.fetch(req, url)
                if body is NOT_MODIFIED:
                    not_modified += 1
                    if req.complete_warnings:
                        warnings_complete = False  # nothing new said about which warnings ended
                    continue
                try:
                    res = self.source.parse(body, req, now)
                except PayloadError as exc:
                    exc.url = url
                    deadletter(self.r, self.keys, self.name,
                               {"url": url, "payload": body[:DEADLETTER_PAYLOAD_MAX].decode("utf-8", "replace")},
                               str(exc))
                    report.rejected += 1
                    raise
                validators = self._validators
                for link in res.follow:
                    res.extend(self._follow(link, now, report))
                results.append((url, res, validators))
            except FeedError as exc:
                exc.url = exc.url or url
                report.errors.append(exc)
                if req.complete_warnings:
                    warnings_complete = False
        any_complete = any(q.complete_warnings for q in requests)
        self._ingest(results, report, now, warnings_complete and any_complete and not report.errors)
        report.not_modified = bool(requests) and not_modified == len(requests)
        report.ok = not report.errors
        self._update_health(report, now)
        return report

    def _follow(self, link: str, now: int, report: PollReport) -> ParseResult:
        try:
            body = self.fetch(Request(link), link)
            if body is NOT_MODIFIED:
                return ParseResult()
            return self.source.parse_follow(body, link, now)
        except PayloadError as exc:
            report.rejected += 1
            deadletter(self.r, self.keys, self.name, {"url": link}, str(exc))
            return ParseResult()
        except FeedError as exc:
            exc.url = exc.url or link
            report.errors.append(exc)
            return ParseResult()

    # ---- writing ---------------------------------------------------------------------------------
    def _ingest(self, results: list[tuple[str, ParseResult, dict[str, Any]]], report: PollReport, now: int,
                warnings_complete: bool) -> None:
        r, k, name = self.r, self.keys, self.name
        merged = ParseResult()
        for _url, res, _v in results:
            merged.extend(res)
        self._write_stations(merged.stations, report, complete=not report.errors and bool(results))
        writer = StreamWriter(r, k, self.shards, record=True, transaction=True)
        pipe = writer.pipe
        hwm_key = k.feed_hwm(name)
        # ---- observations: only what is newer than the high-water mark, each once
        by_series: dict[str, list[Any]] = {}
        for rd in merged.readings:
            by_series.setdefault(f"{rd.station_id}|{rd.kind}", []).append(rd)
        for fc in merged.forecasts:
            by_series.setdefault(f"{fc.station_id}|fc:{fc.kind}", []).append(fc)
        fields = list(by_series)
        marks = dict(zip(fields, r.hmget(hwm_key, fields), strict=True)) if fields else {}
        new_marks: dict[str, int] = {}
        newest = None
        forecast_store: dict[str, dict[str, Any]] = {}
        for f, items in by_series.items():
            mark = int(marks[f]) if marks.get(f) is not None else None
            if "|fc:" in f:
                issued = max(x.issued for x in items)
                if mark is not None and issued <= mark:
                    report.duplicates += 1
                    continue
                run = sorted({x.t: x.value for x in items if x.issued == issued}.items())
                sid, kind = items[0].station_id, items[0].kind
                writer.forecast(sid, kind, issued, run)
                forecast_store.setdefault(sid, {})[kind] = {"issued": issued, "series": run,
                                                            "unit": items[0].unit}
                new_marks[f] = issued
                report.forecasts += 1
                continue
            seen: set[int] = set()
            for rd in sorted(items, key=lambda x: x.t):
                if (mark is not None and rd.t <= mark) or rd.t in seen:
                    report.duplicates += 1
                    continue
                seen.add(rd.t)
                writer.reading(rd.station_id, rd.kind, rd.t, rd.value)
                new_marks[f] = rd.t
                report.readings += 1
                newest = rd.t if newest is None else max(newest, rd.t)
        if new_marks:
            pipe.hset(hwm_key, mapping=new_marks)
        if forecast_store:
            olds = r.hmget(k.forecasts, list(forecast_store))
            mapping = {}
            for (sid, kinds), old in zip(forecast_store.items(), olds, strict=True):
                cur = orjson.loads(old) if old else {}
                cur.update(kinds)
                mapping[sid] = orjson.dumps(cur)
            pipe.hset(k.forecasts, mapping=mapping)
        # ---- external warnings
        self._write_warnings(writer, merged.warnings, report, now, warnings_complete)
        # ---- rejected records
        for rej in merged.rejected:
            deadletter(pipe, k, name, rej.record, rej.reason)
        report.rejected += len(merged.rejected)
        hk = k.feed_health(name)
        if report.readings:
            pipe.hincrby(hk, "readings", report.readings)
        if report.forecasts:
            pipe.hincrby(hk, "forecasts", report.forecasts)
        if report.rejected:
            pipe.hincrby(hk, "rejected", report.rejected)
        if newest is not None:
            old = r.hget(hk, "newest")
            if old is None or int(old) < newest:
                pipe.hset(hk, "newest", newest)
        # conditional-request validators only once what they describe has been written
        for url, _res, v in results:
            if v.get("etag") or v.get("last_modified"):
                pipe.hset(k.feed_http(name), url, orjson.dumps(v))
        writer.flush()
        if len(pipe):  # no stream entry this time: our own commands are still queued
            pipe.execute()
        report.warnings = sum(1 for raw in r.hvals(k.warnings) if orjson.loads(raw).get("source") == name)

    def _write_stations(self, stations: list[Station], report: PollReport, complete: bool) -> None:
        r, k = self.r, self.keys
        if stations:
            stations = [apply_overrides(s, self.source.station_overrides) for s in stations]
            uniq = {s.id: s for s in stations}
            ids = list(uniq)
            olds = r.hmget(k.stations, ids)
            changed = {}
            for sid, old in zip(ids, olds, strict=True):
                new = uniq[sid].model_dump_json()
                if old is None or orjson.loads(old) != orjson.loads(new):
                    changed[sid] = new
            if changed:
                with r.pipeline(transaction=True) as pipe:
                    pipe.hset(k.stations, mapping=changed)
                    pipe.hincrby(k.meta, "registry_version", 1)  # engines reload their registry
                    pipe.execute()
        if not complete:
            return
        delivered = {s.id for s in stations}
        known = {x.decode() for x in r.smembers(k.feed_stations(self.name))}
        if delivered:
            r.sadd(k.feed_stations(self.name), *delivered)
        report.missing = sorted(known - delivered)

    def _write_warnings(self, writer: StreamWriter, warnings: list[ExternalWarning], report: PollReport,
                        now: int, complete: bool) -> None:
        r, k, pipe = self.r, self.keys, writer.pipe
        current = {w.id: w for w in warnings}
        stored = {}
        for wid, raw in r.hgetall(k.warnings).items():
            d = orjson.loads(raw)
            if d.get("source") == self.name:
                stored[wid.decode()] = d
        for w in current.values():
            blob = w.model_dump_json()
            old = stored.get(w.id)
            if old is not None and ExternalWarning.model_validate(old) == w:
                continue  # already known, unchanged
            if w.msg_type == "Cancel":
                pipe.hdel(k.warnings, w.id, *w.references)
            else:
                pipe.hset(k.warnings, w.id, blob)
                if w.references:
                    pipe.hdel(k.warnings, *[x for x in w.references if x != w.id])
            pipe.xadd(k.warnings_stream, {"event": w.msg_type.lower(), "id": w.id, "warning": blob},
                      maxlen=50_000, approximate=True)
            writer.warning(w)
        if complete:
            superseded = {ref for w in current.values() for ref in w.references}
            for wid, d in stored.items():
                if wid in current or wid in superseded:
                    continue
                end = ExternalWarning(id=f"{wid}#ended", source=self.name, sender=d.get("sender", ""),
                                      event=d.get("event", ""), headline="no longer listed by the source",
                                      msg_type="Cancel", status=d.get("status", "Actual"), sent=now,
                                      references=[wid])
                pipe.hdel(k.warnings, wid)
                pipe.xadd(k.warnings_stream, {"event": "ended", "id": wid, "warning": end.model_dump_json()},
                          maxlen=50_000, approximate=True)
                writer.warning(end)

    def _update_health(self, report: PollReport, now: int) -> None:
        r, hk = self.r, self.keys.feed_health(self.name)
        prev_state = self._state or (r.hget(hk, "state") or b"idle").decode()
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
                log.warning("feed %s recovered", self.name)
            elif state != "ok":
                log.warning("feed %s %s: %s", self.name, state, mapping.get("last_error"))
            else:
                log.info("feed %s ok", self.name)
        if report.ok and new_missing != old_missing:
            if new_missing:
                log.warning("feed %s: stations no longer delivered: %s", self.name, new_missing)
            else:
                log.warning("feed %s: every station is delivered again", self.name)
        self._state = state

    # ---- the loop --------------------------------------------------------------------------------
    def run(self, stop: threading.Event, max_polls: int | None = None) -> int:
        """Poll every `interval_s` until `stop` is set (or `max_polls` polls). Returns polls made."""
        n = 0
        while not stop.is_set():
            try:
                self.poll()
            except redis.RedisError as exc:  # Redis itself is down: say so, keep trying
                log.error("feed %s: Redis error: %s", self.name, exc)
            n += 1
            if max_polls is not None and n >= max_polls:
                break
            wait = self.source.interval_s
            nb = self.r.hget(self.keys.feed_health(self.name), "not_before")
            if nb:
                wait = max(wait, (int(nb) - self.clock()) / 1000)
            stop.wait(max(wait, 0.01))
        return n


def ingest_result(r: redis.Redis, keys: Keys, source: Source, result: ParseResult, now: int | None = None) -> PollReport:
    """Write an already parsed result as if a poll had fetched it (used by tools and tests)."""
    coord = FeedCoordinator(source, r, keys, client=httpx.Client())
    report = PollReport(source.name, ok=True)
    coord._ingest([("local:", result, {})], report, now or now_ms(), False)
    coord._update_health(report, now or now_ms())
    coord.client.close()
    return report


def iter_json_lines(result: ParseResult) -> Iterable[dict[str, Any]]:
    """What `feeds parse` prints: stations, readings, forecasts, warnings, rejected records."""
    from command.timeutil import to_iso

    for st in result.stations:
        yield {"type": "station", **st.model_dump()}
    for rd in result.readings:
        yield {"type": "reading", **rd.to_json()}
    for fc in result.forecasts:
        yield {"type": "forecast", **fc.to_json()}
    for w in result.warnings:
        d = w.model_dump()
        for t in ("sent", "onset", "expires", "ends"):
            d[t] = to_iso(d[t])
        yield {"type": "warning", **d}
    for link in result.follow:
        yield {"type": "link", "url": link}
    for rej in result.rejected:
        yield {"type": "rejected", "reason": rej.reason, "record": rej.record}
