"""`/audit`: the audit trail of the namespace shown, for the `auditor` role only.

At the top, whether the chain verifies (intact / legacy / broken at entry X) against its key and its
anchors; below, a search by user, department, action and time range, the matching entries in a table,
and `/audit/export.csv` with the same filters. Every callback and the route check the role on the
server; an export is itself recorded in the trail. Operators are not given this page: they are the
people the trail mostly records, and it carries the record of who read which secret field.
"""

from __future__ import annotations

import csv
import io
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import dash_bootstrap_components as dbc
import flask
import orjson
from dash import Input, Output, State, dash_table, dcc, html

from command import i18n
from command.clock import namespace_now
from command.config import Settings
from command.i18n import t
from command.keys import Keys
from command.timeutil import now_ms, to_iso
from command.trust import audit
from command.trust.anchor import read_anchors

from . import access
from .access import route_policy, secured_callback
from .common import dept_names, grid_locale, namespace, ns_tz, rds, require_user
from .inputs import NOT, lang_of, text

try:
    import dash_ag_grid as dag
except ImportError:  # not a dependency: the table falls back to DataTable
    dag = None

AUDIT_ROLES = ("auditor",)
MAX_ROWS = 2000  # rows the table shows (newest first); the CSV export has every match
SYSTEM = "system"
KNOWN_ACTIONS = ("dispatch", "task_status", "escalate_unacknowledged", "alert_acknowledge", "alert_escalate",
                 "alert_resolve", "incident_report", "incident_intake", "inject_incident", "inject_resource_status",
                 "drill_start", "drill_pause", "drill_resume", "drill_speed", "drill_stop", audit.READ_ACTION,
                 "audit_export", "audit_key_rotate",
                 # command/trust/events.py (live)
                 "signin", "signin_failed", "signout", "user_added", "user_changed", "user_removed",
                 "sessions_ended", "throttle_unlocked", "token_added", "token_revoked")
COLUMNS = ("at", "recorded", "who", "department", "action", "details", "id", "kid")
TABLE_PROP = "data" if dag is None else "rowData"

i18n.add({
    "audit.title": {"en": "Audit trail", "zh": "审计日志"},
    "audit.intact": {"en": "Intact: {n} entries, sealed with the audit key.", "zh": "完整：共 {n} 条记录，均已用审计密钥签名。"},
    "audit.legacy": {"en": "Intact, with {legacy} of {n} entries from before the key (plain SHA-256 only).",
                     "zh": "完整，但 {n} 条中有 {legacy} 条为启用密钥前的记录（仅 SHA-256）。"},
    "audit.broken": {"en": "BROKEN at entry {at}: {reason}", "zh": "已损坏，位于记录 {at}：{reason}"},
    "audit.empty": {"en": "No entries yet.", "zh": "尚无记录。"},
    "audit.anchored": {"en": "{n} anchors outside Redis agree; the latest from {when}.",
                       "zh": "{n} 个 Redis 外部锚点一致；最新锚点时间 {when}。"},
    "audit.no_anchors": {"en": "No anchors outside Redis yet: removing the newest entries would not be noticed.",
                         "zh": "Redis 外部尚无锚点：删除最新记录将无法被发现。"},
    "audit.verify": {"en": "Verify again", "zh": "重新校验"},
    "audit.user": {"en": "User", "zh": "用户"},
    "audit.department": {"en": "Department", "zh": "部门"},
    "audit.action": {"en": "Action", "zh": "操作"},
    "audit.from": {"en": "From", "zh": "开始时间"},
    "audit.to": {"en": "To", "zh": "结束时间"},
    "audit.time_hint": {"en": "YYYY-MM-DD or YYYY-MM-DD HH:MM ({tz})", "zh": "YYYY-MM-DD 或 YYYY-MM-DD HH:MM（{tz}）"},
    "audit.search": {"en": "Search", "zh": "查询"},
    "audit.export": {"en": "Export CSV", "zh": "导出 CSV"},
    "audit.count": {"en": "{n} matching entries", "zh": "共 {n} 条匹配记录"},
    "audit.count_capped": {"en": "{n} matching entries; the newest {shown} are shown, the CSV has them all.",
                           "zh": "共 {n} 条匹配记录；仅显示最新 {shown} 条，CSV 包含全部。"},
    "audit.bad_time": {"en": "Not a time: {text}", "zh": "无效时间：{text}"},
    "audit.system": {"en": "system", "zh": "系统"},
    "audit.col.at": {"en": "Time", "zh": "时间"},
    "audit.col.recorded": {"en": "Recorded (UTC)", "zh": "写入时间（UTC）"},
    "audit.col.who": {"en": "User", "zh": "用户"},
    "audit.col.department": {"en": "Department", "zh": "部门"},
    "audit.col.action": {"en": "Action", "zh": "操作"},
    "audit.col.details": {"en": "Details", "zh": "详情"},
    "audit.col.id": {"en": "Entry", "zh": "记录编号"},
    "audit.col.kid": {"en": "Key", "zh": "密钥"},
})


