"""`/exercise`: start a drill from a scenario at a chosen speed, pause/resume/stop it, inject events, and
read its after-action report. The drills themselves run in the drill runner (command/drills.py)."""

from __future__ import annotations

from pathlib import Path

import dash_bootstrap_components as dbc
import flask
from dash import ALL, Input, Output, State, ctx, dcc, html, no_update

from command import i18n
from command.config import SAMPLE_DATA
from command.errors import CommandError, InvalidInput, NotFound
from command.i18n import t
from command.keys import Keys
from command.ops import drills
from command.publish import views
from command.publish.report import inline_script_hashes
from command.trust.classification import INTERNAL, Viewer

from . import access, exercise_backtest, exercise_events, exercise_files
from .access import browser_callback, route_policy, secured_callback
from .admission import long_work
from .common import current_viewer, drill_status, fmt_time, namespace, rds, refusal_text, require_user
from .inputs import NOT, clicked, lang_of, number, one_of, text
from .web_headers import content_security_policy

i18n.add({
    "ex.title": {"en": "Exercises", "zh": "演练"},
    "ex.start_title": {"en": "Start a drill", "zh": "开始演练"},
    "ex.scenario": {"en": "Scenario", "zh": "场景"},
    "ex.speed": {"en": "Speed", "zh": "速度"},
    "ex.start": {"en": "Start drill", "zh": "开始"},
    "ex.started": {"en": "Drill {ns} is starting: switch to it in the view menu.", "zh": "演练 {ns} 正在启动，可在视图菜单中切换。"},
    "ex.drills": {"en": "Drills", "zh": "演练列表"},
    "ex.none": {"en": "No drills yet.", "zh": "尚无演练。"},
    "ex.pause": {"en": "Pause", "zh": "暂停"},
    "ex.resume": {"en": "Resume", "zh": "继续"},
    "ex.stop": {"en": "Stop", "zh": "结束"},
    "ex.view": {"en": "Show", "zh": "查看"},
    "ex.report": {"en": "After-action report", "zh": "复盘报告"},
    "ex.inject_title": {"en": "Inject an event into the drill shown", "zh": "向当前演练注入事件"},
    "ex.not_drill": {"en": "Choose a drill in the view menu to inject events.", "zh": "请先在视图菜单中选择一个演练。"},
    "ex.levee": {"en": "Levee breach at", "zh": "堤防决口位置"},
    "ex.inject_levee": {"en": "Inject levee breach", "zh": "注入堤防决口"},
    "ex.breakdown": {"en": "A unit breaks down", "zh": "设备故障"},
    "ex.inject_breakdown": {"en": "Inject breakdown", "zh": "注入故障"},
    "ex.injected": {"en": "Injected: {what}.", "zh": "已注入：{what}。"},
    "ex.bad_position": {"en": "Give a latitude and a longitude.", "zh": "请填写经纬度。"},
    "ex.progress": {"en": "{pct}% · scenario time {clock}", "zh": "{pct}% · 演练时间 {clock}"},
    "ex.started_by": {"en": "Started {when} by {who}", "zh": "{when} 由 {who} 启动"},
    "ex.confirm_stop": {"en": "Stop drill {name} ({ns})? It cannot be resumed.",
                        "zh": "结束演练 {name}（{ns}）？结束后无法继续。"},
    "ex.lat": {"en": "Latitude", "zh": "纬度"},
    "ex.lon": {"en": "Longitude", "zh": "经度"},
    "ex.max": {"en": "max", "zh": "最快"},  # the fastest replay speed
})

SPEEDS = ["1", "10", "60", "300", "600", "3600", "max"]
EXERCISE_ROLES = ("planner", "operator")  # layouts/shell.PAGE_ROLES["exercise"]
CONTROLS = ("pause", "resume", "stop", "speed")


def scenario_options(root: Path = SAMPLE_DATA / "scenarios") -> list[dict]:
    """The sample scenarios, and those uploaded or saved on this page (layouts/exercise_files.py)."""
    return exercise_files.sample_options(root) + exercise_files.kept_options()


