"""The feed framework over real HTTP: every failure a real service produces ends with the source's
health saying what happened, and nothing lost or duplicated."""

from __future__ import annotations

import email.utils
import time

import pytest
from werkzeug import Response

from command.streams import READING
from feeds.coordinator import FeedCoordinator
from feeds.errors import PayloadError, PermanentError, RateLimited, TransientError
from feeds.health import feed_status, read_health
from feeds.http import RetryPolicy, load_json, parse_retry_after
from feeds.usgs import USGSSource

from .conftest import coordinator, deadletters, fixture_bytes, readings_in_stream, usgs_variant

PATH = "/nwis/iv/"


def usgs(server, **cfg) -> USGSSource:
    base = {"url": server.url_for(PATH), "sites": ["01491000", "01645000"], "interval": "5m",
            "retry": {"max_tries": 3, "base": 0.5, "cap": 30}, "read_timeout": 0.5, "connect_timeout": 0.5}
    base.update(cfg)
    return USGSSource(base)


def test_recorded_payload_over_http_gives_four_readings_and_health(server, r, keys, clock, sleeps):
    server.expect_request(PATH).respond_with_data(fixture_bytes("usgs_iv.json"), content_type="application/json")
    c = coordinator(usgs(server), r, keys, clock, sleeps)
    rep = c.poll()
    assert rep.ok and rep.readings == 4 and rep.rejected == 0
    got = sorted(readings_in_stream(r, keys))
    assert [(s, k) for s, k, _t, _v in got] == [("usgs:01491000", "discharge"), ("usgs:01491000", "water_level"),
                                               ("usgs:01645000", "discharge"), ("usgs:01645000", "water_level")]
    h = read_health(r, keys, "usgs")
    assert h["state"] == "ok" and h["readings"] == 4 and h["consecutive_failures"] == 0
    assert h["last_poll"] == clock.t and h["last_success"] == clock.t
    assert h["newest"] == 1581632100000  # 2020-02-13T17:15-05:00, the newer of the two sites
    assert h["newest_age_s"] == pytest.approx((clock.t - 1581632100000) / 1000)
    assert r.sismember(keys.feeds, "usgs")
    assert feed_status(h, clock.t) == "green"
    # the site metadata became stations, and the map's latest values are there
    assert r.hget(keys.stations, "usgs:01491000") is not None
    assert r.hexists(keys.latest, "usgs:01645000")


def test_same_payload_twice_takes_each_reading_once(server, r, keys, clock, sleeps):
    server.expect_request(PATH).respond_with_data(fixture_bytes("usgs_iv.json"), content_type="application/json")
    c = coordinator(usgs(server), r, keys, clock, sleeps)
    c.poll()
    clock.advance(300)
    rep = c.poll()
    assert rep.ok and rep.readings == 0 and rep.duplicates == 4
    assert len(readings_in_stream(r, keys)) == 4
    assert read_health(r, keys, "usgs")["readings"] == 4


def test_timeout_is_retried_then_reported_in_words(server, r, keys, clock, sleeps):
    def slow(_req):
        time.sleep(1.5)
        return Response(fixture_bytes("usgs_iv.json"), content_type="application/json")

    server.expect_request(PATH).respond_with_handler(slow)
    c = coordinator(usgs(server, read_timeout=0.3), r, keys, clock, sleeps)
    rep = c.poll()
    assert not rep.ok and isinstance(rep.errors[0], TransientError)
    assert len(sleeps) == 2  # 3 tries, 2 backoff waits
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0  # exponential, with jitter
    h = read_health(r, keys, "usgs")
    assert h["state"] == "failing" and h["consecutive_failures"] == 1 and h["retryable"] == "1"
    assert "no answer within 0.3 s (read timeout)" in h["last_error"]
    assert h["error_kind"] == "TransientError"
    assert readings_in_stream(r, keys) == []
    assert feed_status(h, clock.t) == "failing"


