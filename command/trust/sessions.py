"""Server-side sessions in Redis: the browser's cookie holds only a random id; everything else is here,
so a session can be ended from anywhere at once (sign-out, a password change, a removed user, an admin).

- The id is 32 random bytes (URL-safe base64). Redis keeps the session under the SHA-256 of the id
  (`command.keys.session`), so someone who can read Redis still cannot present a session.
- A session expires when idle: every request it makes pushes its expiry `idle_ms` further
  (`ECD_SESSION_IDLE_MINUTES`, default 720, a 12-hour shift). An open dashboard polls every few
  seconds and so stays signed in; a closed one lapses.
- Each user's sessions are listed in a set (`command.keys.user_sessions`) so `end_user()` ends them all.
  The set always outlives its sessions: its expiry is twice `idle_ms`, pushed on by a process at most
  every `idle_ms / 2` (so one request costs one Redis command, `GETEX`, however often a page asks).
- A session is written only while it exists (`SET ... XX`): a request that was in flight when its
  session was ended cannot bring it back.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from command.keys import session as session_key
from command.keys import user_sessions

DEFAULT_IDLE_MINUTES = 720.0
_SID_RE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


def idle_ms_from_env(env: dict[str, str] | None = None) -> int:
    """`ECD_SESSION_IDLE_MINUTES` (minutes, may be fractional; default 720) in milliseconds."""
    raw = (os.environ if env is None else env).get("ECD_SESSION_IDLE_MINUTES", "")
    try:
        minutes = float(raw) if raw.strip() else DEFAULT_IDLE_MINUTES
    except ValueError:
        raise ValueError(f"ECD_SESSION_IDLE_MINUTES must be a number of minutes, not {raw!r}") from None
    if not minutes > 0:
        raise ValueError("ECD_SESSION_IDLE_MINUTES must be positive")
    return max(1000, int(minutes * 60_000))


# (username, idle_ms) -> monotonic time this process last pushed the user's set's expiry on; bounded
_SET_PUSHED: OrderedDict[tuple[str, int], float] = OrderedDict()
_SET_PUSHED_MAX = 10_000
_SET_LOCK = threading.Lock()


def sid_hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def valid_sid(sid: str | None) -> bool:
    return bool(sid) and bool(_SID_RE.fullmatch(sid or ""))


@dataclass(frozen=True)
class Loaded:
    username: str
    created: int  # epoch ms of the sign-in
    data: dict[str, Any]


class SessionStore:
    def __init__(self, r: redis.Redis, idle_ms: int) -> None:
        self.r = r
        self.idle_ms = idle_ms

    def create(self, username: str, data: dict[str, Any]) -> str:
        """A new session for `username` holding `data`; returns its id (for the cookie)."""
        sid = secrets.token_urlsafe(32)
        h = sid_hash(sid)
        body = orjson.dumps({"username": username, "created": int(time.time() * 1000), "data": data})
        with self.r.pipeline(transaction=True) as pipe:
            pipe.set(session_key(h), body, px=self.idle_ms)
            pipe.sadd(user_sessions(username), h)
            pipe.pexpire(user_sessions(username), 2 * self.idle_ms)
            pipe.execute()
        self._prune(username)
        return sid

    def load(self, sid: str | None) -> Loaded | None:
        """A live session, its expiry pushed on; None when there is none."""
        if not valid_sid(sid):
            return None
        raw = self.r.getex(session_key(sid_hash(sid or "")), px=self.idle_ms)
        if raw is None:
            return None
        doc = orjson.loads(raw)
        self._keep_set(doc["username"])
        return Loaded(doc["username"], int(doc.get("created") or 0), doc.get("data") or {})

    def _keep_set(self, username: str) -> None:
        """Push the user's set's expiry to 2 x idle_ms when this process last did so idle_ms / 2 ago or
        more: the set then expires at least 1.5 x idle_ms from now, after any of its sessions."""
        memo, now = (username, self.idle_ms), time.monotonic()
        with _SET_LOCK:
            last = _SET_PUSHED.get(memo)
        if last is not None and now - last < self.idle_ms / 2000:
            return
        self.r.pexpire(user_sessions(username), 2 * self.idle_ms)
        with _SET_LOCK:  # only once it is done: a failed push is tried again at the next request
            _SET_PUSHED[memo] = now
            _SET_PUSHED.move_to_end(memo)
            while len(_SET_PUSHED) > _SET_PUSHED_MAX:
                _SET_PUSHED.popitem(last=False)

    def save(self, sid: str, username: str, data: dict[str, Any], created: int | None = None) -> bool:
        """Write a session's data back, only if it still exists (an ended session stays ended)."""
        body = orjson.dumps({"username": username, "created": created or int(time.time() * 1000), "data": data})
        return bool(self.r.set(session_key(sid_hash(sid)), body, px=self.idle_ms, xx=True))

    def end(self, sid: str | None) -> None:
        if not valid_sid(sid):
            return
        h = sid_hash(sid or "")
        raw = self.r.getdel(session_key(h))
        if raw is not None:
            self.r.srem(user_sessions(orjson.loads(raw)["username"]), h)

    def end_user(self, username: str) -> int:
        """End every session of `username` at once; returns how many there were."""
        members = self.r.smembers(user_sessions(username))
        with self.r.pipeline(transaction=True) as pipe:
            for h in members:
                pipe.delete(session_key(h.decode()))
            pipe.delete(user_sessions(username))
            res = pipe.execute()
        return int(sum(res[:-1]))

    def count(self, username: str) -> int:
        """The live sessions of `username`."""
        self._prune(username)
        return int(self.r.scard(user_sessions(username)))

    def _prune(self, username: str) -> None:
        """Drop the expired sessions from the user's set (they expire one by one, the set does not)."""
        members = list(self.r.smembers(user_sessions(username)))
        if not members:
            return
        with self.r.pipeline(transaction=False) as pipe:
            for h in members:
                pipe.exists(session_key(h.decode()))
            alive = pipe.execute()
        gone = [h for h, ok in zip(members, alive, strict=True) if not ok]
        if gone:
            self.r.srem(user_sessions(username), *gone)