def drill_rows(r) -> list[dict]:
    """What the drill list shows, read once: each drill's record merged with its live state (newest 20)."""
    listed = drills.list_drills(r)[:20]
    states = drills.drill_states(r, [d["namespace"] for d in listed])
    return [{**d, "state": st, "status": st.get("status") or d.get("status", "")} for d, st in zip(listed, states, strict=True)]


def list_signature(rows: list[dict], lang: str) -> list:
    """Everything the drawn list depends on except each drill's progress line.

    The list is drawn again only when this changes: a redraw replaces every button under the
    planner's pointer (and focus), so progress, which moves every second, has a callback of its own
    (`_progress`) that leaves the buttons alone. A click in the instant of a real redraw still keeps its
    answer: the clicks reach the server through a store outside the list (`relayClick`)."""
    return [lang, *[[d["namespace"], d["status"], d["state"].get("paused", ""), d["state"].get("speed", ""),
                     d.get("scenario", ""), d.get("error", ""), d.get("created"), d.get("by"),
                     d["state"].get("timezone", "")] for d in rows]]


def progress_line(d: dict, lang: str) -> str:
    st = d["state"]
    pct = 100 * int(st.get("published", 0)) / max(int(st.get("total", 1) or 1), 1)
    clock = fmt_time(int(st["clock"]), st.get("timezone") or None, with_date=True) if st.get("clock") else "—"
    return t("ex.progress", lang, pct=f"{pct:.0f}", clock=clock)


def drills_view(rows: list[dict], lang: str) -> list:
    if not rows:
        return [html.Div(t("ex.none", lang), className="muted")]
    out = []
    for d in rows:
        ns, st, status = d["namespace"], d["state"], d["status"]
        tz = st.get("timezone") or None
        created = d.get("created")
        when = (fmt_time(int(created), tz, with_date=True) + f" {tz or 'UTC'}") if isinstance(created, int) else "—"
        active = status in ("running", "paused")
        buttons = []
        if active:
            paused = st.get("paused") == "1"
            buttons.append(dbc.Button(t("ex.resume" if paused else "ex.pause", lang),
                                      id={"type": "ex-ctl", "ns": ns, "cmd": "resume" if paused else "pause", "speed": ""},
                                      size="sm", color="secondary", className="me-1", n_clicks=0))
            current = st.get("speed", "")
            # buttons, not a dropdown: a redrawn dropdown would report its value as a change;
            # a redrawn button reports no click
            buttons += [dbc.Button(t("ex.max", lang) if s == "max" else f"{s}x", id={"type": "ex-ctl", "ns": ns, "cmd": "speed", "speed": s},
                                   size="sm", color="primary" if s == current else "light", className="me-1", n_clicks=0)
                        for s in SPEEDS]
            buttons.append(dbc.Button(t("ex.stop", lang), id={"type": "ex-ctl", "ns": ns, "cmd": "stop", "speed": ""}, size="sm",
                                      color="danger", outline=True, className="ms-1", n_clicks=0))
        buttons.append(dbc.Button(t("ex.view", lang), id={"type": "ex-view", "ns": ns}, size="sm", color="primary",
                                  outline=True, className="ms-1", n_clicks=0))
        buttons.append(html.A(t("ex.report", lang), href=f"/exercise/report/{ns}", target="_blank", className="ms-2"))
        out.append(html.Div([
            html.Div([html.B(d.get("scenario", "")), html.Span(f" · {ns} · {drill_status(status, lang)}", className="muted")]),
            html.Div(progress_line(d, lang), className="small", id={"type": "ex-progress", "ns": ns}),
            html.Div(t("ex.started_by", lang, when=when, who=str(d.get("by") or "—")), className="small muted",
                     id={"type": "ex-started-by", "ns": ns}),
            html.Div(d.get("error", ""), className="field-error"),
            html.Div(buttons, className="controls"),
        ], className="drill-row"))
    return out