def test_500_then_recovery_within_one_poll(server, r, keys, clock, sleeps):
    server.expect_ordered_request(PATH).respond_with_data("upstream exploded", status=500)
    server.expect_ordered_request(PATH).respond_with_data(fixture_bytes("usgs_iv.json"),
                                                          content_type="application/json")
    c = coordinator(usgs(server), r, keys, clock, sleeps)
    rep = c.poll()
    assert rep.ok and rep.readings == 4 and len(sleeps) == 1
    assert read_health(r, keys, "usgs")["state"] == "ok"


def test_500_every_time_keeps_last_good_data_and_recovers(server, r, keys, clock, sleeps, caplog):
    server.expect_oneshot_request(PATH).respond_with_data(fixture_bytes("usgs_iv.json"),
                                                          content_type="application/json")
    c = coordinator(usgs(server), r, keys, clock, sleeps)
    assert c.poll().ok
    for _ in range(3):
        server.expect_oneshot_request(PATH).respond_with_data("<h1>Internal Server Error</h1>", status=500)
    clock.advance(300)
    with caplog.at_level("WARNING", logger="feeds.health"):
        rep = c.poll()
    assert not rep.ok
    h = read_health(r, keys, "usgs")
    assert h["state"] == "failing" and "HTTP 500" in h["last_error"] and h["consecutive_failures"] == 1
    assert len(readings_in_stream(r, keys)) == 4  # last good data kept
    assert r.hget(keys.stations, "usgs:01491000") is not None
    assert sum("failing" in m for m in caplog.messages) == 1  # logged once, on the change of state
    # a second failing poll: counted, not logged again
    for _ in range(3):
        server.expect_oneshot_request(PATH).respond_with_data("oops", status=503)
    clock.advance(300)
    caplog.clear()
    with caplog.at_level("WARNING", logger="feeds.health"):
        c.poll()
    assert read_health(r, keys, "usgs")["consecutive_failures"] == 2 and not caplog.messages
    # recovery: logged once, counters reset, new data taken
    server.expect_oneshot_request(PATH).respond_with_data(
        usgs_variant({"01491000:00065": [("2020-02-13T17:30:00.000-05:00", "4.40")]}), content_type="application/json")
    clock.advance(300)
    with caplog.at_level("WARNING", logger="feeds.health"):
        assert c.poll().ok
    assert any("recovered" in m for m in caplog.messages)
    h = read_health(r, keys, "usgs")
    assert h["state"] == "ok" and h["consecutive_failures"] == 0 and h["readings"] == 5
    assert "HTTP 503" in h["last_error"]  # the last error stays readable after recovery


def test_429_with_retry_after_seconds_is_honoured(server, r, keys, clock, sleeps):
    server.expect_ordered_request(PATH).respond_with_data("slow down", status=429, headers={"Retry-After": "7"})
    server.expect_ordered_request(PATH).respond_with_data(fixture_bytes("usgs_iv.json"),
                                                          content_type="application/json")
    c = coordinator(usgs(server), r, keys, clock, sleeps)
    rep = c.poll()
    assert rep.ok and rep.readings == 4
    assert sleeps == [pytest.approx(7.0)]  # waited what the server asked, not the shorter backoff


def test_429_with_long_retry_after_date_holds_the_next_poll_back(server, r, keys, clock, sleeps):
    later = email.utils.formatdate(clock.t / 1000 + 600, usegmt=True)  # an HTTP date, 10 min ahead
    server.expect_oneshot_request(PATH).respond_with_data("quota", status=429, headers={"Retry-After": later})
    c = coordinator(usgs(server), r, keys, clock, sleeps)
    rep = c.poll()
    assert not rep.ok and isinstance(rep.errors[0], RateLimited) and sleeps == []
    h = read_health(r, keys, "usgs")
    assert h["state"] == "waiting" and "HTTP 429" in h["last_error"]
    assert h["not_before"] == pytest.approx(clock.t + 600_000, abs=1000)
    clock.advance(60)
    assert c.poll().skipped  # no request before the date
    assert len(server.log) == 1
    server.expect_oneshot_request(PATH).respond_with_data(fixture_bytes("usgs_iv.json"),
                                                          content_type="application/json")
    clock.advance(600)
    assert c.poll().ok
    assert read_health(r, keys, "usgs")["state"] == "ok"


