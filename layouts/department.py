"""`/department`: a field department's own tasks and a short status form, phone-friendly; new incidents."""

from __future__ import annotations

import math
from typing import Any

import dash_bootstrap_components as dbc
import orjson
from dash import ALL, Input, Output, State, ctx, dcc, html, no_update
from plotly.io.json import to_json_plotly

from command import i18n
from command.clock import command_time
from command.errors import CommandError, InvalidInput, RateLimited
from command.i18n import t
from command.models import TASK_NEXT
from command.ops.dispatch import update_task
from command.ops.incidents import CATEGORIES, FORM, SEVERITIES, Actor, submit
from command.publish import views
from command.timeutil import humanize_ms
from command.trust.classification import INTERNAL, Viewer
from command.trust.throttle import check_submission

from . import access
from .access import secured_callback
from .changes import TimedCache, department_token, worker_tokens
from .common import current_viewer, dept_names, fmt_time, level_badge, namespace, ns_tz, rds, require_user
from .inputs import NOT, as_list, lang_of, number, text

i18n.add({
    "dept.title": {"en": "Tasks for {dept}", "zh": "{dept} 的任务"},
    "dept.none": {"en": "No tasks for your department.", "zh": "本部门暂无任务。"},
    "dept.status": {"en": "Status", "zh": "状态"},
    # a completed task the sensors contradict (command/ops/verify.py)
    "dept.reopened": {"en": "⚑ Reopened: {reason}", "zh": "⚑ 已重新打开：{reason}"},
    "dept.note": {"en": "Note", "zh": "说明"},
    "dept.people": {"en": "People assisted", "zh": "救助人数"},
    "dept.lat": {"en": "Latitude (optional)", "zh": "纬度（可选）"},
    "dept.lon": {"en": "Longitude (optional)", "zh": "经度（可选）"},
    "dept.send": {"en": "Send update", "zh": "提交"},
    "dept.saved": {"en": "Saved: {task} is now {status}.", "zh": "已提交：{task} 状态为 {status}。"},
    "dept.resources": {"en": "Resources: {ids}", "zh": "资源：{ids}"},
    "dept.where": {"en": "Where: {where}", "zh": "地点：{where}"},
    "dept.closed": {"en": "This task is completed.", "zh": "该任务已完成。"},
    "dept.report": {"en": "Report a new incident", "zh": "上报新事件"},
    "dept.category": {"en": "Category", "zh": "类别"},
    "dept.severity": {"en": "Severity", "zh": "严重程度"},
    "dept.description": {"en": "What is happening", "zh": "情况描述"},
    "dept.position_hint": {"en": "Click the map to set the position, or type it.", "zh": "点击地图选择位置，或直接输入坐标。"},
    "dept.report_send": {"en": "Report incident", "zh": "上报"},
    "dept.reported": {"en": "Reported {id} ({category}).", "zh": "已上报 {id}（{category}）。"},
    "dept.fix": {"en": "Please correct the marked fields.", "zh": "请修改标出的字段。"},
    "dept.since": {"en": "updated {age} ago", "zh": "{age}前更新"},
    "dept.earlier": {"en": "… {n} earlier updates", "zh": "… 另有 {n} 条较早的更新"},
    "dept.person_name": {"en": "Person assisted: name (optional)", "zh": "获救人员姓名（可选）"},
    "dept.person_phone": {"en": "Their phone (optional)", "zh": "联系电话（可选）"},
    "dept.reporter_name": {"en": "Reported by: name (optional)", "zh": "报告人姓名（可选）"},
    "dept.reporter_phone": {"en": "Their phone (optional)", "zh": "报告人电话（可选）"},
    "dept.personal_hint": {"en": "Personal data: shown whole only to staff cleared secret.",
                           "zh": "个人信息：仅秘密级人员可见完整内容。"},
})