def layout(lang: str, ns: str) -> html.Div:
    user = require_user("planner", "operator")
    r = rds()
    keys = namespace(ns)
    resources = views.resources(r, keys) if drills.is_drill(r, keys.ns) else []
    return html.Div([
        dcc.Interval(id="ex-tick", interval=1000),
        # stopping is final: the Stop button asks first (outside the list, which is drawn again when a drill changes)
        dcc.ConfirmDialog(id="ex-stop-confirm"),
        dcc.Store(id="ex-stop-ns"),
        dcc.Store(id="ex-drills-drawn"),  # the signature of the list as drawn (`list_signature`)
        dcc.Store(id="ex-click"),  # the last click on a drill's row (`relayClick`, assets/clicks.js)
        html.H4(t("ex.title", lang)),
        html.Div([
            html.H5(t("ex.start_title", lang)),
            html.Div([
                html.Div([html.Label(t("ex.scenario", lang)),
                          dcc.Dropdown(id="ex-scenario", options=scenario_options(),
                                       value=str(SAMPLE_DATA / "scenarios" / "jiangcheng_flood"), clearable=False)]),
                html.Div([html.Label(t("ex.speed", lang)),
                          dcc.Dropdown(id="ex-speed-new", value="60", clearable=False,
                                       options=[{"label": t("ex.max", lang) if s == "max" else s, "value": s}
                                                for s in SPEEDS])]),
            ], className="form-row2"),
            dbc.Button(t("ex.start", lang), id="ex-start", color="primary", className="mt-2", n_clicks=0),
            html.Div(id="ex-msg", role="status"),
        ], className="panel"),
        html.Div([html.H5(t("ex.drills", lang)), html.Div(id="ex-drills")], className="panel"),
        html.Div([
            html.H5(t("ex.inject_title", lang)),
            html.Div(t("ex.not_drill", lang), className="muted") if not resources else html.Div([
                # each event on a row of its own: its label above, its fields, then its button beside them
                html.Div([
                    html.Label(t("ex.levee", lang), className="inject-label"),
                    html.Div([dcc.Input(id="ex-lat", type="number", placeholder=t("ex.lat", lang)),
                              dcc.Input(id="ex-lon", type="number", placeholder=t("ex.lon", lang)),
                              dbc.Button(t("ex.inject_levee", lang), id="ex-inject-levee", color="warning", size="sm",
                                         n_clicks=0)], className="inject-fields"),
                ], className="inject-row", id="ex-inject-levee-row"),
                html.Div([
                    html.Label(t("ex.breakdown", lang), className="inject-label"),
                    html.Div([dcc.Dropdown(id="ex-resource", className="inject-grow",
                                           options=[{"label": f"{x.name} ({x.id})", "value": x.id}
                                                    for x in resources if x.status.value != "out_of_service"]),
                              dbc.Button(t("ex.inject_breakdown", lang), id="ex-inject-breakdown", color="warning",
                                         size="sm", n_clicks=0)], className="inject-fields"),
                ], className="inject-row", id="ex-inject-breakdown-row"),
                html.Div(id="ex-inject-msg", role="status"),
            ]),
        ], className="panel"),
        # authoring: the planner's (each callback checks the role again on the server)
        *((exercise_files.panel(lang), exercise_events.panel(lang), exercise_backtest.panel(lang))
          if user["role"] in exercise_files.PLANNER else ()),
    ], className="exercise-page")


@secured_callback(Output("ex-drills", "children"), Output("ex-drills-drawn", "data"), Input("ex-tick", "n_intervals"),
                  State("lang", "data"), State("ex-drills-drawn", "data"), allow=EXERCISE_ROLES)
def _drills(_n, lang, drawn):
    lang = lang_of(lang)
    rows = drill_rows(rds())
    signature = list_signature(rows, lang)
    if signature == drawn:
        return no_update, no_update  # nothing but progress moved: leave the buttons as they are
    return drills_view(rows, lang), signature


@secured_callback(Output({"type": "ex-progress", "ns": ALL}, "children"), Input("ex-tick", "n_intervals"),
                  State("lang", "data"), allow=EXERCISE_ROLES)
