"""Operators first: each web worker lets a few requests work at once and queues the rest by who asks.

A worker's threads share one interpreter lock, so four requests working at once finish no sooner than
one after another, and each waits its turn among them: under load (hundreds of phones redrawing after
a burst of reports) the duty officer's map waited behind every phone's request (docs/performance.md,
bench/web_load.py). Now a request takes one of the worker's `slots` (ECD_WEB_SLOTS, default 2: one
working while another waits on Redis) as it comes in, before anything else (its session, Dash), and
gives it back once its answer is ready (before it is sent). When none is free it waits: the command
centre's operators before everyone else, then in order of arrival. Waiting threads cost nothing but a
thread; the worker has many (ECD_WEB_THREADS) so that an operator's request finds one while phones'
requests queue.

Who asks is known before the session is read: a worker remembers which session ids it served an
operator (`Admission.remember`, after the sign-in gate). A crafted or unknown cookie just waits with
everyone else; the order of turns grants no access (every route and callback still checks the
session).

The same order holds one step earlier, for a thread: gunicorn's threaded worker hands each request
that arrives to its thread pool in order of arrival, so with every thread busy an operator's request
waited behind the phones' before it was even read. `OperatorsFirstWorker` (the web server's worker
class, `python app.py` uses it) keeps the requests waiting for a thread in the same order: a
connection that last carried an operator's request goes first (`CONN_PRIORITY`, set here).

Long work has a lane of its own: a route declared `@long_work` (the after-action report: the whole
drill read and drawn, 0.2-0.4 s for the sample drill, more for a long one) takes the worker's one long
turn instead of one of its `slots`. Reports asked at once are drawn one after another and never take
the turns the consoles and the phones need; they still share the worker's interpreter while they work.
(The audit export is streamed: its rows are read and written while it is sent, after its turn.)

Not queued: the static files and /health (what a load balancer or the supervisor asks).
Each answer says how long the worker took and how much of that was the wait for its turn
(`Server-Timing: app;dur=12.3, queue;dur=4.5`, milliseconds, as browsers' developer tools show it).
"""

from __future__ import annotations

import heapq
import io
import itertools
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

import flask
from gunicorn.workers.gthread import ThreadWorker
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, MapAdapter, Rule

from .web_basics import MAX_BODY_BYTES, STATIC_PATHS

FIRST = 0  # the operators' consoles (the map, its queue and dispatch board)
REST = 1
FIRST_ROLES = frozenset({"operator"})
NOT_QUEUED = (*STATIC_PATHS, "/health")  # files, and what a load balancer or the supervisor asks
REMEMBERED = 10_000  # operators' session ids a worker keeps (least recently seen out first)
# a kept-alive connection's priority, as its last request's session said (gunicorn's socket object)
CONN_PRIORITY: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


class PriorityGate:
    """At most `slots` holders at once; a waiter of a lower `priority` number goes first, then the
    earliest. A released slot passes straight to the next waiter (no thundering herd)."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("a gate needs at least one slot")
        self.slots = slots
        self._free = slots
        self._lock = threading.Lock()
        self._waiting: list[tuple[int, int, threading.Event]] = []
        self._seq = itertools.count()
        self.waited = [0, 0]  # how many requests had to wait, by priority (FIRST, REST)

    def acquire(self, priority: int) -> None:
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return
            turn = threading.Event()
            heapq.heappush(self._waiting, (priority, next(self._seq), turn))
            self.waited[min(priority, REST)] += 1
        turn.wait()  # set by release(), which handed this waiter its slot

    def release(self) -> None:
        with self._lock:
            if self._waiting:
                heapq.heappop(self._waiting)[2].set()
            else:
                self._free += 1

    @property
    def queued(self) -> int:
        return len(self._waiting)


def priority_of(user: dict[str, Any] | None) -> int:
    return FIRST if user and user.get("role") in FIRST_ROLES else REST


def long_work(view: Callable) -> Callable:
    """Declare a Flask view long work (put it under `@route_policy`): its requests take the worker's
    long turn (`Admission.long_gate`), not one of the turns the consoles and phones share."""
    view.long_work = True  # type: ignore[attr-defined]
    return view


class Admission:
    """The WSGI wrapper around the Flask app: a turn per request, operators' first; Server-Timing."""

    def __init__(self, app: Callable[..., Iterable[bytes]], slots: int, cookie: str,
                 long_routes: Callable[[], Map] | None = None) -> None:
        self.app = app
        self.gate = PriorityGate(slots)
        self.long_gate = PriorityGate(1)  # long work, one at a time (`long_work`)
        self._long_routes = long_routes  # the long routes' map, read once the app has all its routes
        self._long: MapAdapter | None = None
        self._cookie = re.compile(r"(?:^|;)\s*" + re.escape(cookie) + r"=([A-Za-z0-9_-]{43})(?:;|$)")
        self._first: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def is_long(self, environ: dict[str, Any]) -> bool:
        if self._long is None:
            if self._long_routes is None:
                return False
            self._long = self._long_routes().bind("localhost")
        try:
            self._long.match(environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET"))
        except HTTPException:  # not one of them (404, 405): a turn like any other
            return False
        return True

    def sid(self, environ: dict[str, Any]) -> str | None:
        m = self._cookie.search(environ.get("HTTP_COOKIE", ""))
        return m.group(1) if m else None

    def priority(self, environ: dict[str, Any]) -> int:
        sid = self.sid(environ)
        return FIRST if sid is not None and sid in self._first else REST

    def remember(self, sid: str | None, user: dict[str, Any] | None) -> None:
        """After the sign-in gate: whether `sid`'s later requests go first (its user's role)."""
        if not sid:
            return
        with self._lock:
            if priority_of(user) == FIRST:
                self._first[sid] = None
                self._first.move_to_end(sid)
                while len(self._first) > REMEMBERED:
                    self._first.popitem(last=False)
            else:
                self._first.pop(sid, None)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        t0 = time.perf_counter()
        gate: PriorityGate | None = None
        waited = None
        if not environ.get("PATH_INFO", "").startswith(NOT_QUEUED):
            _read_body_first(environ)  # a slow sender must not hold a turn while its body trickles in
            priority = self.priority(environ)
            sock = environ.get("gunicorn.socket")
            if sock is not None:
                CONN_PRIORITY[sock] = priority
            gate = self.long_gate if self.is_long(environ) else self.gate
            gate.acquire(priority)
            waited = (time.perf_counter() - t0) * 1000

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            timing = f"app;dur={(time.perf_counter() - t0) * 1000:.1f}"
            headers.append(("Server-Timing", timing if waited is None else f"{timing}, queue;dur={waited:.1f}"))
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, start)  # Flask has the whole answer ready when this returns
        finally:
            if gate is not None:
                gate.release()  # before the answer is sent: the turns are for work


