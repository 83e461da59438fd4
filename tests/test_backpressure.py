"""Back-pressure: a flooding feed source is rate-limited (its excess quarantined with reason
`rate_limited`) while other sources are served; a user or department that bursts form or intake
submissions is refused (429 with Retry-After, an inline message on the page) while others are served.
Real Redis, crafted bursts."""

from __future__ import annotations

import base64
import math

import orjson
import pytest

from command.config import Settings
from command.errors import RateLimited
from command.keys import Keys
from command.scenarios.replay import run_replay
from command.streams import input_count
from command.timeutil import to_iso
from command.trust import audit, throttle
from command.trust.throttle import Bucket, RateLimiter, check_submission, take
from feeds.coordinator import DEFAULT_BURST, DEFAULT_RATE_PER_S, rate_limit
from feeds.health import PollReport, read_health
from feeds.ingest import RATE_LIMITED_DEADLETTERS, Ingest
from feeds.source import FeedReading, ParseResult

from .conftest import SCENARIOS

T0 = 1_784_000_000_000


# ---- the pure decision ---------------------------------------------------------------------------------
def test_a_bucket_refills_at_its_rate_up_to_its_burst():
    b = Bucket(rate=2, burst=10)
    first = take(None, None, T0, b, 4)
    assert (first.granted, first.level, first.retry_after) == (4, 6, 0)
    # all or nothing: 8 asked, 6 there -> none, and 1 s until 8 are there
    refused = take(first.level, T0, T0, b, 8)
    assert refused.granted == 0 and refused.level == 6 and refused.retry_after == pytest.approx(1.0)
    later = take(6, T0, T0 + 1000, b, 8)
    assert later.granted == 8 and later.level == pytest.approx(0)
    assert take(0, T0, T0 + 3_600_000, b, 1).level == 9  # never above the burst
    # partial: as many as there are, and how long until the rest would be
    part = take(3, T0, T0, b, 7, partial=True)
    assert (part.granted, part.level, part.retry_after) == (3, 0, 2.0)
    assert take(None, None, T0, b, 11).retry_after == math.inf  # more than a burst never fits


def test_charging_several_buckets_is_all_or_nothing(r, keys):
    lim = RateLimiter(r)
    small, big = keys.rate_bucket("user", "a"), keys.rate_bucket("department", "d")
    assert lim.charge([(small, Bucket(1, 2)), (big, Bucket(1, 100))], now_ms=T0).granted == 1
    assert lim.charge([(small, Bucket(1, 2)), (big, Bucket(1, 100))], now_ms=T0).granted == 1
    refused = lim.charge([(small, Bucket(1, 2)), (big, Bucket(1, 100))], now_ms=T0)
    assert refused.granted == 0 and refused.retry_after == pytest.approx(1.0)
    assert float(r.hget(big, "level")) == 98  # the refused one charged nobody
    assert r.pttl(small) > 0  # a bucket expires once full again