TASK_FIELDS = ("status", "note", "people_assisted", "position")  # the status form's fields, as update_task names them
DEPT_ROLES = ("department", "operator")  # who reads the page (layouts/shell.PAGE_ROLES["department"])


def _field_err(tid: str, field: str) -> html.Div:
    """Where the status form shows the message about one field, under it."""
    return html.Div(id={"type": "dept-field-err", "task": tid, "field": field}, className="field-error")


def _person(p: Any) -> str:
    """A person as the reader gave them (masked or whole for the viewer): 'name phone'."""
    return " ".join(x for x in (p.name, p.phone) if x) if p is not None else ""


HISTORY_SHOWN = 8  # a task card's newest status updates


def task_card(task: Any, lang: str, tz: str | None, now: int, reporter: Any = None) -> dbc.Card:
    tid = task.id
    # the newest updates only: a phone's card stays short, and so does what every phone of the department
    # is sent again after each update (the audit trail and the report keep the whole history)
    hist = [html.Li([t(f"status.{h.status}", lang), " · ", fmt_time(h.at, tz, with_date=True), " · ", h.by,
                     f" · 👥{h.people_assisted}" if h.people_assisted is not None else "",
                     f" · {h.note}" if h.note else ""]) for h in task.history[-HISTORY_SHOWN:]]
    if len(task.history) > HISTORY_SHOWN:
        hist.insert(0, html.Li(t("dept.earlier", lang, n=len(task.history) - HISTORY_SHOWN), className="muted"))
    where = f"{task.lat:.4f}, {task.lon:.4f}" if task.lat is not None else "—"
    body: list[Any] = [
        html.Div([level_badge(task.level, lang), html.B(f" {task.subject}"), html.Span(f" · {task.rule}", className="muted")]),
        html.Div(t("dept.where", lang, where=where), className="small"),
        html.Div(t("dept.resources", lang, ids=", ".join(task.resource_ids)), className="small"),
        *([html.Div("☎ " + t("people.reported_by", lang, who=_person(reporter)), className="reporter small")]
          if _person(reporter) else []),
        *([html.Div("👥 " + t("people.assisted", lang, who="; ".join(_person(p) for p in task.people)),
                    className="people small")] if task.people else []),
        html.Div([html.B(t(f"status.{task.status}", lang), className=f"st st-{task.status}", id={"type": "dept-status-now", "task": tid}),
                  html.Span(" · " + t("dept.since", lang, age=humanize_ms(max(0, now - task.updated_at))), className="muted small")]),
    ]
    reopened = next((h for h in reversed(task.history) if h.status == "reopened"), None)
    if task.status == "reopened" and reopened is not None:  # back on the list: say why, before anything else
        body.append(html.Div(t("dept.reopened", lang, reason=reopened.note), className="flag reopened",
                             id={"type": "dept-reopened", "task": tid}))
    elif task.flagged:
        body.append(html.Div(f"⚑ {task.flagged}", className="flag"))
    if hist:
        body.append(html.Ul(hist, className="history small"))
    nxt = [s for s in ("acknowledged", "en_route", "on_scene", "need_support", "completed") if s in TASK_NEXT[task.status]]
    if not nxt:
        body.append(html.Div(t("dept.closed", lang), className="muted"))
    else:
        body.append(html.Div([
            html.Label(t("dept.status", lang)),
            dcc.Dropdown(id={"type": "dept-status", "task": tid}, options=[{"label": t(f"status.{s}", lang), "value": s} for s in nxt],
                         value=nxt[0], clearable=False),
            _field_err(tid, "status"),
            html.Label(t("dept.note", lang)),
            dcc.Textarea(id={"type": "dept-note", "task": tid}, maxLength=2000, className="w-100"),
            _field_err(tid, "note"),
            html.Div([
                html.Div([html.Label(t("dept.people", lang)),
                          dcc.Input(id={"type": "dept-people", "task": tid}, type="number", min=0, step=1, className="w-100"),
                          _field_err(tid, "people_assisted")]),
                html.Div([html.Label(t("dept.lat", lang)),
                          dcc.Input(id={"type": "dept-lat", "task": tid}, type="number", className="w-100")]),
                html.Div([html.Label(t("dept.lon", lang)),
                          dcc.Input(id={"type": "dept-lon", "task": tid}, type="number", className="w-100")]),
            ], className="form-row3"),
            _field_err(tid, "position"),
            html.Div([
                html.Div([html.Label(t("dept.person_name", lang)),
                          dcc.Input(id={"type": "dept-person-name", "task": tid}, type="text", maxLength=100,
                                    className="w-100")]),
                html.Div([html.Label(t("dept.person_phone", lang)),
                          dcc.Input(id={"type": "dept-person-phone", "task": tid}, type="tel", maxLength=32,
                                    className="w-100")]),
            ], className="form-row2", title=t("dept.personal_hint", lang)),
            html.Div(id={"type": "dept-err", "task": tid}, className="field-error"),
            dbc.Button(t("dept.send", lang), id={"type": "dept-submit", "task": tid}, color="primary", className="mt-2 w-100",
                       n_clicks=0),
        ], className="task-form"))
    return dbc.Card(dbc.CardBody(body), className=f"task-card lvl-border-{task.level}", id={"type": "dept-card", "task": tid})


