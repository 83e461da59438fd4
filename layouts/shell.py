"""The Dash app factory and the shell around every page: the top bar (brand, pages, clock, view menu,
language, user), the exercise banner, and the callbacks that choose the language and the namespace and
draw the page the address asks for."""

from __future__ import annotations

import os

import flask
from dash import Dash, Input, Output, State, dcc, html, no_update

from command import i18n
from command.config import PROJECT_ROOT, Settings
from command.i18n import t
from command.runtime.redis_client import is_cluster

from . import access
from .access import secured_callback
from .common import (
    current_user,
    dept_names,
    drill_status,
    exercise_banner,
    fmt_time,
    is_exercise,
    namespace,
    ns_tz,
    rds,
)
from .inputs import lang_of
from .signin import ROLE_HOME, register_routes, secret_key
from .web_basics import cookie_name

PAGES = {"/": "map", "/department": "department", "/exercise": "exercise", "/feeds": "feeds", "/audit": "audit"}
PAGE_ROLES = {"map": ("operator", "planner"), "department": ("department", "operator"),
              "exercise": ("planner", "operator"), "feeds": ("operator", "planner"),
              "audit": ("auditor",)}  # layouts/audit.py AUDIT_ROLES


def shell() -> html.Div:
    return html.Div([
        dcc.Location(id="url"),
        dcc.Store(id="lang", storage_type="local"),
        dcc.Store(id="ns", storage_type="session"),
        # set by assets/changes.js when /_changes says the top bar's data changed; a page that follows
        # changes has its own store (`chg-map`, `chg-dept`: it goes with the page, and so do the callbacks
        # it drives)
        dcc.Store(id="chg-shell"),
        # {"ns", "page", "words"}: what assets/changes.js asks about (an attribute: no text on the page)
        html.Div(id="shell-ctx", hidden=True, **{"data-ctx": ""}),
        html.Div(id="shell-banner"),
        html.Div(id="shell-stale", className="stale-banner", role="alert", hidden=True),
        html.Header([
            html.A(id="shell-brand", href="/", className="brand"),
            html.Nav(id="shell-nav", className="nav-links"),
            html.Div(id="shell-attention", className="attn-slot"),  # the operator page's alert sound, ...
            html.Div(id="shell-clock", className="clock"),
            html.Div(dcc.Dropdown(id="shell-ns", clearable=False, persistence=True, persistence_type="session"),
                     className="ns-select"),
            html.Button(id="shell-lang", className="lang-btn", n_clicks=0),
            html.Span(id="shell-user", className="user"),
            html.A(id="shell-logout", href="/logout", className="logout"),
        ], className="topbar"),
        html.Main(id="page", className="page"),
        html.Div(id="shell-widget-words", hidden=True),  # read by assets/widget-words.js
    ])


