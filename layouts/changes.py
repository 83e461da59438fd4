"""The change gate: an open page asks one small question a second, "has anything I show changed?", and
Dash draws only when the answer is yes.

Before, every page's callbacks polled (`dcc.Interval`): the operator map sent 3 callbacks a second, a
department's phone 1, every page's top bar 2 every 2 s, each one a full Dash request (the session, the
callback's policy, Redis reads, JSON) that mostly answered "nothing new". With 500 phones open the two
web workers of a 2-core machine saturated and the duty officer's map waited behind them
(docs/performance.md, bench/web_load.py).

Now `assets/changes.js` asks `GET /_changes?ns=<namespace>&page=<map|department|...>` once a second and
gets two short tokens: `p` for what the page shows (the map: every version it draws; a department: its
tasks, the incidents, the clock's minute) and `s` for the top bar (the view menu's drills, the clock's
minute, the drill's speed). When a token differs from the last one, the script sets the store
`chg-shell` or the page's own (`chg-map`, `chg-dept`: `dash_clientside.set_props`) and the callbacks
that take it as input run,
checking their own versions as before. A token is a digest: it says *that* something changed, not
what; the callbacks behind it check who is asking as always.

A worker computes each token at most once per `TTL_S` (whatever the number of clients asking), so the
gate's cost is a session check and a dictionary lookup. It reads Redis with the short-timeout "probe"
client: during a Redis outage it answers **503** `{"down_since": epoch ms}` within a second, and the
page says "data unavailable since HH:MM" (the first failure this worker saw) until Redis answers again.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import flask
import orjson
import redis

from command.errors import REDIS_DOWN, InvalidInput
from command.keys import LIVE, Keys
from command.runtime.redis_client import pooled

from . import access
from .access import route_policy

GATE_PATH = "/_changes"
TTL_S = 0.25  # a token is at most this old: a change shows within a poll (1 s) and this
MAX_TOKENS = 512  # tokens kept per worker (namespaces x kinds x departments); the oldest go first
MINUTE_MS = 60_000


# ---- what each token covers (pure: tests call these directly) ------------------------------------------
def digest(parts: Any) -> str:
    """A short token for `parts` (anything orjson encodes)."""
    return hashlib.blake2b(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()


def shell_parts(drills: list[dict[str, Any]], clock: int | None, meta: list[bytes | None],
                control: dict[str, str]) -> list[Any]:
    """What the top bar draws: the view menu (each drill's namespace, scenario and status), the clock's
    minute, the time zone, whether the namespace is a drill, its scenario, speed and pause."""
    menu = [[d.get("namespace"), d.get("scenario"), d.get("status")] for d in drills]
    return [menu, None if clock is None else clock // MINUTE_MS, [(m or b"").decode() for m in meta],
            control.get("speed"), control.get("paused")]


def map_parts(versions: dict[str, Any], extra: dict[str, Any]) -> list[Any]:
    """What the operator map, its queue and its attention strip compare before drawing: every version,
    the clock included (the units' positions on their routes move with it)."""
    return [versions, extra]


def department_parts(tasks: list[bytes | None], incidents: Any, clock: int) -> list[Any]:
    """What a department's task list draws (layouts/department.py `tasks_view`): its own tasks' records
    (another department's update is not a change here), the incidents (their reporters) and the
    clock's minute (its deadlines count down, "updated 3 min ago")."""
    h = hashlib.blake2b(digest_size=8)
    for raw in tasks:
        h.update(raw or b"-")
        h.update(b"\0")
    return [len(tasks), h.hexdigest(), incidents, clock // MINUTE_MS]


def department_signature(r: redis.Redis, keys: Keys, department: str) -> str:
    """The department page's token: changes exactly when `department_parts` do (the gate's `p`, and the
    version the page's callback compares)."""
    from command.clock import command_time
    from command.ops.dispatch import department_task_records
    from command.publish import views

    tasks = department_task_records(r, keys, department)  # what its page reads
    parts = department_parts(tasks, views.records_digest(r.hvals(keys.incidents)), command_time(r, keys))
    return digest(["department", keys.ns, department, parts])


# ---- the worker's caches ------------------------------------------------------------------------------
class TimedCache:
    """Values by key, each computed at most once every `ttl` seconds however many threads ask; at most
    `size` kept, least recently used out. The gate's tokens (by namespace, kind[, department]: only
    namespaces that exist get an entry, so crafted names cannot grow it), and the department page's
    drawing shared by the phones of a department (layouts/department.py)."""

    def __init__(self, ttl: float = TTL_S, size: int = MAX_TOKENS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.size, self.clock = ttl, size, clock
        self._items: OrderedDict[tuple, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.computed = 0  # how many times a token was computed (not taken from the cache)

    def get(self, key: tuple, compute: Callable[[], Any]) -> Any:
        now = self.clock()
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and now - hit[0] < self.ttl:
                self._items.move_to_end(key)
                return hit[1]
        value = compute()  # outside the lock: a slow Redis holds up only this key's askers
        with self._lock:
            self.computed += 1
            self._items[key] = (now, value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)


class DownSince:
    """When this worker first failed to read Redis, until a read succeeds again (epoch ms).

    While it is down, one of the worker's questions at a time finds out whether it is back (`probe`,
    held by that question): the others are answered 503 at once instead of each waiting out the probe
    client's timeout in one of the worker's few turns (layouts/admission.py), so hundreds of open pages
    all learn of the outage within a second and the worker stays free for everything else."""

    def __init__(self) -> None:
        self.since: int | None = None
        self.probe = threading.Lock()

    def failed(self) -> int:
        if self.since is None:
            self.since = int(time.time() * 1000)
        return self.since

    def answered(self) -> None:
        self.since = None


# ---- reading Redis (the edge) -------------------------------------------------------------------------
def _shell(r: redis.Redis, keys: Keys, drills: list[dict[str, Any]]) -> str:
    from command.ops.drills import drill_state

    with r.pipeline(transaction=False) as p:
        p.get(keys.clock)
        p.hmget(keys.meta, ["timezone", "mode", "scenario"])
        clock, meta = p.execute()
    control = drill_state(r, keys.ns) if keys.ns != LIVE else {}
    return digest(["s", keys.ns, shell_parts(drills, int(clock) if clock else None, meta, control)])


def _map(r: redis.Redis, keys: Keys) -> str:
    from command.publish import views

    from .operator.figure import extra_versions

    return digest(["map", keys.ns, map_parts(views.versions(r, keys), extra_versions(r, keys))])


def _existing(r: redis.Redis, ns: str, drills: set[str]) -> Keys:
    """`ns` when it is live, a drill of the view menu or another namespace with data (a replay's); else live."""
    if ns in drills:
        return Keys(ns)
    try:
        keys = Keys(ns)
    except InvalidInput:
        return Keys(LIVE)
    return keys if r.exists(keys.meta) else Keys(LIVE)


def answer(r: redis.Redis, tokens: TimedCache, ns: Any, page: Any, user: dict[str, str],
           page_roles: dict[str, tuple[str, ...]]) -> tuple[dict[str, Any], int]:
    """The gate's answer for `user` on `page` of namespace `ns`: ({"p", "s", "ns"}, 200), or a refusal
    (400 for a value no page sends, 403 for a page the role may not see). A namespace that does not
    exist (deleted, or crafted) is answered with live's tokens and `"ns": "live"`: the view menu then
    moves to live, as its own callback would."""
    from command.ops.drills import list_drills

    if not isinstance(ns, str) or len(ns) > 200 or not isinstance(page, str) or len(page) > 40:
        return {"error": "invalid_input", "message": "ns and page are short strings"}, 400
    if page and page not in page_roles:
        return {"error": "invalid_input", "message": f"no page {page!r}"}, 400
    if page and user.get("role") not in page_roles[page]:
        return {"error": "forbidden", "message": f"role {user.get('role')} may not see the {page} page"}, 403
    drills = tokens.get(("drills",), lambda: [d for d in list_drills(r) if d.get("status") != "failed"])
    keys = _existing(r, ns, {LIVE} | {str(d.get("namespace")) for d in drills})
    out: dict[str, Any] = {"ns": keys.ns, "s": tokens.get((keys.ns, "shell"), lambda: _shell(r, keys, drills)),
                           "p": None}
    if page == "map":
        out["p"] = tokens.get((keys.ns, "map"), lambda: _map(r, keys))
    elif page == "department":
        out["p"] = department_token(tokens, r, keys, str(user.get("department") or ""))
    return out, 200


def department_token(tokens: TimedCache, r: redis.Redis, keys: Keys, department: str) -> str:
    """`department_signature`, computed at most once per `TTL_S` by this worker: the gate's `p` for a
    department's phones, and the version their callback compares (all of a department's phones redraw
    at once after a change: they share one reading of its tasks)."""
    return tokens.get((keys.ns, "department", department), lambda: department_signature(r, keys, department))


def worker_tokens() -> TimedCache:
    """This worker's gate cache (register_routes)."""
    return flask.current_app.extensions["ecd_changes"]


DOWN = DownSince()  # this worker's view of Redis, for every page's "data unavailable since HH:MM"


def _json(body: dict[str, Any], status: int) -> flask.Response:
    return flask.Response(orjson.dumps(body), status=status, mimetype="application/json",
                          headers={"Cache-Control": "no-store"})


def unavailable() -> flask.Response:
    """503 with the time this worker first saw Redis fail (also when the session itself could not be
    read: layouts/signin.py `_gate`)."""
    return _json({"error": "unavailable", "message": "Redis is unavailable", "down_since": DOWN.failed()}, 503)


def register_routes(server: flask.Flask, page_roles: dict[str, tuple[str, ...]]) -> None:
    """/_changes; `page_roles`: who may see each page (layouts/shell.py PAGE_ROLES)."""
    tokens = TimedCache()
    server.extensions["ecd_changes"] = tokens  # tests read its counters

    @server.route(GATE_PATH)
    @route_policy(allow=access.ANY_ROLE, note="opaque change tokens of the pages the role may see")
    def _changes():
        args = flask.request.args
        r = pooled(flask.current_app.config["ECD_REDIS_URL"], "probe")
        try:
            body, status = answer(r, tokens, args.get("ns", LIVE), args.get("page", ""), access.user(),
                                  page_roles)
        except REDIS_DOWN:
            return unavailable()
        DOWN.answered()
        return _json(body, status)