def tasks_view(r, keys, department: str, lang: str, viewer: Viewer = INTERNAL) -> list:
    """The department's task cards, with what `viewer` (the callback passes the signed-in user's) is
    cleared for: a reporter's or a rescued person's contacts masked or whole (command/publish/views.py)."""
    cards, red = _draw_tasks(r, keys, department, lang, viewer)
    red.audit(r, keys, "department_tasks")
    return cards


def _draw_tasks(r, keys, department: str, lang: str, viewer: Viewer) -> tuple[list, Any]:
    tasks, red = views.department_tasks_unaudited(r, keys, department, viewer)
    if not tasks:
        return [html.Div(t("dept.none", lang), className="muted empty", id="dept-empty")], red
    tz = ns_tz(r, keys)
    now = command_time(r, keys)
    order = {"need_support": 0, "reopened": 0, "assigned": 1, "acknowledged": 2, "en_route": 3, "on_scene": 4, "completed": 9}
    tasks.sort(key=lambda x: (order.get(x.task.status, 5), -x.task.created_at))
    return [task_card(x.task, lang, tz, now, x.reporter) for x in tasks], red


# A department's phones all show the same cards: each web worker draws them once per change (the
# signature: the tasks' records, the incidents, the clock's minute; the language; the clearance, which
# is all the classification decides on) and sends that drawing to every phone that asks. Each reader's
# read of secret values is still audited as their own. The drawing is kept as the JSON tree the
# components make: the answer to each phone is then encoded in one orjson call, not walked component by
# component in Python (Dash's encoder falls back to that walk for anything orjson cannot take).
_DRAWN: TimedCache = TimedCache(ttl=60.0, size=64)


def shared_tasks_view(r, keys, department: str, lang: str, viewer: Viewer, signature: list) -> list:
    def draw() -> tuple[list, dict[str, set[str]]]:
        cards, red = _draw_tasks(r, keys, department, lang, viewer)
        return orjson.loads(to_json_plotly(cards)), {k: set(v) for k, v in red.revealed.items()}

    cards, revealed = _DRAWN.get((department, *signature), draw)
    if revealed:
        views.audit_read(r, keys, viewer, revealed, "department_tasks")
    return cards


# back-pressure (command/trust/throttle.py): a report or status update refused because the user or the
# department sent too many in a short time
i18n.add({
    "dept.rate_limited": {"en": "Too many submissions from you or your department in a short time: "
                                "try again in {s} s.",
                          "zh": "您或您所在部门短时间内提交过多：请 {s} 秒后再试。"},
})


