"""Sign-in: `/login` (with a throttle on password guessing), `/logout`, `/health`, the session secret,
and the gate in front of every other path (a signed-in session, or HTTP Basic for `/api/`)."""

from __future__ import annotations

import os
import secrets

import flask
from markupsafe import escape

from command import i18n
from command.config import Settings
from command.i18n import t
from command.keys import login_failures
from command.trust.auth import authenticate, ensure_users_file, load_users

from .common import rds

i18n.add({
    "login.title": {"en": "Sign in", "zh": "登录"},
    "login.username": {"en": "User name", "zh": "用户名"},
    "login.password": {"en": "Password", "zh": "密码"},
    "login.submit": {"en": "Sign in", "zh": "登录"},
    "login.failed": {"en": "Wrong user name or password.", "zh": "用户名或密码错误。"},
    "login.locked": {"en": "Too many failed attempts for this user: try again in {minutes} min.",
                     "zh": "该用户登录失败次数过多，请 {minutes} 分钟后再试。"},
})

LOGIN_MAX_FAILURES = 5  # failed sign-ins for one user name before it waits ...
LOGIN_LOCK_MS = 5 * 60_000  # ... this long (counted from the last failure)
ROLE_HOME = {"operator": "/", "department": "/department", "planner": "/exercise", "admin": "/admin",
             "auditor": "/audit"}
OPEN_PATHS = ("/login", "/logout", "/health", "/assets/", "/_dash-component-suites/", "/_favicon")


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


# ---- the throttle: LOGIN_MAX_FAILURES failures for a user name lock it for LOGIN_LOCK_MS -----------------
def locked_minutes(r, name: str) -> int | None:
    """Minutes left before `name` may try again, or None when it may try now."""
    key = login_failures(name)
    if int(r.get(key) or 0) < LOGIN_MAX_FAILURES:
        return None
    return max(1, round(r.pttl(key) / 60_000))


def record_failure(r, name: str) -> None:
    key = login_failures(name)
    with r.pipeline() as pipe:
        pipe.incr(key)
        pipe.pexpire(key, LOGIN_LOCK_MS)
        pipe.execute()


def clear_failures(r, name: str) -> None:
    r.delete(login_failures(name))


# ---- the routes -----------------------------------------------------------------------------------------
def login_page(lang: str, error: str = "", next_url: str = "/") -> str:
    other = "zh" if lang == "en" else "en"
    err = f'<p class="err" role="alert">{escape(error)}</p>' if error else ""
    return f"""<!doctype html><html lang="{'zh-CN' if lang == 'zh' else 'en'}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{t('app.title', lang)}</title>
<link rel="stylesheet" href="/assets/2-app.css"></head><body class="login-body">
<form method="post" class="login" action="/login?lang={lang}">
<h1>{t('app.title', lang)}</h1><h2>{t('login.title', lang)}</h2>{err}
<input type="hidden" name="next" value="{escape(next_url)}">
<label>{t('login.username', lang)}<input name="username" id="login-username" autocomplete="username" required autofocus></label>
<label>{t('login.password', lang)}<input name="password" id="login-password" type="password" autocomplete="current-password" required></label>
<button type="submit" id="login-submit">{t('login.submit', lang)}</button>
<a class="lang" href="/login?lang={other}&next={escape(next_url)}">{t('shell.language', lang)}</a>
</form></body></html>"""


def register_routes(server: flask.Flask, settings: Settings) -> None:
    users_file = ensure_users_file(settings.data_dir / "users.yaml")

    @server.route("/login", methods=["GET", "POST"])
    def login():
        lang = flask.request.args.get("lang") or ("zh" if "zh" in (flask.request.accept_languages.best or "") else "en")
        next_url = flask.request.values.get("next") or ""
        if not next_url.startswith("/") or next_url.startswith("//"):
            next_url = ""  # never redirect off the site
        if flask.request.method == "POST":
            name = flask.request.form.get("username", "")
            r = rds()
            minutes = locked_minutes(r, name)
            if minutes is not None:
                return login_page(lang, t("login.locked", lang, minutes=minutes), next_url), 429
            user = authenticate(load_users(users_file), name, flask.request.form.get("password", ""))
            if user is None:
                record_failure(r, name)
                return login_page(lang, t("login.failed", lang), next_url), 401
            clear_failures(r, name)
            flask.session.clear()
            flask.session["user"] = user.public()
            flask.session.permanent = True
            return flask.redirect(next_url or ROLE_HOME[user.role])
        return login_page(lang, next_url=next_url or "/")

    @server.route("/logout")
    def logout():
        flask.session.clear()
        return flask.redirect("/login")

    @server.route("/health")
    def health():
        try:
            rds().ping()
        except Exception as exc:  # noqa: BLE001 - health says what is wrong, whatever it is
            return {"status": "redis unavailable", "error": str(exc)}, 503
        return {"status": "ok"}

    @server.before_request
    def _require_sign_in():
        path = flask.request.path
        if path.startswith(OPEN_PATHS) or flask.session.get("user"):
            return None
        if path.startswith("/api/"):
            from .interop import basic_auth_user

            flask.g.api_user = basic_auth_user(users_file)
            if flask.g.api_user is not None:
                return None
            return flask.jsonify({"error": "sign in, or use HTTP Basic with a dashboard user"}), 401, \
                {"WWW-Authenticate": 'Basic realm="flood command"'}
        if path.startswith("/_dash") or path.startswith("/api/"):
            return flask.jsonify({"error": "not signed in"}), 401
        return flask.redirect(f"/login?next={path}")
