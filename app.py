"""Flood command: the Dash app factory, and `python app.py`, which starts everything on one machine.

`python app.py` starts a real Redis (embedded unless REDIS_URL is set), the live rule engine, the
drill runner (which replays the sample scenario as an exercise), an RQ worker and the web server
(gunicorn, several workers) on http://127.0.0.1:8050 unless --port/PORT says otherwise; it stops
them all on Ctrl-C or SIGTERM and leaves no process behind.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import flask
from dash import Dash, Input, Output, State, callback, dcc, html, no_update
from markupsafe import escape

from command import i18n
from command.config import PROJECT_ROOT, Settings
from command.i18n import t
from command.trust.auth import authenticate, ensure_users_file, load_users

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
PAGES = {"/": "map", "/department": "department", "/exercise": "exercise", "/feeds": "feeds"}
ROLE_HOME = {"operator": "/", "department": "/department", "planner": "/exercise"}
PAGE_ROLES = {"map": ("operator", "planner"), "department": ("department", "operator"),
              "exercise": ("planner", "operator"), "feeds": ("operator", "planner")}


# ---- the web app ---------------------------------------------------------------------------------------
def _secret_key(settings: Settings) -> str:
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


def _login_page(lang: str, error: str = "", next_url: str = "/") -> str:
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


def _register_routes(server: flask.Flask, settings: Settings) -> None:
    users_file = ensure_users_file(settings.data_dir / "users.yaml")

    @server.route("/login", methods=["GET", "POST"])
    def login():
        lang = flask.request.args.get("lang") or ("zh" if "zh" in (flask.request.accept_languages.best or "") else "en")
        next_url = flask.request.values.get("next") or ""
        if not next_url.startswith("/") or next_url.startswith("//"):
            next_url = ""  # never redirect off the site
        if flask.request.method == "POST":
            from command.keys import login_failures
            from layouts.common import rds

            name = flask.request.form.get("username", "")
            fails_key = login_failures(name)
            r = rds()
            fails = int(r.get(fails_key) or 0)
            if fails >= LOGIN_MAX_FAILURES:
                minutes = max(1, round(r.pttl(fails_key) / 60_000))
                return _login_page(lang, t("login.locked", lang, minutes=minutes), next_url), 429
            user = authenticate(load_users(users_file), name, flask.request.form.get("password", ""))
            if user is None:
                with r.pipeline() as pipe:
                    pipe.incr(fails_key)
                    pipe.pexpire(fails_key, LOGIN_LOCK_MS)
                    pipe.execute()
                return _login_page(lang, t("login.failed", lang), next_url), 401
            r.delete(fails_key)
            flask.session.clear()
            flask.session["user"] = user.public()
            flask.session.permanent = True
            return flask.redirect(next_url or ROLE_HOME[user.role])
        return _login_page(lang, next_url=next_url or "/")

    @server.route("/logout")
    def logout():
        flask.session.clear()
        return flask.redirect("/login")

    @server.route("/health")
    def health():
        from layouts.common import rds

        try:
            rds().ping()
        except Exception as exc:  # noqa: BLE001 - health says what is wrong, whatever it is
            return {"status": "redis unavailable", "error": str(exc)}, 503
        return {"status": "ok"}

    @server.before_request
    def _require_sign_in():
        path = flask.request.path
        open_paths = ("/login", "/logout", "/health", "/assets/", "/_dash-component-suites/", "/_favicon")
        if path.startswith(open_paths) or flask.session.get("user"):
            return None
        if path.startswith("/api/"):
            from layouts.interop import basic_auth_user

            flask.g.api_user = basic_auth_user(users_file)
            if flask.g.api_user is not None:
                return None
            return flask.jsonify({"error": "sign in, or use HTTP Basic with a dashboard user"}), 401, \
                {"WWW-Authenticate": 'Basic realm="flood command"'}
        if path.startswith("/_dash") or path.startswith("/api/"):
            return flask.jsonify({"error": "not signed in"}), 401
        return flask.redirect(f"/login?next={path}")


def _shell() -> html.Div:
    return html.Div([
        dcc.Location(id="url"),
        dcc.Store(id="lang", storage_type="local"),
        dcc.Store(id="ns", storage_type="session"),
        dcc.Interval(id="shell-tick", interval=2000),
        html.Div(id="shell-banner"),
        html.Header([
            html.A(id="shell-brand", href="/", className="brand"),
            html.Nav(id="shell-nav", className="nav-links"),
            html.Div(id="shell-clock", className="clock"),
            dcc.Dropdown(id="shell-ns", clearable=False, persistence=True, persistence_type="session",
                         className="ns-select", style={"minWidth": "260px"}),
            html.Button(id="shell-lang", className="lang-btn", n_clicks=0),
            html.Span(id="shell-user", className="user"),
            html.A(id="shell-logout", href="/logout", className="logout"),
        ], className="topbar"),
        html.Main(id="page", className="page"),
    ])


def create_app(settings: Settings | None = None, redis_url: str | None = None) -> Dash:
    settings = settings or Settings()
    app = Dash(__name__, assets_folder=str(PROJECT_ROOT / "assets"), title="Flood command · 防汛指挥",
               suppress_callback_exceptions=True,
               update_title=None, meta_tags=[{"name": "viewport", "content": "width=device-width, initial-scale=1"}])
    server = app.server
    server.secret_key = _secret_key(settings)
    server.config.update(ECD_REDIS_URL=redis_url or settings.redis_url or os.environ.get("REDIS_URL"),
                         ECD_MAP_STYLE=settings.map_style, ECD_MAP_TILES=settings.map_tiles,
                         SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    if not server.config["ECD_REDIS_URL"]:
        raise RuntimeError("the web app needs REDIS_URL (python app.py sets it)")
    server.config["ECD_ACK_MS"] = int(settings.ack_minutes * 60_000)
    _register_routes(server, settings)
    import layouts.department  # noqa: F401 - registers the page's callbacks
    import layouts.exercise  # noqa: F401
    import layouts.feeds  # noqa: F401
    import layouts.map  # noqa: F401

    layouts.exercise.register_routes(server)
    import layouts.interop

    layouts.interop.register_routes(server)
    app.layout = _shell
    # Dash registers its scripts on the first request; with threaded workers two first requests race
    # and one gets a 500 ("dash is not a registered library"). Set up before serving anything.
    with server.test_request_context("/"):
        app._setup_server()
    return app


def create_server() -> flask.Flask:
    """For gunicorn: `gunicorn 'app:create_server()'` (REDIS_URL in the environment)."""
    import gc

    server = create_app().server
    # the app's own objects live as long as the worker: keep them out of every garbage collection,
    # which otherwise walks them all every few map callbacks (the map's p95, docs/performance.md)
    gc.collect()
    gc.freeze()
    return server


# ---- shell callbacks ----------------------------------------------------------------------------------
@callback(Output("lang", "data"), Input("shell-lang", "n_clicks"), State("lang", "data"))
def _lang(n, lang):
    if not n:
        if lang in i18n.LANGS:
            return no_update
        best = flask.request.accept_languages.best or ""
        return "zh" if best.startswith("zh") else "en"
    return "en" if lang == "zh" else "zh"


@callback(Output("shell-ns", "options"), Output("shell-ns", "value"),
          Input("shell-tick", "n_intervals"), Input("lang", "data"), State("shell-ns", "value"))
def _ns_options(_n, lang, current):
    from command.keys import LIVE
    from command.ops.drills import list_drills
    from layouts.common import current_user, rds

    if current_user() is None:
        return no_update, no_update
    lang = lang or "en"
    drills = [d for d in list_drills(rds()) if d.get("status") not in ("failed",)]
    options = [{"label": "● " + t("shell.live", lang), "value": LIVE}]
    for d in drills:
        label = t("shell.drill", lang, name=d.get("scenario", d["namespace"]))
        options.append({"label": f"{label} · {d['namespace'][-8:]} · {d.get('status', '')}", "value": d["namespace"]})
    values = {o["value"] for o in options}
    if current in values:
        return options, no_update
    running = [d["namespace"] for d in drills if d.get("status") in ("running", "starting")]
    return options, (running[0] if running else LIVE)


@callback(Output("ns", "data"), Input("shell-ns", "value"))
def _ns(value):
    return value


@callback(Output("page", "children"), Output("shell-nav", "children"), Output("shell-brand", "children"),
          Output("shell-user", "children"), Output("shell-logout", "children"), Output("shell-lang", "children"),
          Input("url", "pathname"), Input("lang", "data"), Input("ns", "data"))
def _render(pathname, lang, ns):
    from layouts import department, exercise, feeds
    from layouts import map as map_page
    from layouts.common import current_user, dept_names

    lang = lang or "en"
    user = current_user()
    if user is None:
        return html.Div(dcc.Link(t("shell.signed_out", lang), href="/login")), [], t("app.title", lang), "", "", ""
    page = PAGES.get(pathname or "/")
    links = [dcc.Link(t(f"nav.{'map' if p == 'map' else p}", lang), href=path, className="nav-link",
                      id=f"shell-nav-{p}")
             for path, p in PAGES.items() if user["role"] in PAGE_ROLES[p]]
    who = t("shell.signed_in", lang, name=user["name"], department=dept_names(lang).get(user["department"], user["department"]))
    head = (links, t("app.title", lang), who, t("shell.sign_out", lang), t("shell.language", lang))
    if page is None:
        return (html.Div(t("shell.not_found", lang), className="muted p-4"), *head)
    if user["role"] not in PAGE_ROLES[page]:
        return (html.Div([t("shell.forbidden", lang), " ", dcc.Link("→", href=ROLE_HOME[user["role"]])],
                         className="p-4", id="shell-forbidden"), *head)
    module = {"map": map_page, "department": department, "exercise": exercise, "feeds": feeds}[page]
    return (module.layout(lang, ns), *head)


@callback(Output("shell-banner", "children"), Output("shell-clock", "children"),
          Input("shell-tick", "n_intervals"), Input("ns", "data"), Input("lang", "data"))
def _clock(_n, ns, lang):
    from command.ops.drills import drill_state
    from layouts.common import current_user, exercise_banner, fmt_time, is_exercise, namespace, ns_tz, rds

    if current_user() is None:
        return no_update, no_update
    lang = lang or "en"
    r, keys = rds(), namespace(ns)
    raw = r.get(keys.clock)
    tz = ns_tz(r, keys)
    exercise = is_exercise(r, keys)
    label = t("shell.scenario_clock" if exercise else "shell.clock", lang)
    clock = fmt_time(int(raw), tz, with_date=True) if raw else "—"
    extra = ""
    if exercise:
        st = drill_state(r, keys.ns)
        if st:
            extra = f" · {st.get('speed', '')}x" + (" · ⏸" if st.get("paused") == "1" else "")
    banner = exercise_banner(lang, (r.hget(keys.meta, "scenario") or b"").decode()) if exercise else None
    return banner, html.Span([html.Span(label + " ", className="muted"), html.B(clock, id="shell-clock-time"),
                              html.Span(f" {tz or 'UTC'}{extra}", className="muted")])


# ---- python app.py --------------------------------------------------------------------------------------
class AlreadyRunning(RuntimeError):
    pass


def _lock(data_dir: Path):
    """One `python app.py` per data folder: a second one says so instead of corrupting the first."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fh = open(data_dir / "app.lock", "a+")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        info = (data_dir / "app.json")
        detail = info.read_text() if info.exists() else "{}"
        raise AlreadyRunning(f"flood command is already running on this data folder ({data_dir}): {detail}") from None
    return fh


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    fh = open(log, "ab")  # noqa: SIM115 - the child keeps it
    # own session: Ctrl-C reaches only us, and we stop the children in order
    return subprocess.Popen(args, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            cwd=PROJECT_ROOT, start_new_session=True)