# the incident form's hints: a field left as it came says what it wants
i18n.add({
    "dept.category_hint": {"en": "Choose what happened…", "zh": "请选择事件类别…"},
    "dept.description_hint": {"en": "e.g. water 40 cm deep in the underpass, two cars stuck",
                              "zh": "例如：地下通道积水约 40 厘米，两辆车被困"},
    # what to correct, per field, where the intake's own (English) message is not in the page's language
    "dept.err.category": {"en": "Choose a category.", "zh": "请选择事件类别。"},
    "dept.err.severity": {"en": "Choose a severity.", "zh": "请选择严重程度。"},
    "dept.err.lat": {"en": "A latitude from -90 to 90.", "zh": "纬度须为 -90 至 90 之间的数字。"},
    "dept.err.lon": {"en": "A longitude from -180 to 180.", "zh": "经度须为 -180 至 180 之间的数字。"},
    "dept.err.description": {"en": "Say what is happening.", "zh": "请描述现场情况。"},
    "dept.err.other": {"en": "Check the reporter's name and phone.", "zh": "请检查报告人姓名和电话。"},
    "dept.err.refused": {"en": "This report was refused.", "zh": "上报被拒绝。"},
    # the same for a task's status form (update_task's messages are English)
    "dept.err.status": {"en": "Choose a status.", "zh": "请选择状态。"},
    "dept.err.note": {"en": "The note is too long or not text.", "zh": "说明过长或包含无效字符。"},
    "dept.err.people_assisted": {"en": "People assisted: a whole number, 0 or more.", "zh": "救助人数须为 0 或正整数。"},
    "dept.err.position": {"en": "Both a latitude (-90 to 90) and a longitude (-180 to 180), or neither.",
                          "zh": "请同时填写纬度（-90 至 90）和经度（-180 至 180），或都不填。"},
    "dept.err.task": {"en": "This update was not taken: check the person assisted, or reload and try again.",
                      "zh": "此次更新未被接受：请检查获救人员信息，或刷新页面后重试。"},
})


def _report_form(lang: str) -> html.Div:
    def err(field):
        return html.Div(id=f"dept-inc-err-{field}", className="field-error")

    return html.Div([
        html.H5(t("dept.report", lang)),
        html.Label(t("dept.category", lang)),
        dcc.Dropdown(id="dept-inc-category", options=[{"label": t(f"cat.{c}", lang), "value": c} for c in CATEGORIES],
                     placeholder=t("dept.category_hint", lang), searchable=False),
        err("category"),
        html.Label(t("dept.severity", lang)),
        dcc.Dropdown(id="dept-inc-severity", options=[{"label": t(f"level.{s}", lang), "value": s} for s in SEVERITIES],
                     value="orange", clearable=False),
        err("severity"),
        html.Div(t("dept.position_hint", lang), className="muted small mt-2"),
        dcc.Graph(id="dept-inc-map", config={"displayModeBar": False, "scrollZoom": True}, style={"height": "220px"}),
        html.Div([
            html.Div([html.Label(t("dept.lat", lang).split(" (")[0]), dcc.Input(id="dept-inc-lat", type="number", className="w-100"), err("lat")]),
            html.Div([html.Label(t("dept.lon", lang).split(" (")[0]), dcc.Input(id="dept-inc-lon", type="number", className="w-100"), err("lon")]),
        ], className="form-row2"),
        html.Label(t("dept.description", lang)),
        dcc.Textarea(id="dept-inc-description", maxLength=1000, className="w-100",
                     placeholder=t("dept.description_hint", lang)),
        err("description"),
        html.Div([
            html.Div([html.Label(t("dept.reporter_name", lang)),
                      dcc.Input(id="dept-inc-reporter-name", type="text", maxLength=100, className="w-100")]),
            html.Div([html.Label(t("dept.reporter_phone", lang)),
                      dcc.Input(id="dept-inc-reporter-phone", type="tel", maxLength=32, className="w-100")]),
        ], className="form-row2"),
        html.Div(t("dept.personal_hint", lang), className="muted small"),
        dbc.Button(t("dept.report_send", lang), id="dept-inc-submit", color="warning", className="mt-2 w-100", n_clicks=0),
        html.Div(id="dept-inc-msg", role="status"),
    ], className="report-form")