def create_app(settings: Settings | None = None, redis_url: str | None = None) -> Dash:
    settings = settings or Settings()
    app = Dash(__name__, assets_folder=str(PROJECT_ROOT / "assets"), title="Flood command · 防汛指挥",
               suppress_callback_exceptions=True,
               update_title=None, meta_tags=[{"name": "viewport", "content": "width=device-width, initial-scale=1"}])
    server = app.server
    server.secret_key = secret_key(settings)
    server.config.update(ECD_REDIS_URL=redis_url or settings.redis_url or os.environ.get("REDIS_URL"),
                         ECD_MAP_STYLE=settings.map_style, ECD_MAP_TILES=settings.map_tiles,
                         SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    if not server.config["ECD_REDIS_URL"]:
        raise RuntimeError("the web app needs REDIS_URL (python app.py sets it)")
    # learn now, while Redis answers, whether it is a cluster (asked once per process): a web worker
    # asking first at a /health during a Redis stall would answer late
    is_cluster(server.config["ECD_REDIS_URL"])
    server.config["ECD_ACK_MS"] = int(settings.ack_minutes * 60_000)
    register_routes(server, settings)
    import layouts.audit
    import layouts.department  # noqa: F401 - registers the page's callbacks
    import layouts.exercise  # noqa: F401
    import layouts.feeds  # noqa: F401
    import layouts.operator.attention  # noqa: F401
    import layouts.operator.callbacks  # noqa: F401

    layouts.exercise.register_routes(server)
    layouts.audit.register_routes(server, settings)
    import layouts.interop

    layouts.interop.register_routes(server)
    import layouts.admission
    import layouts.catalog
    import layouts.changes
    import layouts.public

    layouts.catalog.register_routes(server)  # /catalog, /api/catalog
    layouts.public.register_routes(server, settings)  # /public/: open data, no sign-in
    layouts.operator.basemap.register_routes(server, settings)  # the map's base; /map/tiles/ for MBTiles
    layouts.changes.register_routes(server, PAGE_ROLES)  # /_changes: what every open page polls (assets/changes.js)
    layouts.admission.install(server, settings.web_slots, cookie_name())  # after the sign-in gate: operators first
    app.layout = shell
    access.install(app)  # every secured callback, and the policies of Dash's own routes
    # Dash registers its scripts on the first request; with threaded workers two first requests race
    # and one gets a 500 ("dash is not a registered library"). Set up before serving anything.
    with server.test_request_context("/"):
        app._setup_server()
    access.verify(app)  # no callback or route without a declared policy
    return app


# ---- shell callbacks ----------------------------------------------------------------------------------
@secured_callback(Output("lang", "data"), Input("shell-lang", "n_clicks"), State("lang", "data"),
                  allow=access.ANY_ROLE)
def _lang(n, lang):
    if not n:
        if lang in i18n.LANGS:
            return no_update
        chosen = flask.session.get("lang")  # the sign-in page's language (layouts/signin.py)
        if chosen in i18n.LANGS:
            return chosen
        best = flask.request.accept_languages.best or ""
        return "zh" if best.startswith("zh") else "en"
    return "en" if lang == "zh" else "zh"


@secured_callback(Output("shell-ns", "options"), Output("shell-ns", "value"),
                  Input("chg-shell", "data"), Input("lang", "data"), State("shell-ns", "value"),
                  allow=access.ANY_ROLE)
def _ns_options(_n, lang, current):
    return namespace_options(rds(), lang_of(lang), current if isinstance(current, str) else None)


def namespace_options(r, lang: str, current: str | None) -> tuple[list[dict], str | object]:
    """The view menu: live, then each drill that has not failed; the value stays, else a running drill."""
    from command.keys import LIVE
    from command.ops.drills import list_drills

    drills = [d for d in list_drills(r) if d.get("status") not in ("failed",)]
    options = [{"label": "● " + t("shell.live", lang), "value": LIVE}]
    for d in drills:
        label = t("shell.drill", lang, name=d.get("scenario", d["namespace"]))
        options.append({"label": f"{label} · {d['namespace'][-8:]} · {drill_status(d.get('status', ''), lang)}",
                        "value": d["namespace"]})
    values = {o["value"] for o in options}
    if current in values:
        return options, no_update
    running = [d["namespace"] for d in drills if d.get("status") in ("running", "starting")]
    return options, (running[0] if running else LIVE)


def widget_words(lang: str) -> str:
    """{English: the page's language} for the widgets' own words (command/i18n.py `widget.*`); empty in
    English."""
    import orjson

    if lang == "en":
        return "{}"
    return orjson.dumps({e["en"]: t(k, lang) for k, e in i18n.TEXT.items() if k.startswith("widget.")}).decode()


@secured_callback(Output("ns", "data"), Input("shell-ns", "value"), allow=access.ANY_ROLE)
def _ns(value):
    return value


@secured_callback(Output("page", "children"), Output("shell-nav", "children"), Output("shell-brand", "children"),
                  Output("shell-user", "children"), Output("shell-logout", "children"),
                  Output("shell-lang", "children"), Output("shell-attention", "children"),
                  Output("shell-widget-words", "children"), Output("shell-ctx", "data-ctx"),
                  Input("url", "pathname"), Input("lang", "data"),
                  Input("ns", "data"), allow=access.ANY_ROLE, note="draws only the pages PAGE_ROLES gives the role")
def _render(pathname, lang, ns):
    lang = lang_of(lang)
    parts = render_page(pathname, lang, ns)
    user = current_user()
    page = PAGES.get(pathname or "/") if isinstance(pathname, str | None) else None
    shown = page if user is not None and page is not None and user["role"] in PAGE_ROLES[page] else ""
    return (*parts, changes_context(namespace(ns).ns, shown, lang))


def changes_context(ns: str, page: str, lang: str) -> str:
    """What assets/changes.js asks /_changes about (the namespace and the page drawn) and the words it
    shows when the data cannot be read, in the page's language."""
    import orjson

    return orjson.dumps({"ns": ns, "page": page, "words": {k: t(f"shell.{k}", lang) for k in ("down_since", "offline")}}
                        ).decode()


def render_page(pathname, lang: str, ns):
    """The page's parts for `_render`: the page, the navigation, the brand, the user, sign-out, the
    language button, the attention controls, the widgets' words."""
    from layouts import audit, department, exercise, feeds
    from layouts import operator as operator_page

    user = current_user()
    if user is None:
        return (html.Div(dcc.Link(t("shell.signed_out", lang), href="/login")), [], t("app.title", lang), "", "", "",
                None, widget_words(lang))
    page = PAGES.get(pathname or "/") if isinstance(pathname, str | None) else None
    links = [dcc.Link(t(f"nav.{'map' if p == 'map' else p}", lang), href=path, className="nav-link",
                      id=f"shell-nav-{p}")
             for path, p in PAGES.items() if user["role"] in PAGE_ROLES[p]]
    # the data catalogue (layouts/catalog.py) is a page of its own for every role, outside the Dash shell
    links.append(html.A(t("nav.catalog", lang), href="/catalog?lang=" + ("zh" if lang == "zh" else "en"),
                        className="nav-link", id="shell-nav-catalog"))
    who = t("shell.signed_in", lang, name=user["name"], department=dept_names(lang).get(user["department"], user["department"]))
    head = (links, t("app.title", lang), who, t("shell.sign_out", lang), t("shell.language", lang))
    words = widget_words(lang)
    if page is None:
        return (html.Div(t("shell.not_found", lang), className="muted p-4"), *head, None, words)
    if user["role"] not in PAGE_ROLES[page]:
        return (html.Div([t("shell.forbidden", lang), " ", dcc.Link("→", href=ROLE_HOME[user["role"]])],
                         className="p-4", id="shell-forbidden"), *head, None, words)
    module = {"map": operator_page, "department": department, "exercise": exercise, "feeds": feeds,
              "audit": audit}[page]
    attention = None
    if page == "map":  # the alert sound and the desktop notifications: the user's own settings
        from command.ops import preferences
        from layouts.operator.attention import controls

        attention = controls(lang, preferences.load(rds(), user["username"]))
    return (module.layout(lang, ns), *head, attention, words)


@secured_callback(Output("shell-banner", "children"), Output("shell-clock", "children"),
                  Input("chg-shell", "data"), Input("ns", "data"), Input("lang", "data"),
                  allow=access.ANY_ROLE)
def _clock(_n, ns, lang):
    return clock_view(rds(), namespace(ns), lang_of(lang))


def clock_view(r, keys, lang: str) -> tuple[html.Div | None, html.Span]:
    """The exercise banner (None on live) and the clock: the namespace's time, its speed in a drill."""
    from command.ops.drills import drill_state

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
    # on a phone the label and the time zone fold away (assets/5-phone.css): the time and the speed stay
    return banner, html.Span([html.Span(label + " ", className="muted clock-label"), html.B(clock, id="shell-clock-time"),
                              html.Span(f" {tz or 'UTC'}", className="muted clock-tz"),
                              html.Span(extra, className="muted clock-speed")])