def _stop_all(procs: list[tuple[str, subprocess.Popen]], timeout: float = 10.0) -> None:
    for _, p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + timeout
    for _, p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def main(argv: list[str] | None = None) -> int:
    settings = Settings()
    p = argparse.ArgumentParser(description="Flood command: everything on one machine")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8050")))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--workers", type=int, default=2, help="web workers (gunicorn)")
    p.add_argument("--scenario", type=Path, default=settings.default_scenario,
                   help="the sample scenario replayed as an exercise at start")
    p.add_argument("--speed", default="60", help="its replay speed: 1, 10, 60 ... or max")
    p.add_argument("--no-drill", action="store_true", help="do not start the sample exercise")
    args = p.parse_args(argv)

    from command.ops.drills import list_drills, start_drill
    from command.runtime.redis_server import EmbeddedRedis, RedisStartError

    try:
        lock = _lock(settings.data_dir)
    except AlreadyRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stop = {"now": False}

    def on_signal(*_):
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    server = None
    procs: list[tuple[str, subprocess.Popen]] = []
    try:
        url = settings.redis_url
        if not url:
            server = EmbeddedRedis(settings.redis_dir)
            url = server.start()
        import redis

        r = redis.Redis.from_url(url)
        r.ping()
        logs = settings.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, REDIS_URL=url, ECD_DATA_DIR=str(settings.data_dir), PYTHONUNBUFFERED="1")
        py = sys.executable
        _secret_key(settings)  # made once here, before the web workers race to make it
        _bootstrap_live(r)
        procs.append(("engine", _spawn([py, "-m", "command", "engine", "--namespace", "live", "--live-ticks"], env,
                                       logs / "engine.log")))
        procs.append(("drills", _spawn([py, "-m", "command", "drills"], env, logs / "drills.log")))
        procs.append(("worker", _spawn([py, "-m", "command", "worker"], env, logs / "worker.log")))
        if _feeds_enabled():
            procs.append(("feeds", _spawn([py, "-m", "command", "feeds", "run"], env, logs / "feeds.log")))
        else:
            print("live feeds: none enabled in feeds.yaml (the sample exercise needs none)")
        procs.append(("web", _spawn([py, "-m", "gunicorn", "--workers", str(args.workers), "--threads", "4",
                                     "--bind", f"{args.host}:{args.port}", "--graceful-timeout", "5",
                                     "--access-logfile", "-", "app:create_server()"], env, logs / "web.log")))
        address = f"http://{args.host}:{args.port}"
        (settings.data_dir / "app.json").write_text(json.dumps({
            "pid": os.getpid(), "address": address, "redis": url,
            "children": {name: p.pid for name, p in procs},
            "redis_pid": server.proc.pid if server is not None and server.proc is not None else None}))
        if not args.no_drill and not any(d.get("status") in ("running", "starting") for d in list_drills(r)):
            ns = start_drill(r, args.scenario, args.speed, by="system")
            print(f"exercise: replaying {args.scenario.name} at {args.speed}x in namespace {ns}")
        if not _wait_http(address + "/health", procs, 30):
            print(f"error: the web server did not start; see {logs / 'web.log'}", file=sys.stderr)
            return 1
        print(f"Flood command is running: {address}  (sign in as 'operator', password 'flood-demo')")
        print(f"Redis: {url}  ({'embedded, data in ' + str(settings.redis_dir) if server else 'REDIS_URL'})")
        print(f"logs: {logs}/  ·  Ctrl-C stops everything", flush=True)
        while not stop["now"]:
            for name, proc in procs:
                if proc.poll() is None:
                    continue
                print(f"error: {name} stopped (status {proc.returncode}); see {logs / (name + '.log')}",
                      file=sys.stderr)
                stop["now"] = True
            time.sleep(0.3)
        return 0
    except RedisStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping ...", flush=True)
        _stop_all(procs)
        if server is not None:
            server.stop()
        (settings.data_dir / "app.json").unlink(missing_ok=True)
        lock.close()
        print("stopped", flush=True)


def _feeds_enabled() -> bool:
    """Is any live source switched on in feeds.yaml? A broken file is reported by the feeds process."""
    from feeds.runner import FeedConfigError, build_sources, load_config

    try:
        return bool(build_sources(load_config()))
    except FeedConfigError:
        return True


def _bootstrap_live(r) -> None:
    """Live needs a rule set and the reference data before an engine can start: the sample's, at first."""
    from command.keys import Keys
    from command.scenarios.load import load_scenario
    from feeds.replay import load_namespace

    keys = Keys("live")
    if r.exists(keys.rules):
        return
    sc = load_scenario(Settings().default_scenario)
    sc.quarantine = []  # the sample's deliberate faults belong to the exercise, not to live
    load_namespace(r, keys, sc, mode="live")
    r.delete(keys.clock)


def _wait_http(url: str, procs, timeout: float) -> bool:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for _, p in procs):
            return False
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


if __name__ == "__main__":
    sys.exit(main())