def _progress(_n, lang):
    lang = lang_of(lang)
    rows = {d["namespace"]: d for d in drill_rows(rds())}
    # the ids come from the browser, shaped by the callback gate (each `ns` a string or a number): one
    # not listed, crafted or a drill gone since, is answered "—"
    return [progress_line(rows[o["id"]["ns"]], lang) if o["id"]["ns"] in rows else "—" for o in ctx.outputs_list]


@secured_callback(Output("ex-msg", "children"), Output("shell-ns", "value", allow_duplicate=True),
                  Input("ex-start", "n_clicks"), State("ex-scenario", "value"), State("ex-speed-new", "value"),
                  State("lang", "data"), prevent_initial_call=True, allow=EXERCISE_ROLES)
def _start(n, scenario, speed, lang):
    if not n:  # a render, not a click: never start a drill by accident
        return no_update, no_update
    valid = {o["value"] for o in scenario_options()}
    if one_of(scenario, valid) is NOT or one_of(speed, SPEEDS) is NOT:
        return dbc.Alert("?", color="danger"), no_update
    ns = drills.start_drill(rds(), scenario, speed, by=access.user()["username"])
    return dbc.Alert(t("ex.started", lang_of(lang), ns=ns), color="success", dismissable=True, id="ex-started"), no_update


# The rows' buttons are inside the list `_drills` draws again: their clicks reach the server through a
# store outside it (assets/clicks.js says why), and `_control` and `_view` listen on that store.
browser_callback("relayClick", Output("ex-click", "data"), Input({"type": "ex-ctl", "ns": ALL, "cmd": ALL, "speed": ALL},
                 "n_clicks"), Input({"type": "ex-view", "ns": ALL}, "n_clicks"), prevent_initial_call=True,
                 allow=EXERCISE_ROLES)


@secured_callback(Output("ex-tick", "n_intervals"), Output("ex-stop-confirm", "displayed"),
                  Output("ex-stop-confirm", "message"), Output("ex-stop-ns", "data"),
                  Output("ex-msg", "children", allow_duplicate=True),
                  Input("ex-click", "data"), State("lang", "data"), prevent_initial_call=True, allow=EXERCISE_ROLES)
def _control(click, lang):
    nothing = (no_update,) * 5
    button = clicked(click, "ex-ctl")
    if button is None:
        return nothing
    cmd, ns = one_of(button.get("cmd"), CONTROLS), text(button.get("ns"), 100)
    speed = one_of(button.get("speed"), ["", *SPEEDS])
    if cmd is NOT or ns is NOT or speed is NOT or (cmd == "speed") != bool(speed):
        return nothing  # not a button this page draws
    drill = next((d for d in drills.list_drills(rds()) if d["namespace"] == ns), None)
    if drill is None:
        return nothing  # not a drill: nothing to send
    st = drills.drill_state(rds(), ns)
    try:  # the list was drawn before the drill moved on (finished, paused elsewhere): say so, send nothing
        drills.check_command(cmd, st.get("status") or drill.get("status", ""), st.get("paused") == "1")
    except CommandError as exc:
        return no_update, no_update, no_update, no_update, dbc.Alert(refusal_text(exc, lang_of(lang)), color="warning",
                                                             dismissable=True, id="ex-refused")
    if cmd == "stop":  # final: ask first (`_stop_confirmed` sends it)
        message = t("ex.confirm_stop", lang_of(lang), name=drill.get("scenario", ""), ns=ns)
        return no_update, True, message, ns, no_update
    by = access.user()["username"]
    if cmd == "speed":
        drills.send(rds(), "speed", ns=ns, speed=speed, by=by)
    else:
        drills.send(rds(), cmd, ns=ns, by=by)
    return nothing


@secured_callback(Output("ex-stop-ns", "data", allow_duplicate=True), Input("ex-stop-confirm", "submit_n_clicks"),
                  State("ex-stop-ns", "data"), prevent_initial_call=True, allow=EXERCISE_ROLES)
