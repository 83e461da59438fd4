"""`/exercise`, for planners: compare rule sets on a scenario (`python -m command backtest` on the page).

The planner picks a scenario (a sample, or one uploaded or saved on this page) and up to three rule
sets: the project's rules files, or YAML files uploaded here (parsed with the command line's parser
on upload, and everything checked again with `backtest.prepare` before anything is kept). The
backtest runs on the RQ worker (command/ops/jobs.py `run_backtest_job`), its progress in the job's
meta; its result is kept on disk (settings `backtests_dir`/<id>: the rules, backtest.json,
backtest.html, charts.json) for `backtest_keep_hours`, listed on the page for every planner. The
tables and charts are backtest_html's own (`level_tables`, `station_charts`)."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import dash_bootstrap_components as dbc
import flask
from dash import ALL, Input, Output, State, ctx, dcc, html, no_update
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job

from command import i18n
from command.config import SAMPLE_DATA
from command.errors import CommandError, InvalidInput, NotFound
from command.i18n import t
from command.keys import RQ_BACKTEST_QUEUE
from command.ops.jobs import BACKTEST_TIMEOUT_S, run_backtest_job
from command.publish.backtest_html import level_tables
from command.publish.report import inline_script_hashes
from command.runtime.redis_client import rq_connection
from command.scenarios.reference import load_rules
from command.scenarios.upload import check_no_aliases
from command.timeutil import now_ms, to_iso

from . import access
from .access import browser_callback, route_policy, secured_callback
from .common import rds, refusal_with
from .exercise_files import PLANNER, all_options, decode_upload, settings
from .inputs import NOT, clicked, lang_of, str_list, text
from .web_headers import content_security_policy

i18n.add({
    "exb.title": {"en": "Compare rule sets (backtest)", "zh": "规则集对比（回测）"},
    "exb.help": {"en": "The scenario's own rules are always scored; add up to three rule sets to compare with them.",
                 "zh": "始终评估场景自带的规则；可再选最多三个规则集进行对比。"},
    "exb.scenario": {"en": "Scenario", "zh": "场景"},
    "exb.project_rules": {"en": "The project's rule sets", "zh": "项目中的规则集"},
    "exb.upload": {"en": "Add a rules file (YAML)", "zh": "添加规则文件（YAML）"},
    "exb.uploaded": {"en": "Uploaded rule sets", "zh": "已上传的规则集"},
    "exb.remove": {"en": "Remove", "zh": "移除"},
    "exb.run": {"en": "Run backtest", "zh": "运行回测"},
    "exb.too_many": {"en": "Choose at most three rule sets.", "zh": "最多选择三个规则集。"},
    "exb.bad_rules": {"en": "Rules file refused: {why}", "zh": "规则文件被拒绝：{why}"},
    "exb.bad_input": {"en": "Cannot backtest: {why}", "zh": "无法回测：{why}"},
    "exb.queued": {"en": "Backtest {id} queued.", "zh": "回测 {id} 已排队。"},
    "exb.running": {"en": "Backtest {id}: {pct}% ({step})", "zh": "回测 {id}：{pct}%（{step}）"},
    "exb.failed": {"en": "Backtest {id} failed: {why}", "zh": "回测 {id} 失败：{why}"},
    "exb.done": {"en": "Backtest {id} of {scenario}: {n} rule set(s), truth from {truth}, lead window {lead} min.",
                 "zh": "回测 {id}（{scenario}）：{n} 个规则集，实况来自 {truth}，提前窗口 {lead} 分钟。"},
    "exb.full": {"en": "Full report (every station)", "zh": "完整报告（全部站点）"},
    "exb.recent": {"en": "Recent backtests", "zh": "最近的回测"},
    "exb.show": {"en": "Show", "zh": "查看"},
    "exb.level": {"en": "Level {level}: {events} event(s)", "zh": "{level}级：{events} 次实况"},
    "exb.figure": {"en": "Figure", "zh": "指标"},
    "exb.stations": {"en": "Stations", "zh": "站点"},
    "exb.more": {"en": "{n} more station(s) in the full report.", "zh": "另有 {n} 个站点见完整报告。"},
})

MAX_RULE_SETS = 3
MAX_RULES_BYTES = 200_000
MAX_CHARTS = 12  # on the page; the full report has every station
# backtests share the RQ queue with live tasks' acknowledgement checks (command/ops/jobs.py): a few at
# once, so a burst of them cannot hold those checks up for hours
MAX_PENDING = 2

i18n.add({
    "exb.busy": {"en": "{n} backtests are queued or running: wait for one to finish.",
                 "zh": "已有 {n} 个回测在排队或运行：请等待其中一个完成。"},
})
_ID_RE = re.compile(r"bt-[0-9a-f]{12}")
_NAME_RE = re.compile(r"[^A-Za-z0-9_-]+")


def project_rules() -> list[dict[str, str]]:
    return [{"label": p.name, "value": str(p)} for p in sorted(SAMPLE_DATA.glob("rules*.yaml"))]


def rules_name(filename: Any) -> str:
    """A rule set's name from its file name: letters, digits, - and _ (the backtest names it by stem)."""
    stem = Path(filename).stem if isinstance(filename, str) else ""
    return _NAME_RE.sub("-", stem).strip("-_")[:40] or "uploaded"