# ---- the logic (no Dash): filters, rows, verification ------------------------------------------------------
def parse_when(text: str | None, tz: str | None, *, end: bool = False) -> int | None:
    """'2024-07-01', '2024-07-01 08:30' (in the namespace's zone) or ISO 8601 with an offset -> epoch ms.
    A date alone as the end of a range means the end of that day."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(text) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=ZoneInfo(tz or "UTC"))
    if end and len(text) == 10:  # a date: up to the next midnight
        dt += timedelta(days=1)
    return int(dt.timestamp() * 1000)


def make_filter(user: str | None, department: str | None, action: str | None, since: str | None,
                until: str | None, tz: str | None) -> audit.Filter:
    """The filter the page's fields say; ValueError(field) for a time that cannot be read."""
    try:
        lo = parse_when(since, tz)
    except ValueError:
        raise ValueError("from") from None
    try:
        hi = parse_when(until, tz, end=True)
    except ValueError:
        raise ValueError("to") from None
    return audit.Filter(user=(user or "").strip()[:80], department=department or "", action=action or "",
                        since=lo, until=hi)


def department_lookup(settings_dir: str | None = None) -> Callable[[str], str]:
    """who -> the user's department in the users file now; `system` for the system and the CLI."""
    from pathlib import Path

    from command.trust.auth import load_users

    data_dir = Path(settings_dir or flask.current_app.config["ECD_DATA_DIR"])
    users = load_users(data_dir / "users.yaml")

    def department_of(who: str) -> str:
        u = users.get(who)
        if u is not None:
            return u.department
        return SYSTEM if who == SYSTEM or who.startswith("cli:") else ""

    return department_of


def _fmt(ms: Any, tz: str | None) -> str:
    if not isinstance(ms, int):
        return ""
    return (to_iso(ms, tz) or "")[:19].replace("T", " ")


def row_of(e: dict[str, Any], tz: str | None) -> dict[str, str]:
    return {"at": _fmt(e.get("at"), tz), "recorded": _fmt(e.get("recorded"), None), "who": str(e.get("who", "")),
            "department": e.get("department", ""), "action": str(e.get("action", "")),
            "details": orjson.dumps(e.get("details", {}), option=orjson.OPT_SORT_KEYS).decode(),
            "id": e["id"], "kid": e.get("kid", "")}


def find(r, keys: Keys, flt: audit.Filter, department_of: Callable[[str], str],
         limit: int = MAX_ROWS) -> tuple[list[dict[str, str]], int]:
    """The newest `limit` matching rows (newest first) and how many match in all."""
    tz = ns_tz(r, keys)
    newest: deque[dict[str, Any]] = deque(maxlen=limit)
    total = 0
    for e in audit.search(r, keys, flt, department_of):
        total += 1
        newest.append(e)
    return [row_of(e, tz) for e in reversed(newest)], total


def anchors_file():
    from pathlib import Path

    return Path(flask.current_app.config["ECD_AUDIT_ANCHORS"])


def verification(r, keys: Keys) -> tuple[audit.Verification, list]:
    anchors = read_anchors(anchors_file(), keys.ns)  # before the walk
    return audit.verify(r, keys, anchors=anchors), anchors