def _stop_confirmed(n, ns):
    ns = text(ns, 100)
    if not n or ns is NOT or not ns:
        return no_update
    if ns not in {d["namespace"] for d in drills.list_drills(rds())}:
        return None  # not a drill: nothing to send
    drills.send(rds(), "stop", ns=ns, by=access.user()["username"])
    return None


@secured_callback(Output("shell-ns", "value", allow_duplicate=True), Input("ex-click", "data"),
                  prevent_initial_call=True, allow=EXERCISE_ROLES)
def _view(click):
    button = clicked(click, "ex-view")
    ns = text(button.get("ns"), 100) if button is not None else NOT
    return no_update if ns is NOT or not ns else ns


@secured_callback(Output("ex-inject-msg", "children"), Input("ex-inject-levee", "n_clicks"),
                  Input("ex-inject-breakdown", "n_clicks"), State("ex-lat", "value"), State("ex-lon", "value"),
                  State("ex-resource", "value"), State("ns", "data"), State("lang", "data"), prevent_initial_call=True,
                  allow=EXERCISE_ROLES)
def _inject(a, b, lat, lon, resource, ns, lang):
    if not (a if ctx.triggered_id == "ex-inject-levee" else b):
        return no_update
    user = access.user()
    lang = lang_of(lang)
    r, keys = rds(), namespace(ns)
    if not drills.is_drill(r, keys.ns):
        return dbc.Alert(t("ex.not_drill", lang), color="warning")
    if ctx.triggered_id == "ex-inject-levee":
        lat, lon = number(lat, -90, 90), number(lon, -180, 180)
        if lat is NOT or lon is NOT or lat is None or lon is None:
            return dbc.Alert(t("ex.bad_position", lang), color="warning")
        drills.send(r, "inject", ns=keys.ns, type="incident", by=user["username"],
                    data={"category": "levee_breach", "lat": lat, "lon": lon, "severity": "red",
                          "description": "Injected levee breach"})
        what = t("ex.levee", lang) + f" {lat:.4f}, {lon:.4f}"
    else:
        resource = text(resource, 64)
        if resource is NOT or not resource:
            return no_update
        drills.send(r, "inject", ns=keys.ns, type="resource_status", by=user["username"],
                    data={"resource_id": resource, "status": "out_of_service"})
        what = t("ex.breakdown", lang) + f": {resource}"
    return dbc.Alert(t("ex.injected", lang, what=what), color="info", dismissable=True)


def report_html(r, ns: str, viewer: Viewer = INTERNAL) -> str:
    """The drill's after-action report, rendered from Redis as it stands now, with what `viewer` (the
    route passes the signed-in user's) is cleared for."""
    from command.publish.report import (
        after_action,
        collect_alerts,
        collect_quarantine,
        collect_recommendations,
        render_html,
    )

    keys = Keys(ns)
    report = after_action(r, keys, collect_alerts(r, keys), collect_recommendations(r, keys),
                          collect_quarantine(r, keys), viewer)
    return render_html(report)


def register_routes(server: flask.Flask) -> None:
    exercise_files.register_routes(server)
    exercise_backtest.register_routes(server)

    @server.route("/exercise/report/<ns>")
    @route_policy(allow=EXERCISE_ROLES)
    @long_work  # the whole drill read and drawn: a lane of its own (layouts/admission.py)
    def _report(ns):
        # a refusal is raised and answered by the app's one error handler (layouts/interop.answer_error)
        try:
            keys = Keys(ns)
        except InvalidInput:
            raise NotFound(f"no such drill {ns!r}") from None
        r = rds()
        if not r.exists(keys.meta):
            raise NotFound(f"no such drill {ns!r}")
        page = report_html(r, keys.ns, current_viewer())
        # the report draws its charts with inline scripts: allow exactly those by hash (the app's policy
        # allows no inline script, and security_headers only sets the header when a route has not)
        resp = flask.make_response(page)
        resp.headers["Content-Security-Policy"] = content_security_policy(
            inline_script_hashes(page), server.config.get("ECD_MAP_TILES"))
        return resp
