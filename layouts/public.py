"""Open data: what is classified public, for anyone, without signing in (docs/security.md, "Open data").

- `GET /public/alerts.atom`: the current LIVE alerts as an Atom feed of CAP 1.2 messages (`scope`
  Public), built for the public viewer: only fields graded public (an alert's free text, which can
  quote an incident's description, is internal and left out);
- `GET /public/cap/<fingerprint>.xml`: one live alert's newest CAP message (the feed's links);
- `GET /public/stations.geojson`: the stations and their latest readings.

Only the `live` namespace, and only while it is not an exercise: drill data never appears here.
Each client address (an IPv6 address per /64, behind `ECD_PROXY_HOPS` proxies the forwarded one) may
make `Settings.public_rate_per_minute` requests a minute (a Redis counter per address and minute,
`keys.open_data_rate`); past that, 429 with Retry-After. Answers may be cached for a short while and
read from any site (CORS `*`): they hold nothing that is not public.
"""

from __future__ import annotations

import time

import flask
import redis

from command.config import Settings
from command.errors import NotFound
from command.keys import LIVE, Keys, open_data_rate
from command.publish import cap, geojson
from command.trust.classification import PUBLIC
from command.trust.throttle import address_of

from .access import route_policy
from .common import rds

CACHE_SECONDS = 30


class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many requests: retry after {retry_after} s")
        self.retry_after = retry_after


def count_request(r: redis.Redis, address: str, limit: int, now_s: float) -> int | None:
    """Count one request of `address` in the current minute; the seconds to wait (until the next
    minute) when it is over `limit`, else None."""
    minute = int(now_s // 60)
    key = open_data_rate(address, minute)
    with r.pipeline(transaction=True) as p:
        p.incr(key)
        p.expire(key, 120)
        n, _ = p.execute()
    if int(n) > limit:
        return max(1, 60 - int(now_s % 60))
    return None


def _live(r: redis.Redis) -> Keys | None:
    """The live namespace, unless it is missing or marked an exercise (never publish a drill)."""
    keys = Keys(LIVE)
    mode = r.hget(keys.meta, "mode")
    if mode is None and not r.exists(keys.meta):
        return None
    return None if mode == b"exercise" else keys


def _open(resp: flask.Response) -> flask.Response:
    resp.headers["Cache-Control"] = f"public, max-age={CACHE_SECONDS}"
    resp.headers["Access-Control-Allow-Origin"] = "*"
    return resp


def register_routes(server: flask.Flask, settings: Settings) -> None:
    limit = settings.public_rate_per_minute

    def throttle() -> None:
        wait = count_request(rds(), address_of(flask.request.remote_addr), limit, time.time())
        if wait is not None:
            raise RateLimited(wait)

    @server.errorhandler(RateLimited)
    def _too_many(exc: RateLimited):
        resp = flask.jsonify({"error": "too_many_requests", "message": str(exc), "retry_after": exc.retry_after})
        resp.status_code = 429
        resp.headers["Retry-After"] = str(exc.retry_after)
        return resp

    @server.route("/public/alerts.atom")
    @route_policy(open=True, note="open data: public alerts, live only, rate-limited per address")
    def _public_atom():
        throttle()
        r = rds()
        keys = _live(r)
        base = flask.request.url_root.rstrip("/") + "/public"
        if keys is None:  # no live namespace (or an exercise): an empty feed
            keys, empty = Keys(LIVE), True
        else:
            empty = False
        body = cap.atom_feed(r, keys, base_url=base, viewer=PUBLIC, limit=0 if empty else 500)
        return _open(flask.Response(body, mimetype="application/atom+xml"))

    @server.route("/public/cap/<fingerprint>.xml")
    @route_policy(open=True, note="open data: one public alert as CAP 1.2, live only, rate-limited")
    def _public_cap(fingerprint: str):
        throttle()
        r = rds()
        keys = _live(r)
        chain = cap.alert_messages(r, keys, viewer=PUBLIC, only=fingerprint).get(fingerprint) if keys else None
        if not chain:
            raise NotFound(f"no alert {fingerprint!r}", field="fingerprint")
        return _open(flask.Response(chain[-1][1], mimetype="application/cap+xml"))

    @server.route("/public/stations.geojson")
    @route_policy(open=True, note="open data: stations and their latest level, live only, rate-limited")
    def _public_stations():
        throttle()
        r = rds()
        keys = _live(r)
        fc = geojson.collect_stations(r, keys, PUBLIC) if keys is not None else {"type": "FeatureCollection",
                                                                                   "features": []}
        return _open(flask.Response(flask.json.dumps(fc), mimetype="application/geo+json"))