def layout(lang: str, ns: str) -> html.Div:
    user = require_user()
    name = dept_names(lang).get(user["department"], user["department"])
    return html.Div([
        dcc.Store(id="chg-dept"),  # set by assets/changes.js when this department's tasks changed
        dcc.Store(id="dept-version"),
        html.H4(t("dept.title", lang, dept=name), id="dept-title"),
        html.Div(id="dept-msg", role="status"),
        html.Div(id="dept-tasks", className="tasks"),
        _report_form(lang),
    ], className="dept-page")


# ---- callbacks ------------------------------------------------------------------------------------------
@secured_callback(Output("dept-tasks", "children"), Output("dept-version", "data"),
                  Input("chg-dept", "data"), State("ns", "data"), State("lang", "data"),
                  State("dept-version", "data"), allow=DEPT_ROLES, own_department=True,
                  note="the session's department's tasks only")
def _tasks(_n, ns, lang, client):
    user = access.user()
    lang = lang_of(lang)
    r, keys = rds(), namespace(ns)
    viewer = current_viewer()
    sig = [keys.ns, lang, viewer.clearance, department_token(worker_tokens(), r, keys, user["department"])]
    if sig == client:
        return no_update, no_update
    return shared_tasks_view(r, keys, user["department"], lang, viewer, sig), sig


@secured_callback(Output("dept-msg", "children"), Output({"type": "dept-err", "task": ALL}, "children"),
                  Output({"type": "dept-field-err", "task": ALL, "field": ALL}, "children"),
                  Output("dept-version", "data", allow_duplicate=True),
                  Input({"type": "dept-submit", "task": ALL}, "n_clicks"),
                  State({"type": "dept-status", "task": ALL}, "value"),
                  State({"type": "dept-note", "task": ALL}, "value"),
                  State({"type": "dept-people", "task": ALL}, "value"),
                  State({"type": "dept-lat", "task": ALL}, "value"),
                  State({"type": "dept-lon", "task": ALL}, "value"),
                  State({"type": "dept-person-name", "task": ALL}, "value"),
                  State({"type": "dept-person-phone", "task": ALL}, "value"), State("ns", "data"), State("lang", "data"),
                  prevent_initial_call=True, allow=DEPT_ROLES, own_department=True,
                  note="update_task takes the session's department: another's task is answered as unknown")
def _submit(clicks, statuses, notes, people, lats, lons, names, phones, ns, lang):
    trig = ctx.triggered_id
    ids = [i["id"]["task"] for i in ctx.inputs_list[0]]
    errs = [no_update] * len(ids)
    field_ids = [o["id"] for o in ctx.outputs_list[2]]
    field_errs = [no_update] * len(field_ids)
    if not isinstance(trig, dict) or trig.get("task") not in ids or not any(as_list(clicks, len(ids))):
        return no_update, errs, field_errs, no_update
    lang = lang_of(lang)
    i = ids.index(trig["task"])
    values = [as_list(v, len(ids))[i] for v in (statuses, notes, people, lats, lons)]
    name, phone = (as_list(v, len(ids))[i] for v in (names, phones))
    msg, problems = submit_status(rds(), namespace(ns), access.user(), str(trig["task"]), *values, lang,
                                  person_name=name, person_phone=phone)
    errs[i] = problems.get("", "")
    for j, fid in enumerate(field_ids):  # this task's fields: its messages, the others' cleared
        if fid["task"] == trig["task"]:
            field_errs[j] = problems.get(fid["field"], "")
    return msg, errs, field_errs, None if not problems else no_update