def test_html_error_page_instead_of_json_goes_to_dead_letters(server, r, keys, clock, sleeps):
    page = b"<!DOCTYPE html><html><head><title>Service Unavailable - Maintenance</title></head><body>x</body></html>"
    server.expect_request(PATH).respond_with_data(page, status=200, content_type="text/html")
    c = coordinator(usgs(server), r, keys, clock, sleeps)
    rep = c.poll()
    assert not rep.ok and isinstance(rep.errors[0], PayloadError) and sleeps == []  # no retry: same page again
    h = read_health(r, keys, "usgs")
    assert "expected JSON, got an HTML page: 'Service Unavailable - Maintenance'" in h["last_error"]
    assert h["retryable"] == "0" and h["rejected"] == 1
    dl = deadletters(r, keys)
    assert dl[0]["source"] == "usgs" and "HTML page" in dl[0]["reason"]
    assert dl[0]["record"]["payload"].startswith("<!DOCTYPE html>")


def test_truncated_json_is_rejected_whole_and_nothing_half_taken(server, r, keys, clock, sleeps):
    body = fixture_bytes("usgs_iv.json")
    server.expect_request(PATH).respond_with_data(body[: len(body) // 2], content_type="application/json")
    c = coordinator(usgs(server), r, keys, clock, sleeps)
    rep = c.poll()
    assert not rep.ok
    h = read_health(r, keys, "usgs")
    assert h["last_error"].startswith("truncated JSON") and h["error_kind"] == "PayloadError"
    assert readings_in_stream(r, keys) == [] and r.hlen(keys.feed_hwm("usgs")) == 0


def test_empty_list_is_a_success_that_reports_missing_stations(server, r, keys, clock, sleeps):
    server.expect_oneshot_request(PATH).respond_with_data(fixture_bytes("usgs_iv.json"),
                                                          content_type="application/json")
    c = coordinator(usgs(server), r, keys, clock, sleeps)
    c.poll()
    server.expect_oneshot_request(PATH).respond_with_data(usgs_variant({}, drop_sites=("01491000", "01645000")),
                                                          content_type="application/json")
    clock.advance(300)
    rep = c.poll()
    assert rep.ok and rep.readings == 0
    h = read_health(r, keys, "usgs")
    assert h["state"] == "ok" and h["missing"] == "usgs:01491000,usgs:01645000"
    assert len(readings_in_stream(r, keys)) == 4 and r.hlen(keys.stations) == 2  # nothing lost


def test_station_that_disappears_is_named_until_it_returns(server, r, keys, clock, sleeps, caplog):
    server.expect_oneshot_request(PATH).respond_with_data(fixture_bytes("usgs_iv.json"),
                                                          content_type="application/json")
    c = coordinator(usgs(server), r, keys, clock, sleeps)
    c.poll()
    gone = usgs_variant({"01491000:00065": [("2020-02-13T17:30:00.000-05:00", "4.38")],
                         "01491000:00060": [("2020-02-13T17:30:00.000-05:00", "441")]}, drop_sites=("01645000",))
    for _ in range(2):
        server.expect_oneshot_request(PATH).respond_with_data(gone, content_type="application/json")
    clock.advance(300)
    with caplog.at_level("WARNING", logger="feeds.health"):
        rep = c.poll()
    assert rep.ok and rep.readings == 2 and rep.missing == ["usgs:01645000"]
    assert read_health(r, keys, "usgs")["missing"] == "usgs:01645000"
    assert any("no longer delivered: usgs:01645000" in m for m in caplog.messages)
    clock.advance(300)
    assert c.poll().missing == ["usgs:01645000"]  # still missing next time
    server.expect_oneshot_request(PATH).respond_with_data(fixture_bytes("usgs_iv.json"),
                                                          content_type="application/json")
    clock.advance(300)
    assert c.poll().missing == []
    assert read_health(r, keys, "usgs")["missing"] == ""
    assert len(readings_in_stream(r, keys)) == 6  # 4 + 2, no reading twice


def test_404_is_permanent_and_not_retried(server, r, keys, clock, sleeps):
    server.expect_request(PATH).respond_with_json({"message": "No sites found matching the query"}, status=404)
    c = coordinator(usgs(server), r, keys, clock, sleeps)
    rep = c.poll()
    assert isinstance(rep.errors[0], PermanentError) and not rep.errors[0].retryable and sleeps == []
    assert "HTTP 404 NOT FOUND: No sites found matching the query" in read_health(r, keys, "usgs")["last_error"]


def test_connection_refused_is_transient(r, keys, clock, sleeps):
    src = USGSSource({"url": "http://127.0.0.1:9/nwis/iv/", "sites": ["01491000"], "connect_timeout": 0.5,
                      "retry": {"max_tries": 2}})
    rep = coordinator(src, r, keys, clock, sleeps).poll()
    assert isinstance(rep.errors[0], TransientError) and len(sleeps) == 1
    assert "cannot connect" in read_health(r, keys, "usgs")["last_error"]


def test_conditional_request_sends_etag_and_304_changes_nothing(server, r, keys, clock, sleeps):
    server.expect_ordered_request(PATH).respond_with_data(
        fixture_bytes("usgs_iv.json"), content_type="application/json",
        headers={"ETag": '"v1"', "Last-Modified": "Thu, 13 Feb 2020 22:51:41 GMT"})
    server.expect_ordered_request(PATH, headers={"If-None-Match": '"v1"',
                                                 "If-Modified-Since": "Thu, 13 Feb 2020 22:51:41 GMT"}
                                  ).respond_with_data("", status=304)
    c = coordinator(usgs(server), r, keys, clock, sleeps)
    c.poll()
    clock.advance(300)
    rep = c.poll()
    assert rep.ok and rep.not_modified and rep.readings == 0
    server.check_assertions()
    h = read_health(r, keys, "usgs")
    assert h["not_modified"] == "1" and h["state"] == "ok" and h["readings"] == 4


def test_restart_mid_stream_takes_each_reading_exactly_once(server, r, keys, clock, sleeps, monkeypatch):
    t = ["2020-02-13T17:00:00.000-05:00", "2020-02-13T17:15:00.000-05:00", "2020-02-13T17:30:00.000-05:00",
         "2020-02-13T17:45:00.000-05:00", "2020-02-13T18:00:00.000-05:00"]
    first = usgs_variant({"01491000:00065": [(t[0], "4.30"), (t[1], "4.36"), (t[2], "4.41")]})
    second = usgs_variant({"01491000:00065": [(t[1], "4.36"), (t[2], "4.41"), (t[3], "4.50"), (t[4], "4.62")]})
    server.expect_ordered_request(PATH).respond_with_data(first, content_type="application/json")
    server.expect_ordered_request(PATH).respond_with_data(second, content_type="application/json")
    server.expect_ordered_request(PATH).respond_with_data(second, content_type="application/json")
    c = coordinator(usgs(server), r, keys, clock, sleeps)
    c.poll()
    # the process dies while writing the second poll: before its MULTI/EXEC runs
    import command.streams

    real_flush = command.streams.StreamWriter.flush

    def crash(self):
        raise SystemExit("killed mid-write")

    monkeypatch.setattr(command.streams.StreamWriter, "flush", crash)
    with pytest.raises(SystemExit):
        c.poll()
    monkeypatch.setattr(command.streams.StreamWriter, "flush", real_flush)
    # a new process (a new coordinator, nothing in memory) polls the overlapping window again
    c2 = FeedCoordinator(usgs(server), r, keys, clock=clock, sleep=sleeps)
    rep = c2.poll()
    assert rep.readings == 2 and rep.duplicates >= 2
    wl = [(tt, v) for s, k, tt, v in readings_in_stream(r, keys) if s == "usgs:01491000" and k == "water_level"]
    assert [v / 0.3048 for _t, v in wl] == pytest.approx([4.30, 4.36, 4.41, 4.50, 4.62])
    assert len({tt for tt, _v in wl}) == len(wl) == 5  # each reading exactly once, in order


def test_sentinel_value_goes_to_dead_letters_and_the_rest_is_kept(server, r, keys, clock, sleeps):
    body = usgs_variant({"01491000:00065": [("2020-02-13T17:15:00.000-05:00", "-999999"),
                                            ("2020-02-13T17:30:00.000-05:00", "4.41")],
                         "01645000:00060": [("2020-02-13T16:50:00.000-05:00", "")]})
    server.expect_request(PATH).respond_with_data(body, content_type="application/json")
    c = coordinator(usgs(server), r, keys, clock, sleeps)
    rep = c.poll()
    assert rep.ok and rep.readings == 3 and rep.rejected == 2
    reasons = sorted(d["reason"] for d in deadletters(r, keys))
    assert reasons == ["missing value", "no-data value -999999 (the series' noDataValue)"]
    assert read_health(r, keys, "usgs")["rejected"] == 2


def test_parse_retry_after_forms():
    now = 1_700_000_000_000
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(email.utils.formatdate(now / 1000 + 30, usegmt=True), now) == pytest.approx(30, abs=1)
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None


def test_backoff_is_exponential_capped_and_jittered():
    import random

    p = RetryPolicy(max_tries=6, base=1, cap=5)
    rng = random.Random(1)
    # the n-th wait is uniform in [d/2, d], d = min(cap, base * 2**(n-1)): 1, 2, 4, then capped at 5
    for attempt, d in [(1, 1), (2, 2), (3, 4), (4, 5), (5, 5), (9, 5)]:
        waits = [p.delay(attempt, rng) for _ in range(50)]
        assert all(d / 2 <= w <= d for w in waits), (attempt, min(waits), max(waits))
        assert len(set(waits)) == len(waits)  # jittered: no two waits for the same attempt alike
        assert min(waits) < d / 2 + d / 8 and max(waits) > d - d / 8  # spread over the range, not an offset
    # the jitter comes from the RNG passed in: the same seed gives the same waits, another seed others
    same = [[p.delay(3, random.Random(7)) for _ in range(2)] for _ in range(2)]
    assert same[0] == same[1]
    assert p.delay(3, random.Random(7)) != p.delay(3, random.Random(8))


def test_feed_errors_are_command_errors_and_keep_their_attributes(server, r, keys, clock, sleeps):
    from command.errors import CommandError

    server.expect_request(PATH).respond_with_data("slow down", status=429, headers={"Retry-After": "900"})
    err = coordinator(usgs(server), r, keys, clock, sleeps).poll().errors[0]
    assert isinstance(err, RateLimited) and isinstance(err, TransientError) and isinstance(err, CommandError)
    assert err.retryable and err.status == 429 and err.retry_after == 900 and err.url.startswith(server.url_for(PATH))
    assert str(err) == err.message == "HTTP 429 TOO MANY REQUESTS: slow down"
    assert err.to_json() == {"error": "feed_rate_limited", "message": "HTTP 429 TOO MANY REQUESTS: slow down"}
    for cls in (PermanentError, PayloadError):
        e = cls("no")
        assert isinstance(e, CommandError) and not e.retryable and e.status is None and e.retry_after is None


def test_load_json_names_what_it_got():
    with pytest.raises(PayloadError, match="empty body"):
        load_json(b"  ")
    with pytest.raises(PayloadError, match="invalid JSON at line 1"):
        load_json(b'{"a": tru}')
    assert load_json(b"\xef\xbb\xbf[1]") == [1]


def test_entries_are_readings_only(server, r, keys, clock, sleeps):
    server.expect_request(PATH).respond_with_data(fixture_bytes("usgs_iv.json"), content_type="application/json")
    coordinator(usgs(server), r, keys, clock, sleeps).poll()
    fields = [f for _e, f in r.xrange(keys.shard_stream(0))]
    assert fields and all(set(f) == {READING} for f in fields)