def state_view(v: audit.Verification, anchors: list, lang: str) -> html.Div:
    if not v.ok:
        head = dbc.Alert(t("audit.broken", lang, at=v.broken_at or "head", reason=v.reason), color="danger",
                         id="audit-state-broken", className="mb-1")
    elif v.state == "empty":
        head = dbc.Alert(t("audit.empty", lang), color="secondary", id="audit-state-empty", className="mb-1")
    elif v.state == "legacy":
        head = dbc.Alert(t("audit.legacy", lang, legacy=v.legacy, n=v.entries), color="warning",
                         id="audit-state-legacy", className="mb-1")
    else:
        head = dbc.Alert(t("audit.intact", lang, n=v.entries), color="success", id="audit-state-intact",
                         className="mb-1")
    if anchors:
        latest = max(anchors, key=lambda a: a.at)
        note = html.Div(t("audit.anchored", lang, n=len(anchors), when=latest.when()), className="small muted")
    else:
        note = html.Div(t("audit.no_anchors", lang), className="small text-warning")
    return html.Div([head, note], className=f"audit-state-{v.state}")


def action_options(r, keys: Keys) -> list[str]:
    seen = {e.get("action") for e in audit.entries(r, keys, count=MAX_ROWS)}
    return sorted({a for a in seen if isinstance(a, str)} | set(KNOWN_ACTIONS))


def export_query(ns: str, user: str | None, department: str | None, action: str | None, since: str | None,
                 until: str | None) -> str:
    q = {"ns": ns, "user": user or "", "department": department or "", "action": action or "",
         "from": since or "", "to": until or ""}
    return "/audit/export.csv?" + urlencode({k: v for k, v in q.items() if v})


def _cell(v: str) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (a user can put '=...' in a description)."""
    return "'" + v if v[:1] in ("=", "+", "-", "@", "\t", "\r") else v


def csv_lines(rows: Iterator[dict[str, str]]) -> Iterator[str]:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(COLUMNS)
    for row in rows:
        w.writerow([_cell(row[c]) for c in COLUMNS])
        if buf.tell() > 64_000:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


# ---- the page ----------------------------------------------------------------------------------------------
def layout(lang: str, ns: str) -> html.Div:
    require_user(*AUDIT_ROLES)
    r = rds()
    keys = namespace(ns)
    tz = ns_tz(r, keys) or "UTC"
    departments = [{"label": name, "value": d} for d, name in sorted(dept_names(lang).items(), key=lambda x: x[1])]
    departments.append({"label": t("audit.system", lang), "value": SYSTEM})
    hint = t("audit.time_hint", lang, tz=tz)
    return html.Div([
        html.H4(t("audit.title", lang)),
        html.Div([html.Div(id="audit-state", role="status"),
                  dbc.Button(t("audit.verify", lang), id="audit-verify", size="sm", color="secondary", n_clicks=0)],
                 className="panel"),
        html.Div([
            html.Div([
                html.Div([html.Label(t("audit.user", lang)), dcc.Input(id="audit-user", type="text", className="w-100",
                                                                       debounce=True)]),
                html.Div([html.Label(t("audit.department", lang)),
                          dcc.Dropdown(id="audit-department", options=departments)]),
                html.Div([html.Label(t("audit.action", lang)),
                          dcc.Dropdown(id="audit-action", options=action_options(r, keys))]),
                html.Div([html.Label(t("audit.from", lang)),
                          dcc.Input(id="audit-from", type="text", placeholder=hint, className="w-100", debounce=True)]),
                html.Div([html.Label(t("audit.to", lang)),
                          dcc.Input(id="audit-to", type="text", placeholder=hint, className="w-100", debounce=True)]),
            ], className="form-row2"),
            html.Div([dbc.Button(t("audit.search", lang), id="audit-search", color="primary", n_clicks=0,
                                 className="me-2"),
                      html.A(t("audit.export", lang), id="audit-csv", href=export_query(keys.ns, *[None] * 5),
                             className="btn btn-outline-secondary")], className="mt-2"),
            html.Div(id="audit-msg", role="status", className="mt-2"),
        ], className="panel"),
        table(lang, tz),
    ], className="audit-page")


def table(lang: str, tz: str) -> Any:
    """dash-ag-grid when it is installed, else Dash's DataTable: sortable, paged, read-only."""
    names = {c: t(f"audit.col.{c}", lang) for c in COLUMNS}
    names["at"] += f" ({tz})"  # the namespace's time: scenario time in a drill
    if dag is not None:
        return dag.AgGrid(id="audit-table", rowData=[], className="ag-theme-alpine",
                          columnDefs=[{"field": c, "headerName": names[c], "sortable": True, "resizable": True,
                                       "tooltipField": c} for c in COLUMNS],
                          dashGridOptions={"pagination": True, "paginationPageSize": 50,
                                           "localeText": grid_locale(lang)}, style={"height": "60vh"})
    return dash_table.DataTable(  # type: ignore[attr-defined]
        id="audit-table", data=[], page_size=50, sort_action="native",
        columns=[{"name": names[c], "id": c} for c in COLUMNS], style_table={"overflowX": "auto"},
        style_cell={"textAlign": "left", "fontSize": "0.85rem", "maxWidth": "420px", "overflow": "hidden",
                    "textOverflow": "ellipsis", "whiteSpace": "nowrap"})