def submit_status(r, keys, user: dict, task_id: str, status, note, people, lat, lon,
                  lang: str, person_name: Any = None, person_phone: Any = None) -> tuple[Any, dict[str, str]]:
    """The form's logic: (the message at the top, the refusal's messages by field). A message about
    one of TASK_FIELDS goes under that field; any other under the form (key ""). The department is
    the session's (another department's task is answered as an unknown one); the update is stamped
    with `command_time`. Values are whatever the request sent: a wrong type is a message, not a 500.
    A person assisted (name and/or phone: personal data, secret) is added to the task's `people`."""
    try:
        check_submission(r, keys, user["username"], user["department"], "status updates")  # back-pressure: 429
        task = update_task(r, keys, task_id=task_id, department=user["department"], user=user["username"],
                           now=command_time(r, keys),
                           **_status_form(status, note, people, lat, lon, person_name, person_phone))
    except RateLimited as exc:  # back-pressure: say how long to wait, in the page's language
        return no_update, {"": t("dept.rate_limited", lang, s=math.ceil(exc.retry_after))}
    except CommandError as exc:
        problems = _by_field(exc, TASK_FIELDS)
        if lang != "en":  # update_task speaks English: each field's own hint in the page's language
            problems = {f: t(f"dept.err.{f or 'task'}", lang) for f in problems}
        return no_update, problems
    return dbc.Alert(t("dept.saved", lang, task=task.subject, status=t(f"status.{task.status}", lang)), color="success",
                     dismissable=True, id="dept-saved"), {}


def _status_form(status, note, people, lat, lon, person_name=None, person_phone=None) -> dict[str, Any]:
    """The status form's values as update_task takes them; InvalidInput (by field) for a wrong type."""
    errors = {}
    person = _person_typed(person_name, person_phone)
    if text(status, 40) is NOT:
        errors["status"] = "choose a status"
    note = text(note, 2000)
    if note is NOT:
        errors["note"] = "the note must be text (2,000 characters at most)"
    people = number(people)
    if people is NOT or people is not None and not float(people).is_integer():
        errors["people_assisted"] = "people assisted must be a whole number"
    lat, lon = number(lat), number(lon)
    if lat is NOT or lon is NOT:
        errors["position"] = "latitude and longitude must be numbers"
    if errors:
        raise InvalidInput(errors)
    return {"status": status or "", "note": note.strip(), "people_assisted": None if people is None else int(people),
            "lat": lat, "lon": lon, "people": [person] if person else None}


def _person_typed(name: Any, phone: Any) -> dict[str, Any] | None:
    """A name and a phone typed into a form, for the one validator (command/ops/people.py, which says
    what is wrong with a value of any type); None when both are empty."""
    given = ((k, v.strip() if isinstance(v, str) else v) for k, v in (("name", name), ("phone", phone)))
    return {k: v for k, v in given if v is not None and v != ""} or None


def _by_field(exc: CommandError, fields: tuple[str, ...]) -> dict[str, str]:
    """A refusal's messages keyed by the form field they are about; "" for the rest (joined)."""
    per = exc.errors if isinstance(exc, InvalidInput) and exc.errors else {exc.field or "": exc.message}
    out = {k: v for k, v in per.items() if k in fields}
    rest = [v if not k else f"{k}: {v}" for k, v in per.items() if k not in fields]
    if rest:
        out[""] = "; ".join(rest)
    return out


@secured_callback(Output("dept-inc-map", "figure"), Input("dept-title", "children"), State("ns", "data"),
                  allow=DEPT_ROLES)
