"""Sign-in and the gate in front of every path (docs/security.md says why each piece is there).

- `/login` (a Jinja2 page, autoescaped): user name, password and, for an account with TOTP, a code
  (command/trust/totp.py) or a recovery code. `/logout` ends the session. `/health` is open.
- Sessions are server-side (command/trust/sessions.py): the cookie holds a random id only; the
  session ends at sign-out, when idle, when its user is removed or their password, second factor,
  role or department changes (the user's `fingerprint`), and whenever an admin ends it.
- One throttle (command/trust/throttle.py) for every way in: the form, HTTP Basic and API tokens;
  it is checked before the password hash, and answers 429 with Retry-After.
- `/api/` takes a session, an API token (`Authorization: Bearer`, command/trust/tokens.py: only its
  scopes) or HTTP Basic with a dashboard user (only accounts without a second factor).
- Every answer carries the security headers (`security_headers`); bodies over `MAX_BODY_BYTES` get 413.
- `/admin` (role admin): users, the throttle (unlock), sessions (end them), API tokens.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import flask

from command import i18n
from command.config import Settings
from command.errors import unavailable_from
from command.i18n import t
from command.trust import events
from command.trust.auth import User, UsersFile, authenticate, ensure_users_file, second_factor_problem
from command.trust.sessions import idle_ms_from_env
from command.trust.throttle import Throttle, Throttled
from command.trust.tokens import TokensFile, scope_for

from . import access
from .access import route_policy
from .admin import register_admin
from .changes import GATE_PATH
from .changes import unavailable as changes_unavailable
from .common import rds
from .web_basics import (
    MAX_BODY_BYTES,
    TEMPLATES,
    client_address,
    pick_lang,
    safe_next,
    secure_cookies,
)
from .web_headers import security_headers
from .web_sessions import RedisSessionInterface, ServerSession, known_device, remember_device

log = logging.getLogger(__name__)

i18n.add({
    "login.title": {"en": "Sign in", "zh": "登录"},
    "login.username": {"en": "User name", "zh": "用户名"},
    "login.password": {"en": "Password", "zh": "密码"},
    "login.code": {"en": "Two-factor code", "zh": "双重验证码"},
    "login.code_hint": {"en": "From your authenticator app, or a recovery code. Leave empty if your account has none.",
                        "zh": "来自身份验证器应用的验证码，或一个恢复码。账号未启用双重验证时留空。"},
    "login.submit": {"en": "Sign in", "zh": "登录"},
    "login.failed": {"en": "Wrong user name or password (or two-factor code).", "zh": "用户名或密码（或双重验证码）错误。"},
    "login.wait": {"en": "Too many failed attempts: try again in {seconds} s.",
                   "zh": "登录失败次数过多，请 {seconds} 秒后再试。"},
    "login.totp_required": {"en": "This account must sign in with two factors: ask an administrator to set up "
                                  "its authenticator (python -m command users add NAME ... --totp).",
                            "zh": "此账号必须使用双重验证登录：请管理员为其设置身份验证器"
                                  "（python -m command users add NAME ... --totp）。"},
})

ROLE_HOME = {"operator": "/", "department": "/department", "planner": "/exercise", "admin": "/admin",
             "auditor": "/audit"}
def secret_key(settings: Settings) -> str:
    """One key for every web worker: from the environment, else a file made once in the data folder."""
    env = os.environ.get("ECD_SECRET_KEY")
    if env:
        return env
    path = settings.data_dir / "secret_key"
    if not path.exists():
        # several workers start at once: write a whole file aside, then link it in; the first one wins
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".secret_key.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


# ---- the pages -----------------------------------------------------------------------------------------
def login_page(lang: str, error: str = "", next_url: str = "", username: str = "") -> str:
    other = "zh" if lang == "en" else "en"
    query = {"lang": lang, **({"next": next_url} if next_url else {})}
    other_query = {"lang": other, **({"next": next_url} if next_url else {})}
    words = {"app_title": t("app.title", lang), "title": t("login.title", lang),
             "username": t("login.username", lang), "password": t("login.password", lang),
             "code": t("login.code", lang), "code_hint": t("login.code_hint", lang),
             "submit": t("login.submit", lang), "language": t("shell.language", lang)}
    return TEMPLATES.get_template("login.html").render(
        html_lang="zh-CN" if lang == "zh" else "en", words=words, error=error, next_url=next_url,
        username=username[:64], action="/login?" + urlencode(query), other_href="/login?" + urlencode(other_query))


def unavailable_page(lang: str) -> str:
    """A page asked for while Redis does not answer: since when (UTC; this worker's first failure),
    and it asks again by itself every 10 s."""
    import time as _time

    from .changes import DOWN

    since = _time.strftime("%H:%M UTC", _time.gmtime(DOWN.failed() / 1000))
    words = {"app_title": t("app.title", lang), "message": t("shell.down_since", lang, time=since),
             "retry": t("shell.retrying", lang)}
    return TEMPLATES.get_template("unavailable.html").render(html_lang="zh-CN" if lang == "zh" else "en", words=words)


def _too_many(retry_after: int, body: Any, status: int = 429) -> flask.Response:
    resp = flask.make_response(body, status)
    resp.headers["Retry-After"] = str(retry_after)
    return resp


def _api_throttled(exc: Throttled) -> flask.Response:
    """429 for a caller of /api/ (HTTP Basic or a token) while the throttle makes it wait."""
    return _too_many(exc.retry_after, flask.jsonify({"error": "too many failed sign-ins", "retry_after": exc.retry_after}))


def _api_refusal(status: int, message: str, **headers: str) -> flask.Response:
    resp = flask.make_response(flask.jsonify({"error": message}), status)
    resp.headers.update(headers)
    return resp


def register_routes(server: flask.Flask, settings: Settings) -> None:
    users_path = ensure_users_file(settings.data_dir / "users.yaml")
    users = UsersFile(users_path)
    tokens = TokensFile(settings.data_dir / "tokens.yaml")
    server.session_interface = RedisSessionInterface(idle_ms_from_env())
    server.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, SESSION_COOKIE_SECURE=secure_cookies(),
                         ECD_USERS_FILE=str(users_path), ECD_TOKENS_FILE=str(tokens.path))
    hops = int(os.environ.get("ECD_PROXY_HOPS", "0") or 0)
    if hops > 0:  # behind a reverse proxy: the client address is the proxy's X-Forwarded-For
        from werkzeug.middleware.proxy_fix import ProxyFix

        server.wsgi_app = ProxyFix(server.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    demo = sorted(u.username for u in users.users().values() if u.demo and u.role in ("admin", "operator", "planner"))
    if demo:
        log.warning("demo accounts without two-factor sign-in are enabled: %s (remove them for real use)",
                    ", ".join(demo))

    @server.route("/login", methods=["GET", "POST"])
    @route_policy(open=True, note="the sign-in page")
    def login():
        req = flask.request
        lang = pick_lang(req)
        next_url = safe_next(req.values.get("next"))
        if req.method == "GET":
            return login_page(lang, next_url=next_url)
        name = req.form.get("username", "")[:64]
        password = req.form.get("password", "")[:1024]
        code = req.form.get("code", "")[:32]
        r = rds()
        throttle = Throttle(r)
        device = known_device(name)
        try:  # a browser this user signed in from before has a bucket of its own (`known_device`)
            attempt = throttle.attempt(f"{name}@{device}" if device else name, req.remote_addr)
        except Throttled as exc:
            return _too_many(exc.retry_after, login_page(lang, t("login.wait", lang, seconds=exc.retry_after),
                                                         next_url, name))
        user = authenticate(users.users(), name, password)
        problem = "password" if user is None else second_factor_problem(r, users_path, user, code)
        if user is None or problem:
            events.record(r, name or "-", "signin_failed", via="form", reason=problem, address=client_address())
            if problem == "totp_required":
                return login_page(lang, t("login.totp_required", lang), next_url, name), 403
            return login_page(lang, t("login.failed", lang), next_url, name), 401
        throttle.succeeded(attempt)
        session = flask.session
        assert isinstance(session, ServerSession)
        # a new id: whatever id came in is ended; the language of the sign-in page is the dashboard's
        # until the browser keeps one of its own (layouts/shell.py `_lang`)
        session.begin(user, {"csrf": secrets.token_urlsafe(24), "lang": lang})
        events.record(r, user.username, "signin", via="form", address=client_address(),
                      second_factor=user.has_totp)
        resp = flask.redirect(next_url or ROLE_HOME[user.role])
        remember_device(resp, user.username, device)
        return resp

    @server.route("/logout", methods=["GET", "POST"])
    @route_policy(open=True, note="ends the session, if any")
    def logout():
        if flask.request.headers.get("Sec-Fetch-Site") == "cross-site":
            return flask.redirect("/")  # another site's link does not sign anyone out
        session = flask.session
        assert isinstance(session, ServerSession)
        user = session.get("user")
        session.end()
        if user:
            events.record(rds(), user["username"], "signout", address=client_address())
        return flask.redirect("/login")

    @server.route("/health")
    @route_policy(open=True, note="for load balancers and the supervisor")
    def health():
        """200 {"status": "ok", ...} or 503 {"status": "degraded", "degraded": [parts], ...}: a write to
        Redis with short timeouts, and the supervisor's process states (command/runtime/health.py)."""
        from command.runtime.health import check
        from command.runtime.redis_client import pooled

        body, status = check(pooled(server.config["ECD_REDIS_URL"], "probe"), settings.data_dir)
        return body, status, {"Cache-Control": "no-store"}

    def session_user() -> dict[str, str] | None:
        """The signed-in user, checked against the users file on every request: a user removed, or
        whose password, second factor, role or department changed, is signed out here."""
        session = flask.session
        data = session.get("user")
        if not data:
            return None
        user = users.get(data.get("username", ""))
        if user is None or not hmac.compare_digest(user.fingerprint(), str(session.get("fp", ""))):
            assert isinstance(session, ServerSession)
            session.end()
            return None
        if data != user.public():  # a new display name
            session["user"] = user.public()
        return user.public()

    def api_caller() -> flask.Response | None:
        """Sign a machine request in (token or Basic) and check what it may do; a refusal, or None."""
        req = flask.request
        needed = scope_for(req.method, req.path)
        header = req.headers.get("Authorization", "")
        scheme, _, cred = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            return _token_caller(cred.strip(), needed)
        if scheme == "basic":
            return _basic_caller(cred.strip(), needed)
        user = session_user()
        if user is None:
            return _api_refusal(401, "sign in, send an API token (Authorization: Bearer), or use HTTP Basic "
                                     "with a dashboard user", **{"WWW-Authenticate": 'Basic realm="flood command"'})
        return _role_check(user, needed)

    def _role_check(user: dict[str, str], needed: str | None) -> flask.Response | None:
        # a person's role is checked against the route's policy by the gate (`access.refusal`)
        flask.g.api_user = user
        return None

    def _token_caller(secret: str, needed: str | None) -> flask.Response | None:
        r = rds()
        throttle = Throttle(r)
        try:
            attempt = throttle.attempt(None, flask.request.remote_addr)
        except Throttled as exc:
            return _api_throttled(exc)
        token = tokens.find(secret)
        if token is None:
            events.record(r, "-", "signin_failed", via="token", reason="token", address=client_address())
            return _api_refusal(401, "unknown or revoked API token", **{"WWW-Authenticate": 'Bearer realm="flood command"'})
        throttle.succeeded(attempt)
        if not token.allows(needed):
            return _api_refusal(403, f"token {token.name} has no scope for this (it has {', '.join(token.scopes)})")
        flask.g.api_user = token.api_user()
        return None

    def _basic_caller(cred: str, needed: str | None) -> flask.Response | None:
        try:
            name, sep, password = base64.b64decode(cred, validate=True).decode().partition(":")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            name, sep, password = "", "", ""
        challenge = {"WWW-Authenticate": 'Basic realm="flood command"'}
        if not sep or not name:
            return _api_refusal(401, "malformed HTTP Basic credentials", **challenge)
        user = basic_auth_user(users_path, name[:64], password[:1024])
        if isinstance(user, flask.Response):
            return user
        if user is None:
            return _api_refusal(401, "wrong user name or password (an account with two-factor sign-in "
                                     "cannot use HTTP Basic: ask for an API token)", **challenge)
        return _role_check(user.public(), needed)

    def basic_auth_user(path: Path, name: str, password: str) -> User | flask.Response | None:
        """The user of HTTP Basic credentials, through the throttle; a 429 answer when throttled. An
        account with a second factor cannot use Basic (it carries no code)."""
        r = rds()
        throttle = Throttle(r)
        try:
            attempt = throttle.attempt(name, flask.request.remote_addr)
        except Throttled as exc:
            return _api_throttled(exc)
        user = authenticate(users.users(), name, password)
        if user is not None and (user.has_totp or user.needs_totp):
            reason = "second_factor"
        elif user is None:
            reason = "password"
        else:
            throttle.succeeded(attempt)
            return user
        events.record(r, name or "-", "signin_failed", via="basic", reason=reason, address=client_address())
        return None

    @server.before_request
    def _gate():
        """Every request: size, same origin, then the route's declared policy (layouts/access.py):
        open routes pass, /api/ signs its caller in first, everything else needs a session; then
        `access.refusal` decides for the route, and at /_dash-update-component for the callback."""
        req = flask.request
        if req.content_length is not None and req.content_length > MAX_BODY_BYTES:
            flask.abort(413)
        path = req.path
        if req.method not in ("GET", "HEAD", "OPTIONS") and not _same_origin(req):
            return flask.make_response(flask.jsonify({"error": "cross-site request refused"}), 403)
        policy = access.request_policy()
        if policy is not None and policy.public:
            return None
        if path.startswith("/api/"):
            return api_caller() or access.refusal(policy, flask.g.get("api_user"))
        down = getattr(flask.session, "unavailable", None)
        if down is not None:  # the session could not be read: 503 and when it began, not a 500
            if path == GATE_PATH:
                return changes_unavailable()
            if path.startswith("/_dash") or req.method != "GET":
                raise unavailable_from(down) or down
            return unavailable_page(pick_lang(req)), 503, {"Cache-Control": "no-store", "Retry-After": "10"}
        user = session_user()
        if user is not None:
            return access.refusal(policy, user)
        if path.startswith("/_dash") or path == GATE_PATH:
            return flask.jsonify({"error": "not_signed_in", "message": "not signed in"}), 401
        target = req.full_path.rstrip("?") if req.query_string else path
        return flask.redirect("/login?" + urlencode({"next": target}))

    server.after_request(security_headers)
    register_admin(server, users_path, users, tokens)


def _same_origin(req: flask.Request) -> bool:
    """False for a browser request another site made (its Origin, or Sec-Fetch-Site, says so). A
    request with neither (a script, another system) is not a browser's cross-site request."""
    if req.headers.get("Sec-Fetch-Site") == "cross-site":
        return False
    origin = req.headers.get("Origin")
    if origin is None:
        return True
    return origin != "null" and urlsplit(origin).netloc == req.host


