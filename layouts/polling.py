"""Operators first when the web workers are overloaded: department and shell polls are shed.

Every page polls (`dcc.Interval`): the operator map each second (`map-tick`), a department's phone each
second (`dept-tick`), every page's top bar every 2 s (`shell-tick`). When more clients poll than a web
worker can answer, every request waits in the same queue and the duty officer's map is as late as
everyone's (bench/web_load.py, docs/performance.md).

`PollShedder` wraps the Flask app (WSGI) in each web worker. It keeps a moving average of how long this
worker takes to answer the callbacks it serves (`/_dash-update-component`; a sign-in's deliberately
slow password hash does not count). While that average is above `threshold_ms`, a request that is
*only* a department or shell poll (its `changedPropIds` name nothing but `dept-tick` or `shell-tick`
intervals) is answered at once with **204 No Content**, before the session is read or Dash is
called: Dash takes 204 as "nothing to update", and the page asks again at its next tick. The same
happens while the worker's other threads are all answering callbacks (`BUSY_LIMIT`): requests then
queue in gunicorn before they reach the app, which no answer time shows. One in
`SERVE_EVERY` of them is served all the same, so the average keeps following the load (and stops
the shedding once answers are fast again) and no phone goes without news for long.
Anything else (the operator map and queue, every click, form and command, every page load) is served
as usual. Shedding costs the shed client one tick of freshness, and frees the worker for the rest;
as soon as the average is back under the threshold nothing is shed.

A 204 says nothing (no body), so it needs no access check: a shed request from someone not signed in
learns nothing, and the next one that is not shed is checked as usual. `shed` counts what was shed.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson

# the intervals whose polls may wait a tick: a department's task list and every page's top bar
LOW_PRIORITY = frozenset({"dept-tick.n_intervals", "shell-tick.n_intervals"})
# gunicorn runs each worker with 4 threads (command/runtime/supervisor.py): with 3 callbacks in hand the
# last thread is kept for what must not wait
BUSY_LIMIT = 3
SERVE_EVERY = 4  # while overloaded, one low-priority poll in this many is served (and measured)
MAX_PEEK = 64 * 1024  # bytes of a callback body read to classify it (a poll's body is a few KB)
DASH_UPDATE = "/_dash-update-component"


def low_priority(body: bytes) -> bool:
    """Is this callback body a poll that may be shed (only low-priority intervals changed)?"""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    changed = doc.get("changedPropIds") if isinstance(doc, dict) else None
    return isinstance(changed, list) and bool(changed) and all(c in LOW_PRIORITY for c in changed)


class PollShedder:
    """WSGI middleware: 204 for low-priority polls while this worker's answers are slow."""

    def __init__(self, app: Callable[..., Iterable[bytes]], threshold_ms: float, alpha: float = 0.1,
                 busy_limit: int = BUSY_LIMIT) -> None:
        self.app = app
        self.busy_limit = busy_limit
        self.in_flight = 0  # callbacks being answered by this worker's threads now
        self.threshold_s = threshold_ms / 1000
        self.alpha = alpha
        self.average_s = 0.0  # moving average of the time to answer a request that was served
        self.shed = 0
        self.served = 0
        self._in_a_row = 0
        self._lock = threading.Lock()

    def overloaded(self) -> bool:
        """Slow answers, or every other thread of this worker busy with a callback (requests then wait
        in gunicorn's queue, where no answer time shows it)."""
        if self.threshold_s <= 0:
            return False
        return self.average_s > self.threshold_s or (self.busy_limit > 0 and self.in_flight >= self.busy_limit)

    def _shed_this_one(self) -> bool:
        with self._lock:
            self._in_a_row += 1
            if self._in_a_row >= SERVE_EVERY:
                self._in_a_row = 0
                return False
            self.shed += 1
            return True

    def observe(self, seconds: float) -> None:
        with self._lock:
            self.served += 1
            self.average_s += self.alpha * (seconds - self.average_s)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if (self.overloaded() and environ.get("PATH_INFO") == DASH_UPDATE
                and environ.get("REQUEST_METHOD") == "POST"):
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if 0 < length <= MAX_PEEK:
                body = environ["wsgi.input"].read(length)
                environ["wsgi.input"] = io.BytesIO(body)  # the app reads it again as sent
                if low_priority(body) and self._shed_this_one():
                    start_response("204 NO CONTENT", [("Content-Length", "0"), ("Cache-Control", "no-store"),
                                                      ("X-Content-Type-Options", "nosniff")])
                    return [b""]
        if environ.get("PATH_INFO") != DASH_UPDATE:
            return self.app(environ, start_response)
        start = time.perf_counter()
        with self._lock:
            self.in_flight += 1
        try:
            return self.app(environ, start_response)
        finally:
            with self._lock:
                self.in_flight -= 1
            self.observe(time.perf_counter() - start)


def install(server: Any, threshold_ms: float) -> PollShedder:
    """Wrap the Flask server's WSGI app (the web workers serve `server`); 0 turns shedding off."""
    shedder = PollShedder(server.wsgi_app, threshold_ms)
    server.wsgi_app = shedder
    return shedder
