"""The poll loop: a `FeedCoordinator` runs one source into one namespace.

Each poll fetches the source's requests (`feeds/http.py`: timeouts, retries, conditional
requests), parses each answer with the source (`feeds/source.py`), writes what is new
(`feeds/ingest.py`: high-water marks, stations, forecasts, warnings, dead letters, all in one
MULTI/EXEC) and updates the source's health (`feeds/health.py`). Everything it needs from outside
(the HTTP transport, the clock, the sleep used between retries, Redis) is passed in, so tests
drive it with a local HTTP server and a fake clock.

A payload that cannot be parsed at all goes to the dead-letter stream whole (truncated) and the
last good data stays. A `Retry-After` longer than the backoff cap ends the poll and holds the next
one back until then (health `not_before`, state `waiting`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

import httpx
import redis

from command.keys import Keys
from command.scenarios.namespaces import deadletter
from command.streams import ensure_group, shard_count
from command.timeutil import now_ms
from command.trust.throttle import Bucket

from . import health
from .errors import FeedError, PayloadError
from .health import PollReport
from .http import Fetched, Fetcher, NotModified
from .ingest import Ingest, Results
from .source import ParseResult, Request, Source

log = logging.getLogger(__name__)

DEADLETTER_PAYLOAD_MAX = 8192  # bytes of an unparseable payload kept in its dead letter
# A source's default rate limit: a first poll may bring a backlog (the burst), then a sustained rate far
# above any real gauge network's; feeds.yaml `rate_limit: {per_second, burst}` (or `rate_limit: off`).
DEFAULT_RATE_PER_S = 1000.0
DEFAULT_BURST = 50_000


def rate_limit(cfg: dict) -> Bucket | None:
    """The source's token bucket from its feeds.yaml entry (None: `rate_limit: off`)."""
    raw = cfg.get("rate_limit", {})
    if raw in ("off", False):
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"rate_limit must be a mapping {{per_second, burst}} or off, not {raw!r}")
    per_s = float(raw.get("per_second", DEFAULT_RATE_PER_S))
    burst = float(raw.get("burst", max(DEFAULT_BURST, per_s)))
    if per_s <= 0 or burst < 1:
        raise ValueError(f"rate_limit: per_second must be > 0 and burst >= 1 (got {per_s}, {burst})")
    return Bucket(per_s, burst)


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
        self.ingest = Ingest(r, keys, self.name, shards=self.shards, station_overrides=source.station_overrides,
                             rate=rate_limit(source.cfg))
        self.fetcher = Fetcher(self.client, timeout=source.timeout, retry=source.retry, clock=clock, sleep=sleep,
                               rng=self.rng, validators=self.ingest.validators)
        self._state: str | None = None
        health.register(r, keys, self.name, source.interval_s)

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    def fetch(self, req: Request, url: str | None = None) -> Fetched | NotModified:
        """GET one request with retries (see `Fetcher.fetch`)."""
        return self.fetcher.fetch(url or req.full_url, req.headers)

    # ---- one poll --------------------------------------------------------------------------------
    def poll(self) -> PollReport:
        now = self.clock()
        report = PollReport(self.name, ok=True)
        nb = health.not_before(self.r, self.keys, self.name)
        if nb and nb > now:
            report.skipped = True
            health.poll_started(self.r, self.keys, self.name, now, held_back=True)
            return report
        health.poll_started(self.r, self.keys, self.name, now)
        results: Results = []
        not_modified = 0
        warnings_complete = True
        requests = self.source.requests(now)
        for req in requests:
            url = req.full_url
            try:
                got = self.fetch(req, url)
                if not isinstance(got, Fetched):  # 304 Not Modified
                    not_modified += 1
                    if req.complete_warnings:
                        warnings_complete = False  # nothing new said about which warnings ended
                    continue
                try:
                    res = self.source.parse(got.body, req, now)
                except PayloadError as exc:
                    exc.url = url
                    deadletter(self.r, self.keys, self.name,
                               {"url": url, "payload": got.body[:DEADLETTER_PAYLOAD_MAX].decode("utf-8", "replace")},
                               str(exc))
                    report.rejected += 1
                    raise
                for link in res.follow:
                    res.extend(self._follow(link, now, report))
                results.append((url, res, got.validators))
            except FeedError as exc:
                exc.url = exc.url or url
                report.errors.append(exc)
                if req.complete_warnings:
                    warnings_complete = False
        any_complete = any(q.complete_warnings for q in requests)
        self.ingest.write(results, report, now, warnings_complete and any_complete and not report.errors)
        report.not_modified = bool(requests) and not_modified == len(requests)
        report.ok = not report.errors
        self._state = health.update_health(self.r, self.keys, self.name, report, now, self._state)
        return report

    def _follow(self, link: str, now: int, report: PollReport) -> ParseResult:
        try:
            got = self.fetch(Request(link), link)
            if not isinstance(got, Fetched):  # 304 Not Modified
                return ParseResult()
            return self.source.parse_follow(got.body, link, now)
        except PayloadError as exc:
            report.rejected += 1
            deadletter(self.r, self.keys, self.name, {"url": link}, str(exc))
            return ParseResult()
        except FeedError as exc:
            exc.url = exc.url or link
            report.errors.append(exc)
            return ParseResult()

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
            nb = health.not_before(self.r, self.keys, self.name)
            if nb:
                wait = max(wait, (nb - self.clock()) / 1000)
            stop.wait(max(wait, 0.01))
        return n


__all__ = ["FeedCoordinator", "PollReport", "DEADLETTER_PAYLOAD_MAX"]
