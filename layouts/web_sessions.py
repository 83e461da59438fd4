"""Server-side sessions for the web app (the store is command/trust/sessions.py: the cookie holds a random
id only), and known devices: a browser a user signed in from before has a throttle bucket of its own,
so guessing the duty officer's name elsewhere cannot hold them up at their desk."""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

import flask
import redis
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from command.errors import REDIS_DOWN
from command.runtime.redis_client import pooled
from command.trust.auth import User
from command.trust.sessions import SessionStore, valid_sid

from .changes import DOWN, GATE_PATH
from .common import rds
from .web_basics import (
    NO_SESSION_PATHS,
    cookie_name,
    secure_cookies,
)

log = logging.getLogger(__name__)


# ---- known devices: the duty officer's own browser cannot be throttled by someone else ------------------
DEVICE_DAYS = 90


def device_cookie_name() -> str:
    return "__Host-ecd_device" if secure_cookies() else "ecd_device"


def _device_signer():
    from itsdangerous import URLSafeTimedSerializer

    return URLSafeTimedSerializer(flask.current_app.secret_key, salt="ecd-known-device")


def known_device(name: str) -> str | None:
    """The id of this browser when `name` signed in from it before (a signed cookie, OWASP's "device
    cookie"): its failures count in a bucket of their own, so an attacker guessing the name elsewhere
    cannot make the duty officer wait at their own desk. The address still counts as always."""
    from itsdangerous import BadData

    raw = flask.request.cookies.get(device_cookie_name())
    if not raw or not name:
        return None
    try:
        doc = _device_signer().loads(raw, max_age=DEVICE_DAYS * 86400)
    except BadData:
        return None
    if not isinstance(doc, dict) or str(doc.get("u", "")).lower() != name.lower():
        return None
    device = str(doc.get("d", ""))
    return device if re.fullmatch(r"[0-9a-f]{16}", device) else None


def remember_device(resp: flask.Response, username: str, device: str | None) -> None:
    value = _device_signer().dumps({"u": username, "d": device or secrets.token_hex(8)})
    resp.set_cookie(device_cookie_name(), value, max_age=DEVICE_DAYS * 86400, httponly=True,
                    secure=secure_cookies(), samesite="Lax", path="/")


# ---- server-side sessions ------------------------------------------------------------------------------
class ServerSession(CallbackDict, SessionMixin):
    """A session held in Redis; the cookie names it. `begin()` starts a new one (a new id, the old one
    ended), `end()` ends it."""

    def __init__(self, data: dict[str, Any] | None = None, sid: str | None = None, username: str | None = None,
                 created: int | None = None) -> None:
        def on_update(s: ServerSession) -> None:
            s.modified = True

        super().__init__(data or {}, on_update)
        self.sid = sid
        self.username = username
        self.created = created
        self.modified = False
        self.ended: str | None = None  # the id to end when the answer goes out
        self.fresh = False  # a new id: set the cookie
        self.unavailable: Exception | None = None  # Redis did not answer: no one can be signed in now

    def begin(self, user: User, extra: dict[str, Any] | None = None) -> None:
        if self.sid:
            self.ended = self.sid
        self.clear()
        self.update({"user": user.public(), "fp": user.fingerprint(), **(extra or {})})
        self.sid, self.username, self.fresh = None, user.username, True

    def end(self) -> None:
        if self.sid:
            self.ended = self.sid
        self.clear()
        self.sid = self.username = None
        self.fresh = False


class RedisSessionInterface(SessionInterface):
    def __init__(self, idle_ms: int) -> None:
        self.idle_ms = idle_ms

    def store(self, probe: bool = False) -> SessionStore:
        if probe:  # the change gate answers within a second whatever Redis does (layouts/changes.py)
            return SessionStore(pooled(flask.current_app.config["ECD_REDIS_URL"], "probe"), self.idle_ms)
        return SessionStore(rds(), self.idle_ms)

    def open_session(self, app: flask.Flask, request: flask.Request) -> ServerSession:
        if request.path.startswith(NO_SESSION_PATHS):
            return ServerSession()
        sid = request.cookies.get(cookie_name())
        if not valid_sid(sid):
            return ServerSession()
        gate = request.path == GATE_PATH
        down = gate and DOWN.since is not None  # DownSince: one question at a time finds out if it is back
        held = down and DOWN.probe.acquire(blocking=False)
        try:
            if down and not held:
                raise redis.ConnectionError("Redis is down; another question is finding out whether it is back")
            loaded = self.store(probe=gate).load(sid)
        except REDIS_DOWN as exc:  # answered 503 by the front door (layouts/signin.py `_gate`), not a 500
            s = ServerSession()
            s.unavailable = exc
            return s
        finally:
            if held:
                DOWN.probe.release()
        DOWN.answered()  # Redis answers: a later outage is dated from its own start
        if loaded is None:
            s = ServerSession()
            s.ended = sid  # gone: clear the browser's cookie
            return s
        return ServerSession(loaded.data, sid=sid, username=loaded.username, created=loaded.created)

    def save_session(self, app: flask.Flask, session: SessionMixin, response: flask.Response) -> None:
        assert isinstance(session, ServerSession)
        store = None
        if session.ended:
            store = self.store()
            store.end(session.ended)
        if session.fresh and session.username:
            store = store or self.store()
            session.sid = store.create(session.username, dict(session))
            response.set_cookie(cookie_name(), session.sid, httponly=True, secure=secure_cookies(),
                                samesite="Lax", path="/")
            response.vary.add("Cookie")
            return
        if session.ended and not session.sid:
            response.delete_cookie(cookie_name(), path="/", httponly=True, secure=secure_cookies(), samesite="Lax")
            return
        if session.sid and session.modified:
            (store or self.store()).save(session.sid, session.username or "", dict(session), session.created)