def _inc_map(_title, ns):
    r, keys = rds(), namespace(ns)
    zs = views.zones(r, keys)
    idx = views.station_index(r, keys)
    lons = [s.lon for s in idx.stations.values()] or [0]
    lats = [s.lat for s in idx.stations.values()] or [0]
    return {"data": [{"type": "scattermap", "lon": [], "lat": [], "mode": "markers"}],
            "layout": {"map": {"style": "white-bg", "center": {"lon": sum(lons) / len(lons), "lat": sum(lats) / len(lats)},
                               "zoom": 9.5, "layers": views.zone_layers(zs, [], {})},
                       "margin": {"l": 0, "r": 0, "t": 0, "b": 0}, "showlegend": False, "clickmode": "event"}}


@secured_callback(Output("dept-inc-lat", "value"), Output("dept-inc-lon", "value"),
                  Input("dept-inc-map", "clickData"), prevent_initial_call=True, allow=DEPT_ROLES)
def _inc_click(click):
    points = click.get("points") if isinstance(click, dict) else None
    p = points[0] if isinstance(points, list) and points and isinstance(points[0], dict) else {}
    lat, lon = number(p.get("lat"), -90, 90), number(p.get("lon"), -180, 180)
    if lat is NOT or lon is NOT or lat is None or lon is None:
        return no_update, no_update  # not a click on the map
    return round(lat, 5), round(lon, 5)


@secured_callback(Output("dept-inc-msg", "children"),
                  *[Output(f"dept-inc-err-{f}", "children") for f in ("category", "severity", "lat", "lon", "description")],
                  Input("dept-inc-submit", "n_clicks"),
                  State("dept-inc-category", "value"), State("dept-inc-severity", "value"),
                  State("dept-inc-lat", "value"), State("dept-inc-lon", "value"),
                  State("dept-inc-description", "value"), State("dept-inc-reporter-name", "value"),
                  State("dept-inc-reporter-phone", "value"), State("ns", "data"), State("lang", "data"),
                  prevent_initial_call=True, allow=DEPT_ROLES, note="the incident is the session's department's")
def _report(n, category, severity, lat, lon, description, reporter_name, reporter_phone, ns, lang):
    if not n:  # a render, not a click
        return (no_update,) * 6
    form = {"category": category, "severity": severity, "lat": lat, "lon": lon, "description": description}
    reporter = _person_typed(reporter_name, reporter_phone)
    if reporter:
        form["reporter"] = reporter
    return report_incident(rds(), namespace(ns), access.user(), form, lang_of(lang))


REPORT_FIELDS = ("category", "severity", "lat", "lon", "description")


def report_incident(r, keys, user: dict, form: dict, lang: str) -> tuple:
    """The report form's logic: (message, an error under each of REPORT_FIELDS; a problem with the
    optional `reporter` is named in the message). The incident goes through
    `command.ops.incidents.submit` like any other, owned by the session's department."""
    if isinstance(form.get("description"), str):
        form = {**form, "description": form["description"].strip()}
    try:
        done = submit(r, keys, form, Actor.of_user(user), FORM)
    except RateLimited as exc:  # back-pressure: say how long to wait, in the page's language
        return (dbc.Alert(t("dept.rate_limited", lang, s=math.ceil(exc.retry_after)), color="warning"),
                *[""] * len(REPORT_FIELDS))
    except CommandError as exc:  # InvalidInput: a message per field; Forbidden and the rest: the message
        e = _by_field(exc, REPORT_FIELDS)
        other = e.pop("", "")
        if lang != "en":  # the intake speaks English: each field's own hint in the page's language
            e = {f: t(f"dept.err.{f}", lang) for f in e}
            other = t("dept.err.other" if isinstance(exc, InvalidInput) else "dept.err.refused", lang) if other else ""
        text = t("dept.fix", lang) + (f" ({other})" if other else "") if isinstance(exc, InvalidInput) else other
        return (dbc.Alert(text, color="warning"), *[e.get(f, "") for f in REPORT_FIELDS])
    inc = done.incident
    return (dbc.Alert(t("dept.reported", lang, id=inc.id, category=t(f"cat.{inc.category}", lang)), color="success",
                      id="dept-inc-ok"), "", "", "", "", "")