def _read_body_first(environ: dict[str, Any]) -> None:
    """Read a request's body (of a declared length the app accepts) before it takes a turn, as the
    answer is sent after giving the turn back: the turns are for work, not for waiting on a network."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return  # the app answers it (400)
    if 0 < length <= MAX_BODY_BYTES:
        environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(length))


def install(server: flask.Flask, slots: int, cookie: str) -> Admission:
    """Wrap `server`'s WSGI app in an `Admission` of `slots`; `cookie` is the session cookie's name.
    Register after the sign-in gate (layouts/signin.py `_gate`): only a session it let through is
    remembered as an operator's."""
    def long_routes() -> Map:
        return Map([Rule(rule.rule, endpoint=rule.endpoint, methods=rule.methods)
                    for rule in server.url_map.iter_rules()
                    if getattr(server.view_functions.get(rule.endpoint), "long_work", False)])

    admission = Admission(server.wsgi_app, slots, cookie, long_routes)
    server.wsgi_app = admission  # type: ignore[method-assign]
    server.extensions["ecd_admission"] = admission

    @server.before_request
    def _remember_who():
        session = flask.session
        admission.remember(getattr(session, "sid", None), session.get("user"))

    return admission


class PriorityPool:
    """A fixed pool of threads running submitted calls, the lowest `priority` first, then the earliest
    (what gunicorn's worker asks of its `concurrent.futures` pool: submit, shutdown)."""

    def __init__(self, threads: int, rank: Callable[[tuple], int] | None = None) -> None:
        self._rank = rank  # a submitted call's priority from its arguments, when submit() is not told
        self._cv = threading.Condition()
        self._waiting: list[tuple[int, int, Future, Callable[..., Any], tuple]] = []
        self._seq = itertools.count()
        self._stopped = False
        self._threads = [threading.Thread(target=self._run, name=f"web-{i}", daemon=True) for i in range(threads)]
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable[..., Any], *args: Any, priority: int | None = None) -> Future:
        if priority is None:
            priority = self._rank(args) if self._rank is not None else REST
        fut: Future = Future()
        with self._cv:
            if self._stopped:
                raise RuntimeError("the pool is shut down")
            heapq.heappush(self._waiting, (priority, next(self._seq), fut, fn, args))
            self._cv.notify()
        return fut

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._waiting and not self._stopped:
                    self._cv.wait()
                if self._stopped:
                    return
                _, _, fut, fn, args = heapq.heappop(self._waiting)
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - the future carries it to gunicorn
                fut.set_exception(exc)

    def shutdown(self, wait: bool = True) -> None:
        with self._cv:
            self._stopped = True
            for _, _, fut, _, _ in self._waiting:
                fut.cancel()
            self._waiting.clear()
            self._cv.notify_all()
        if wait:
            for t in self._threads:
                t.join()

    @property
    def queued(self) -> int:
        return len(self._waiting)


def connection_rank(args: tuple) -> int:
    """The priority of gunicorn's `handle(conn)`: what its connection's last request said."""
    sock = getattr(args[0], "sock", None) if args else None
    return CONN_PRIORITY.get(sock, REST) if sock is not None else REST


class OperatorsFirstWorker(ThreadWorker):
    """gunicorn's threaded worker (`--worker-class layouts.admission.OperatorsFirstWorker`), its requests
    waiting for a thread in `PriorityPool` order (gunicorn submits `handle(conn)` for each request:
    only the pool is replaced, through the hook gunicorn offers for it)."""

    def get_thread_pool(self) -> PriorityPool:
        return PriorityPool(self.cfg.threads, rank=connection_rank)