# ---- a flooding feed source ------------------------------------------------------------------------------
def _readings(n, stations, t0):
    return [FeedReading(f"FL-{i % stations:03d}", "water_level", t0 + (i // stations) * 1000, 1.0 + i / 1e5, "m")
            for i in range(n)]


def _poll(ing, readings, now):
    report = PollReport(ing.name, ok=True)
    ing.write([("http://feed.test/", ParseResult(readings=readings), {})], report, now, False)
    return report


def test_a_flooding_source_is_rate_limited_and_quarantined_while_another_is_served(r, keys):
    flood = Ingest(r, keys, "flood", shards=1, rate=Bucket(rate=100, burst=1000))
    calm = Ingest(r, keys, "calm", shards=1, rate=Bucket(rate=100, burst=1000))
    rep = _poll(flood, _readings(5000, 50, T0), now=T0)
    assert (rep.readings, rep.rate_limited) == (1000, 4000)
    calm_rep = _poll(calm, [FeedReading("CALM-1", "water_level", T0 + i * 1000, 2.0, "m") for i in range(10)], T0)
    assert (calm_rep.readings, calm_rep.rate_limited) == (10, 0)  # the other source is served in full
    assert input_count(r, keys) == 1010

    dead = [f for _e, f in r.xrange(keys.deadletter)]
    assert len(dead) == RATE_LIMITED_DEADLETTERS  # the rest of the excess is counted, not kept whole
    assert {f[b"reason"] for f in dead} == {b"rate_limited"} and {f[b"source"] for f in dead} == {b"flood"}
    first = orjson.loads(dead[0][b"record"])
    assert first["station_id"].startswith("FL-") and b"100 readings/s" in dead[0][b"detail"]
    health = read_health(r, keys, "flood")
    assert health["rate_limited"] == 4000 and health["readings"] == 1000
    assert read_health(r, keys, "calm").get("rate_limited") is None

    # the oldest readings went through; the quarantined ones are not taken later (high-water mark)
    again = _poll(flood, _readings(5000, 50, T0), now=T0 + 2000)
    assert again.readings == 0 and again.duplicates == 5000 and again.rate_limited == 0
    # 4 s after the flood the bucket has refilled 400 tokens: 400 of the next 5,000 new readings go through
    nxt = _poll(flood, _readings(5000, 50, T0 + 10_000_000), now=T0 + 4000)
    assert (nxt.readings, nxt.rate_limited) == (400, 4600)


def test_a_sources_rate_limit_comes_from_feeds_yaml():
    assert rate_limit({}) == Bucket(DEFAULT_RATE_PER_S, DEFAULT_BURST)
    assert rate_limit({"rate_limit": {"per_second": 5, "burst": 50}}) == Bucket(5, 50)
    assert rate_limit({"rate_limit": "off"}) is None
    for bad in ({"rate_limit": {"per_second": 0}}, {"rate_limit": 12}):
        with pytest.raises(ValueError):
            rate_limit(bad)


# ---- bursts of form and intake submissions -----------------------------------------------------------
@pytest.fixture
def tight(monkeypatch):
    """3 submissions at once per user (then one a minute), 5 per department."""
    monkeypatch.setattr(throttle, "submit_buckets", lambda: (Bucket(1 / 60, 3), Bucket(1 / 60, 5)))


def test_a_bursting_user_and_then_their_department_are_refused_while_others_are_served(r, keys, tight):
    for _ in range(3):
        check_submission(r, keys, "ann", "fire_rescue")
    with pytest.raises(RateLimited) as exc:
        check_submission(r, keys, "ann", "fire_rescue")
    assert exc.value.status == 429 and 1 <= exc.value.retry_after <= 60 and "try again in" in exc.value.message
    check_submission(r, keys, "bob", "fire_rescue")  # a colleague is served ...
    check_submission(r, keys, "bob", "fire_rescue")
    with pytest.raises(RateLimited):  # ... until the department's allowance (5) is spent
        check_submission(r, keys, "cat", "fire_rescue")
    check_submission(r, keys, "dan", "water_authority")  # another department is not affected


def basic(user, password="flood-demo"):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def client(redis_url, tmp_path, r):
    from app import create_app

    return create_app(Settings(data_dir=tmp_path / "var"), redis_url=redis_url).server.test_client()


def test_intake_bursts_get_429_with_retry_after_and_store_nothing(client, r, tight):
    ns = run_replay(r, SCENARIOS / "rule_zone_incident").namespace
    keys = Keys(ns)
    now = int(r.get(keys.clock))
    body = {"time": to_iso(now - 3_600_000), "category": "flooding", "lat": 30.05, "lon": 114.05}
    url = f"/api/{ns}/incidents"
    for i in range(3):
        assert client.post(url, json={**body, "id": f"B-{i}"}, headers=basic("water")).status_code == 201
    n_audit = len(audit.entries(r, keys))
    refused = client.post(url, json={**body, "id": "B-9"}, headers=basic("water"))
    assert refused.status_code == 429 and refused.get_json()["error"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert r.hget(keys.incidents, "B-9") is None and len(audit.entries(r, keys)) == n_audit
    # another department's user is served meanwhile
    assert client.post(url, json={**body, "id": "F-1"}, headers=basic("fire")).status_code == 201


def test_the_department_page_says_inline_when_a_user_bursts(r, tight):
    from layouts.department import report_incident

    ns = run_replay(r, SCENARIOS / "rule_zone_incident").namespace
    keys = Keys(ns)
    user = {"username": "fire", "department": "fire_rescue", "role": "department"}
    form = {"category": "flooding", "severity": "orange", "lat": 30.05, "lon": 114.05, "description": "water rising"}
    for _ in range(3):
        ok = report_incident(r, keys, user, form, "en")
        assert ok[0].color == "success"
    refused = report_incident(r, keys, user, form, "en")
    assert refused[0].color == "warning" and "try again in" in refused[0].children
    zh = report_incident(r, keys, user, form, "zh")
    assert "秒后再试" in zh[0].children  # in the page's language
    assert len(r.hkeys(keys.incidents)) == 3


def test_the_status_form_says_inline_when_a_user_bursts(r, tight):
    from layouts.department import submit_status

    ns = run_replay(r, SCENARIOS / "rule_zone_incident").namespace
    keys = Keys(ns)
    user = {"username": "crew", "department": "fire_rescue", "role": "department"}
    for _ in range(3):  # the user's allowance (3 at once) spent, whatever becomes of the updates
        _msg, problems = submit_status(r, keys, user, "no-such-task", "acknowledged", "", None, None, None, "en")
        assert "try again" not in " ".join(problems.values())
    n_status = r.xlen(keys.status_stream)
    _msg, problems = submit_status(r, keys, user, "no-such-task", "on_scene", "", None, None, None, "zh")
    assert "秒后再试" in problems[""] and r.xlen(keys.status_stream) == n_status