def check_rules_text(name: str, body: str) -> None:
    """The command line's parser on an uploaded rules file; CommandError with its message (no server path)."""
    check_no_aliases(body, f"{name}.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.yaml"
        path.write_text(body, encoding="utf-8")
        try:
            load_rules(path)
        except CommandError as exc:
            raise type(exc)(exc.message.replace(f"{tmp}/", "")) from None
        except RecursionError:  # a few kB of brackets nest past the YAML parser's recursion
            raise InvalidInput(f"{name}.yaml: nested too deeply") from None


def _uploaded_rules(v: Any) -> list[dict[str, str]] | None:
    """The page's store of uploaded rules [{name, text}], or None when it is not one (a crafted request)."""
    if v is None:
        return []
    if not isinstance(v, list) or len(v) > MAX_RULE_SETS:
        return None
    out = []
    for item in v:
        if not isinstance(item, dict):
            return None
        name, body = text(item.get("name"), 40), text(item.get("text"), MAX_RULES_BYTES)
        if not isinstance(name, str) or not isinstance(body, str) or not name or rules_name(name + ".yaml") != name:
            return None
        out.append({"name": str(name), "text": str(body)})
    return out


# ---- the page ------------------------------------------------------------------------------------------
def panel(lang: str) -> html.Div:
    return html.Div([
        html.H5(t("exb.title", lang)),
        html.Div(t("exb.help", lang), className="small muted"),
        dcc.Store(id="exb-rules-store", data=[]),
        dcc.Store(id="exb-current", storage_type="session"),
        dcc.Interval(id="exb-tick", interval=1000),
        dcc.Store(id="exb-recent-drawn"),  # the list of recent backtests as drawn (`recent_signature`)
        dcc.Store(id="exb-click"),  # the last Show clicked in that list (`relayClick`, assets/clicks.js)
        html.Div([
            html.Div([html.Label(t("exb.scenario", lang)),
                      dcc.Dropdown(id="exb-scenario", options=all_options(lang),
                                   value=str(SAMPLE_DATA / "scenarios" / "jiangcheng_flood"), clearable=False)]),
            html.Div([html.Label(t("exb.project_rules", lang)),
                      dcc.Checklist(id="exb-project-rules", options=project_rules(), value=[],
                                    inputStyle={"marginRight": "4px"}, labelStyle={"marginRight": "12px"})]),
        ], className="form-row2"),
        html.Div([
            dcc.Upload(id="exb-upload", children=html.Div(t("exb.upload", lang)), accept=".yaml,.yml",
                       max_size=MAX_RULES_BYTES, multiple=False,
                       style={"border": "1px dashed #999", "borderRadius": "6px", "padding": "8px",
                              "textAlign": "center", "cursor": "pointer", "margin": "6px 0"}),
            html.Div(id="exb-rules-msg", role="status"),
            html.Div(id="exb-rules-list"),
        ]),
        dbc.Button(t("exb.run", lang), id="exb-run", color="primary", className="mt-2", n_clicks=0),
        html.Div(id="exb-msg", role="status"),
        html.H6(t("exb.recent", lang), className="mt-3"),
        html.Div(id="exb-recent"),
        html.Div(id="exb-progress"),
        html.Div(id="exb-result"),
    ], className="panel", id="exb-panel")


@secured_callback(Output("exb-rules-store", "data"), Output("exb-rules-msg", "children"),
                  Input("exb-upload", "contents"), State("exb-upload", "filename"), State("exb-rules-store", "data"),
                  State("lang", "data"), prevent_initial_call=True, allow=PLANNER)
def _add_rules(contents, filename, current, lang):
    lang = lang_of(lang)
    current = _uploaded_rules(current)
    if contents is None or current is None:
        return no_update, no_update
    try:
        body = decode_upload(contents, MAX_RULES_BYTES).decode("utf-8-sig")
    except (CommandError, UnicodeDecodeError) as exc:
        why = exc if isinstance(exc, CommandError) else "not UTF-8 text"
        return no_update, dbc.Alert(refusal_with("exb.bad_rules", why, lang), color="danger", id="exb-rules-error")
    name = rules_name(filename)
    try:
        check_rules_text(name, body)
    except CommandError as exc:
        return no_update, dbc.Alert(refusal_with("exb.bad_rules", exc, lang), color="danger", id="exb-rules-error")
    kept = [r for r in current if r["name"] != name] + [{"name": name, "text": body}]
    if len(kept) > MAX_RULE_SETS:
        return no_update, dbc.Alert(t("exb.too_many", lang), color="warning")
    return kept, None


@secured_callback(Output("exb-rules-list", "children"), Input("exb-rules-store", "data"), State("lang", "data"),
                  allow=PLANNER)
def _list_rules(current, lang):
    lang = lang_of(lang)
    current = _uploaded_rules(current) or []
    if not current:
        return None
    return html.Div([html.Span(t("exb.uploaded", lang) + ": ", className="small")] + [
        html.Span([html.Code(r["name"]), dbc.Button("×", id={"type": "exb-drop", "name": r["name"]}, size="sm",
                                                   color="link", n_clicks=0, title=t("exb.remove", lang))],
                  className="me-2") for r in current])


@secured_callback(Output("exb-rules-store", "data", allow_duplicate=True),
                  Input({"type": "exb-drop", "name": ALL}, "n_clicks"), State("exb-rules-store", "data"),
                  prevent_initial_call=True, allow=PLANNER)
def _drop_rules(clicks, current):
    trig = ctx.triggered_id
    current = _uploaded_rules(current)
    if not isinstance(trig, dict) or current is None or not ctx.triggered or not ctx.triggered[0]["value"]:
        return no_update
    return [r for r in current if r["name"] != trig.get("name")]


def _cleanup(root: Path, keep_s: float) -> None:
    """Backtests older than the settings keep are deleted (their folder; RQ expires the job itself)."""
    if not root.is_dir():
        return
    cutoff = time.time() - keep_s
    for p in root.iterdir():
        if _ID_RE.fullmatch(p.name) and p.stat().st_mtime < cutoff:
            shutil.rmtree(p, ignore_errors=True)


def submit(r, scenario: str, project: list[str], uploaded: list[dict[str, str]], by: str) -> str:
    """Check a backtest's input as the command line does, keep its rules in a folder of its own and
    queue it; its id. CommandError (nothing kept) when the input is wrong."""
    from command.scenarios.backtest import prepare

    s = settings()
    root = s.backtests_dir
    bid = f"bt-{secrets.token_hex(6)}"
    staging = Path(tempfile.mkdtemp(prefix=".bt-", dir=_mkdir(root)))
    try:
        rules_dir = staging / "rules"
        rules_dir.mkdir()
        files = [Path(p) for p in project]
        for item in uploaded:
            check_no_aliases(item["text"], f"{item['name']}.yaml")
            path = rules_dir / f"{item['name']}.yaml"
            path.write_text(item["text"], encoding="utf-8")
            files.append(path)
        try:
            inp = prepare(scenario, files)
        except CommandError as exc:
            raise type(exc)(exc.message.replace(f"{rules_dir}/", "")) from None
        except RecursionError:  # the page's store is the browser's: a crafted one may nest past the parser
            raise InvalidInput("a rules file is nested too deeply") from None
        except OSError as exc:  # e.g. a folder where a file is read (a scenario kept before uploads refused it)
            raise InvalidInput(f"the scenario cannot be read: {exc.strerror or exc.__class__.__name__}") from None
        final = root / bid
        meta = {"id": bid, "by": by, "at": to_iso(now_ms(), None), "scenario": inp.scenario.name, "folder": scenario,
                "rule_sets": [sp.name for sp in inp.specs]}
        (staging / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        staging.rename(final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    keep = int(s.backtest_keep_hours * 3600)
    rules = [str(p) if p.parent != rules_dir else str(final / "rules" / p.name) for p in files]
    Queue(RQ_BACKTEST_QUEUE, connection=rq_connection(r)).enqueue(run_backtest_job, scenario, rules, str(final), job_id=bid,
                                          job_timeout=BACKTEST_TIMEOUT_S, result_ttl=keep, failure_ttl=keep,
                                          description=f"backtest {meta['scenario']}")
    _cleanup(root, keep)
    return bid


def pending(r) -> int:
    """Backtests waiting in the job queue or running."""
    q = Queue(RQ_BACKTEST_QUEUE, connection=rq_connection(r))
    return sum(1 for jid in q.get_job_ids() + q.started_job_registry.get_job_ids() if _ID_RE.fullmatch(jid))


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


@secured_callback(Output("exb-msg", "children"), Output("exb-current", "data"), Input("exb-run", "n_clicks"),
                  State("exb-scenario", "value"), State("exb-project-rules", "value"), State("exb-rules-store", "data"),
                  State("lang", "data"), prevent_initial_call=True, allow=PLANNER)
def _run(n, scenario, project, uploaded, lang):
    lang = lang_of(lang)
    if not n:
        return no_update, no_update
    valid = {o["value"] for o in all_options()}
    allowed_rules = {o["value"] for o in project_rules()}
    project = str_list(project, MAX_RULE_SETS + 1, 1000)
    uploaded = _uploaded_rules(uploaded)
    if (not isinstance(scenario, str) or scenario not in valid or project is NOT or uploaded is None
            or not set(project) <= allowed_rules):
        return dbc.Alert("?", color="danger"), no_update
    assert isinstance(project, list)
    if len(project) + len(uploaded) > MAX_RULE_SETS:
        return dbc.Alert(t("exb.too_many", lang), color="warning", id="exb-error"), no_update
    busy = pending(rds())
    if busy >= MAX_PENDING:
        return dbc.Alert(t("exb.busy", lang, n=busy), color="warning", id="exb-error"), no_update
    try:
        bid = submit(rds(), scenario, project, uploaded, access.user()["username"])
    except CommandError as exc:
        return dbc.Alert(refusal_with("exb.bad_input", exc, lang), color="danger", id="exb-error"), no_update
    return dbc.Alert(t("exb.queued", lang, id=bid), color="info", dismissable=True), bid


# ---- a backtest's state and result -----------------------------------------------------------------------
def state_of(r, bid: str) -> dict[str, Any]:
    """{status: queued|running|finished|failed|gone, progress, step, error} of a backtest."""
    folder = settings().backtests_dir / bid
    if (folder / "backtest.json").exists():
        return {"status": "finished", "progress": 100.0}
    try:
        job = Job.fetch(bid, connection=r)
    except NoSuchJobError:
        return {"status": "gone" if not folder.exists() else "failed", "error": "the job was lost"}
    status = job.get_status(refresh=False)
    meta = job.get_meta(refresh=False)
    if status == "finished":
        res = job.return_value() or {}
        if isinstance(res, dict) and res.get("error"):
            return {"status": "failed", "error": res["error"]}
        return {"status": "finished", "progress": 100.0}
    if status in ("failed", "stopped", "canceled"):
        exc = (job.exc_info or "").strip().splitlines()
        return {"status": "failed", "error": exc[-1] if exc else status}
    return {"status": "running" if status == "started" else "queued", "progress": float(meta.get("progress", 0.0)),
            "step": str(meta.get("step", ""))}


def _table(tbl: dict[str, Any], names: list[str], lang: str) -> html.Div:
    head = html.Tr([html.Th(t("exb.figure", lang))] + [html.Th(n) for n in names])
    rows = [html.Tr([html.Td(row["en"] if lang == "en" else row["zh"])] + [
        html.Td([c["value"], " ★" if c["best"] else ""], className="best" if c["best"] else "",
                style={"color": "#1a7f37", "fontWeight": 600} if c["best"] else None)
        for c in row["cells"]], **{"data-key": row["key"]}) for row in tbl["rows"]]
    level = t(f"level.{tbl['level']}", lang)
    return html.Div([html.H6(t("exb.level", lang, level=level, events=tbl["events"])),
                     html.Table([html.Thead(head), html.Tbody(rows)], className="table table-sm exb-table",
                                id=f"exb-table-{tbl['level']}")])


def result_view(bid: str, lang: str) -> list:
    folder = settings().backtests_dir / bid
    report = json.loads((folder / "backtest.json").read_text(encoding="utf-8"))
    charts = json.loads((folder / "charts.json").read_text(encoding="utf-8")) if (folder / "charts.json").exists() else []
    names = [rs["name"] for rs in report["rule_sets"]]
    out: list = [html.Div([t("exb.done", lang, id=bid, scenario=report["scenario"], n=len(names), truth=report["truth"],
                             lead=f"{report['lead_window_min']:g}"), " ",
                           html.A(t("exb.full", lang), href=f"/exercise/backtest/{bid}.html", target="_blank")],
                          className="small")]
    out += [_table(tbl, names, lang) for tbl in level_tables(report)]
    shown = [c for c in charts if c.get("chart")][:MAX_CHARTS]
    if shown:
        out.append(html.H6(t("exb.stations", lang)))
    for c in shown:
        name = c.get("name_zh") if lang == "zh" and c.get("name_zh") else c.get("name")
        out.append(html.Div([html.B(f"{c['id']} {name or ''}"),
                             dcc.Graph(figure=c["chart"], config={"displaylogo": False}, id={"type": "exb-chart",
                                                                                                 "station": c["id"]})]))
    rest = sum(1 for c in charts if c.get("chart")) - len(shown)
    if rest > 0:
        out.append(html.Div(t("exb.more", lang, n=rest), className="small muted"))
    return out


@secured_callback(Output("exb-progress", "children"), Output("exb-result", "children"), Output("exb-recent", "children"),
                  Output("exb-recent-drawn", "data"),
                  Input("exb-tick", "n_intervals"), Input("exb-current", "data"), State("exb-result", "children"),
                  State("lang", "data"), State("exb-recent-drawn", "data"), allow=PLANNER)
def _poll(_n, bid, shown, lang, drawn):
    lang = lang_of(lang)
    metas = _recent_metas()
    signature = recent_signature(metas, lang)
    # the list is drawn again only when it changed: a redraw every second would replace its Show
    # buttons under the planner's pointer
    recent = (no_update, no_update) if signature == drawn else (recent_view(metas, lang), signature)
    if not isinstance(bid, str) or not _ID_RE.fullmatch(bid):
        return None, None, *recent
    st = state_of(rds(), bid)
    if st["status"] == "finished":
        # drawn once: the charts are not sent again every second
        if ctx.triggered_id == "exb-tick" and shown:
            return None, no_update, *recent
        return None, result_view(bid, lang), *recent
    if st["status"] in ("failed", "gone"):
        return dbc.Alert(t("exb.failed", lang, id=bid, why=st.get("error", "")), color="danger", id="exb-failed"), \
            None, *recent
    pct = st.get("progress", 0.0)
    bar = html.Div([html.Div(t("exb.running", lang, id=bid, pct=f"{pct:.0f}", step=st.get("step") or "…"),
                             className="small"),
                    dbc.Progress(value=pct, striped=True, animated=True, id="exb-bar")])
    return bar, None, *recent


def recent_signature(metas: list[dict], lang: str) -> list:
    """Everything the list of recent backtests shows."""
    return [lang, *[[str(m.get(k, "")) for k in ("id", "at", "scenario", "rule_sets", "by")] for m in metas]]


def _recent_metas() -> list[dict]:
    """The newest 10 backtests' records (meta.json), newest first."""
    root = settings().backtests_dir
    if not root.is_dir():
        return []
    metas = []
    for p in root.iterdir():
        if _ID_RE.fullmatch(p.name) and (p / "meta.json").exists():
            try:
                metas.append(json.loads((p / "meta.json").read_text(encoding="utf-8")))
            except ValueError:
                continue
    metas.sort(key=lambda m: str(m.get("at", "")), reverse=True)
    return metas[:10]


def recent_view(metas: list[dict], lang: str) -> list:
    return [html.Div([html.Span(f"{m.get('at', '')[:16]} · {m.get('scenario', '')} · {', '.join(m.get('rule_sets', []))} · "
                                f"{m.get('by', '')} "),
                      dbc.Button(t("exb.show", lang), id={"type": "exb-show", "id": m["id"]}, size="sm", color="link",
                                 n_clicks=0)], className="small") for m in metas]


# the Show buttons are in a list `_poll` draws again: their clicks go through a store outside it
# (assets/clicks.js says why)
browser_callback("relayClick", Output("exb-click", "data"), Input({"type": "exb-show", "id": ALL}, "n_clicks"),
                 prevent_initial_call=True, allow=PLANNER)


@secured_callback(Output("exb-current", "data", allow_duplicate=True), Input("exb-click", "data"),
                  prevent_initial_call=True, allow=PLANNER)
def _show(click):
    button = clicked(click, "exb-show")
    bid = button.get("id") if button is not None else None
    return bid if isinstance(bid, str) and _ID_RE.fullmatch(bid) else no_update


def register_routes(server: flask.Flask) -> None:
    @server.route("/exercise/backtest/<filename>")
    @route_policy(allow=PLANNER)
    def _backtest_html(filename):
        bid = filename[:-5] if filename.endswith(".html") else ""
        path = settings().backtests_dir / bid / "backtest.html"
        if not _ID_RE.fullmatch(bid) or not path.is_file():
            raise NotFound(f"no such backtest {filename!r}")
        page = path.read_text(encoding="utf-8")
        resp = flask.make_response(page)
        resp.mimetype = "text/html"
        # its charts are inline scripts: allowed by hash, as the after-action report's (layouts/exercise.py)
        resp.headers["Content-Security-Policy"] = content_security_policy(
            inline_script_hashes(page), server.config.get("ECD_MAP_TILES"))
        return resp