@secured_callback(Output("audit-state", "children"), Input("audit-verify", "n_clicks"), State("ns", "data"),
                  State("lang", "data"), allow=AUDIT_ROLES)
def _verify(_n, ns, lang):
    r, keys = rds(), namespace(ns)
    v, anchors = verification(r, keys)
    return state_view(v, anchors, lang_of(lang))


@secured_callback(Output("audit-table", TABLE_PROP), Output("audit-msg", "children"), Output("audit-csv", "href"),
                  Input("audit-search", "n_clicks"), Input("audit-user", "value"), Input("audit-department", "value"),
                  Input("audit-action", "value"), Input("audit-from", "value"), Input("audit-to", "value"),
                  State("ns", "data"), State("lang", "data"), allow=AUDIT_ROLES)
def _search(_n, user, department, action, since, until, ns, lang):
    lang = lang_of(lang)
    r, keys = rds(), namespace(ns)
    user, department, action, since, until = (None if text(v, 200) is NOT else v
                                              for v in (user, department, action, since, until))
    try:
        flt = make_filter(user, department, action, since, until, ns_tz(r, keys))
    except ValueError as exc:
        bad = since if str(exc) == "from" else until
        return [], dbc.Alert(t("audit.bad_time", lang, text=bad), color="warning"), export_query(keys.ns, *[None] * 5)
    rows, total = find(r, keys, flt, department_lookup())
    msg = (t("audit.count", lang, n=total) if total <= len(rows)
           else t("audit.count_capped", lang, n=total, shown=len(rows)))
    return rows, html.Span(msg, id="audit-count"), export_query(keys.ns, user, department, action, since, until)


def register_routes(server: flask.Flask, settings: Settings) -> None:
    """`/audit/export.csv`; and this process seals its audit entries with the data folder's key."""
    server.config.setdefault("ECD_DATA_DIR", str(settings.data_dir))
    server.config["ECD_AUDIT_ANCHORS"] = str(settings.audit_anchors_file)
    audit.configure(settings.data_dir)

    @server.route("/audit/export.csv")
    @route_policy(allow=AUDIT_ROLES, note="the export is itself on the trail")
    def _audit_export():
        user = access.user()
        args = flask.request.args
        try:
            keys = Keys(args.get("ns") or "live")
        except ValueError:
            return "no such namespace", 404
        r = rds()
        try:
            flt = make_filter(args.get("user"), args.get("department"), args.get("action"), args.get("from"),
                              args.get("to"), ns_tz(r, keys))
        except ValueError as exc:
            return f"bad time in {exc}", 400
        # the export goes on the record before any row leaves
        audit.record(r, keys, who=user["username"], action="audit_export", at=namespace_now(r, keys, now_ms()),
                     details={k: v for k, v in args.items() if k != "ns" and v})
        department_of = department_lookup()
        tz = ns_tz(r, keys)
        rows = (row_of(e, tz) for e in audit.search(r, keys, flt, department_of))
        name = f"audit-{keys.ns}-{(to_iso(now_ms()) or '')[:10]}.csv"
        return flask.Response(flask.stream_with_context(csv_lines(rows)), mimetype="text/csv",
                              headers={"Content-Disposition": f'attachment; filename="{name}"',
                                       "Cache-Control": "no-store"})
