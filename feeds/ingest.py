"""Writing what a source's polls parsed into a namespace, each reading exactly once.

- **Exactly once.** Each reading is keyed by (station, kind) and taken only when newer than the
  source's high-water mark (`keys.feed_hwm`); a forecast run by (station, forecast kind) and its
  issue time. The stream entries, the new marks, the map's latest values, dead letters, health
  counters and the conditional-request validators are written in one MULTI/EXEC, so a crash or
  restart between polls neither loses nor repeats a reading.
- **One flooding source never starves the rest.** Each source has a token bucket (`rate_limit` in
  feeds.yaml: readings a second and a burst); new readings past it are quarantined as dead letters
  with reason `rate_limited` and counted in the source's health.
- **One bad record never drops the rest.** A rejected record goes to the dead-letter stream with
  its reason; the others go on.
- **Stations** are written only when they changed (bumping `registry_version` so engines reload); a
  station delivered before but absent from a complete, good answer is reported `missing`.
- **Warnings**: new and changed ones are stored and sent to the engine; when the answer lists every
  warning in force, one no longer listed has ended (a Cancel is written for it).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import redis

from command.keys import Keys
from command.models import ExternalWarning, Station
from command.scenarios.namespaces import deadletter
from command.streams import StreamWriter
from command.trust.throttle import Bucket, RateLimiter

from .health import PollReport
from .source import FeedReading, ParseResult, apply_overrides

log = logging.getLogger(__name__)
RATE_LIMITED_DEADLETTERS = 1000  # excess readings of one poll kept whole as dead letters; the rest counted

# (url, what its answer parsed to, its validators), one per fetched URL of a poll
Results = list[tuple[str, ParseResult, dict[str, Any]]]


class Ingest:
    """Writes one source's parse results into one namespace."""

    def __init__(self, r: redis.Redis, keys: Keys, source: str, *, shards: int,
                 station_overrides: dict[str, dict[str, Any]] | None = None, rate: Bucket | None = None) -> None:
        self.r, self.keys, self.name, self.shards = r, keys, source, shards
        self.station_overrides = station_overrides or {}
        self.rate = rate  # the source's token bucket (readings/s and burst); None: unlimited

    # ---- conditional requests --------------------------------------------------------------------
    def validators(self, url: str) -> dict[str, Any] | None:
        """The ETag / Last-Modified kept for `url` (saved by `write` with what they describe)."""
        cached = self.r.hget(self.keys.feed_http(self.name), url)
        return orjson.loads(cached) if cached else None

    # ---- one poll's results ----------------------------------------------------------------------
    def write(self, results: Results, report: PollReport, now: int, warnings_complete: bool) -> None:
        """Write a poll's results; count what was taken in `report`."""
        r, k, name = self.r, self.keys, self.name
        merged = ParseResult()
        for _url, res, _v in results:
            merged.extend(res)
        self._write_stations(merged.stations, report, complete=not report.errors and bool(results))
        writer = StreamWriter(r, k, self.shards, record=True, transaction=True)
        pipe = writer.pipe
        newest = self._write_series(writer, merged.readings, merged.forecasts, report, now)
        self._write_warnings(writer, merged.warnings, report, now, warnings_complete)
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

    # ---- readings and forecasts, above the high-water marks --------------------------------------
    def _write_series(self, writer: StreamWriter, readings: list[FeedReading], forecasts: list[FeedReading],
                      report: PollReport, now: int) -> int | None:
        """Queue what is newer than the marks, and the new marks. Returns the newest reading's time."""
        r, k = self.r, self.keys
        pipe = writer.pipe
        hwm_key = k.feed_hwm(self.name)
        by_series: dict[str, list[FeedReading]] = {}
        for rd in readings:
            by_series.setdefault(f"{rd.station_id}|{rd.kind}", []).append(rd)
        for fc in forecasts:
            by_series.setdefault(f"{fc.station_id}|fc:{fc.kind}", []).append(fc)
        fields = list(by_series)
        marks = dict(zip(fields, r.hmget(hwm_key, fields), strict=True)) if fields else {}
        new_marks: dict[str, int] = {}
        newest = None
        forecast_store: dict[str, dict[str, Any]] = {}
        fresh: list[FeedReading] = []
        for f, items in by_series.items():
            mark = int(marks[f]) if marks.get(f) is not None else None
            if "|fc:" in f:
                issued = max(x.issued for x in items if x.issued is not None)  # a forecast has one
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
                fresh.append(rd)
                new_marks[f] = rd.t  # a quarantined excess reading is handled too: never taken later
        for rd in self._within_rate(fresh, pipe, report, now):
            writer.reading(rd.station_id, rd.kind, rd.t, rd.value)
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
        return newest

    def _within_rate(self, fresh: list[FeedReading], pipe: Any, report: PollReport,
                     now: int) -> list[FeedReading]:
        """The new readings the source's token bucket lets through, oldest first; the excess goes to the
        dead letters with reason `rate_limited` (at most RATE_LIMITED_DEADLETTERS a poll, the rest only
        counted), so one flooding source cannot swamp the engine or Redis while the others are served."""
        if self.rate is None or not fresh:
            return fresh
        fresh.sort(key=lambda x: x.t)
        got = RateLimiter(self.r).charge([(self.keys.rate_bucket("feed", self.name), self.rate)], len(fresh),
                                         partial=True, now_ms=now)
        excess = fresh[got.granted:]
        if excess:
            why = f"source over its rate limit ({self.rate.rate:g} readings/s, burst {self.rate.burst:g})"
            for rd in excess[:RATE_LIMITED_DEADLETTERS]:
                deadletter(pipe, self.keys, self.name, rd.to_json(), "rate_limited", detail=why)
            report.rate_limited += len(excess)
            pipe.hincrby(self.keys.feed_health(self.name), "rate_limited", len(excess))
            log.warning("feed %s: %d readings over its rate limit quarantined", self.name, len(excess))
        return fresh[:got.granted]

    # ---- stations --------------------------------------------------------------------------------
    def _write_stations(self, stations: list[Station], report: PollReport, complete: bool) -> None:
        r, k = self.r, self.keys
        if stations:
            stations = [apply_overrides(s, self.station_overrides) for s in stations]
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

    # ---- external warnings -----------------------------------------------------------------------
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


__all__ = ["Ingest", "Results"]
