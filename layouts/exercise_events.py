"""`/exercise`, for planners: a scenario's master events list (its injects, scripted actions and
objectives) in an editable table, saved back as a scenario folder of its own (command/scenarios/upload.py
`save_events`: every file the scenario reads copied in, validated by the command line's loader), which
the page lists for drills and backtests and offers as a zip that `python -m command replay` replays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dash_ag_grid as dag
import dash_bootstrap_components as dbc
import yaml
from dash import Input, Output, State, ctx, dcc, html, no_update

from command import i18n
from command.config import SAMPLE_DATA
from command.i18n import t
from command.scenarios.reference import ScenarioError
from command.scenarios.upload import EVENT_SECTIONS, UploadError, UploadLimits, events_of, save_events
from command.timeutil import now_ms, to_iso
from command.trust.classification import Redactor, Viewer

from . import access
from .access import secured_callback
from .common import current_viewer, grid_locale, refusal_text, refusal_with
from .exercise_files import PLANNER, all_options, cleared_for_reporters, inject_fields, settings
from .inputs import lang_of

i18n.add({
    "exe.title": {"en": "Events list (injects, scripted actions, objectives)", "zh": "事件清单（注入、脚本动作、目标）"},
    "exe.help": {"en": "Edit the cells, then save: the scenario is saved as a new folder (the original is not changed), "
                       "checked as the command line checks it. `at` is the time from the start (2h30m); `fields` "
                       "the rest of the item, e.g. `{resource_id: FR-BOAT-02, status: available}`.",
                 "zh": "编辑单元格后保存：场景另存为新文件夹（原场景不变），并按命令行规则校验。`at` 为距开始的时间（如 2h30m）；"
                       "`fields` 为其余字段，例如 `{resource_id: FR-BOAT-02, status: available}`。"},
    "exe.scenario": {"en": "Scenario", "zh": "场景"},
    "exe.load": {"en": "Load events", "zh": "载入事件"},
    "exe.add": {"en": "Add a row", "zh": "添加一行"},
    "exe.delete": {"en": "Delete selected rows", "zh": "删除所选行"},
    "exe.save": {"en": "Save as a new scenario", "zh": "另存为新场景"},
    "exe.loaded": {"en": "{n} event(s) of {name}.", "zh": "{name} 的 {n} 个事件。"},
    "exe.refused": {"en": "Not saved: {why}", "zh": "未保存：{why}"},
    "exe.saved": {"en": "Saved as {id} ({injects} inject(s), {actions} action(s), {objectives} objective(s)).",
                  "zh": "已保存为 {id}（{injects} 个注入，{actions} 个动作，{objectives} 个目标）。"},
    "exe.download": {"en": "Download as zip", "zh": "下载 zip"},
    "exe.col_section": {"en": "section", "zh": "类别"},
    "exe.col_at": {"en": "at", "zh": "时间"},
    "exe.col_type": {"en": "type", "zh": "类型"},
    "exe.col_fields": {"en": "fields", "zh": "字段"},
})

MAX_ROWS = 500

# the message when the list holds personal data the planner is not cleared for (kept apart: a block of its own)
i18n.add({
    "exe.personal": {"en": "The injects name reporters (personal data) your clearance does not show: they are "
                           "masked here, and this list cannot be saved from this page.",
                     "zh": "注入中含有报告人信息（个人数据），您的密级无法查看：此处已打码，且不能在本页保存此清单。"},
})


def redacted(rows: list[dict[str, Any]], viewer: Viewer) -> tuple[list[dict[str, Any]], bool]:
    """The rows as `viewer` may see them (an inject's reporter masked as the drill's injects are, the
    `events` dataset of classification.yaml), and whether anything was masked."""
    if cleared_for_reporters(viewer):
        return rows, False
    red, out, masked = Redactor(viewer), [], False
    for row in rows:
        rest = inject_fields(row)
        if rest is not None:
            data = (red.record("events", {"type": row.get("type"), "data": rest}) or {}).get("data") or {}
            row = {**row, "fields": yaml.safe_dump(data, default_flow_style=True, allow_unicode=True, width=10_000,
                                                   sort_keys=False).strip()}
            masked = True
        out.append(row)
    return out, masked


def columns(lang: str) -> list[dict[str, Any]]:
    return [
        {"field": "section", "headerName": t("exe.col_section", lang), "editable": True, "width": 130,
         "cellEditor": "agSelectCellEditor", "cellEditorParams": {"values": list(EVENT_SECTIONS)},
         "checkboxSelection": True},
        {"field": "at", "headerName": t("exe.col_at", lang), "editable": True, "width": 100},
        {"field": "type", "headerName": t("exe.col_type", lang), "editable": True, "width": 170},
        {"field": "fields", "headerName": t("exe.col_fields", lang), "editable": True, "flex": 1, "wrapText": True,
         "autoHeight": True, "cellStyle": {"lineHeight": "1.4", "paddingTop": "4px", "paddingBottom": "4px"},
         "cellEditor": "agLargeTextCellEditor", "cellEditorPopup": True,
         "cellEditorParams": {"maxLength": 4000, "rows": 6, "cols": 80}},
    ]


def panel(lang: str) -> html.Div:
    return html.Div([
        html.H5(t("exe.title", lang)),
        html.Div(t("exe.help", lang), className="small muted"),
        html.Div([
            html.Div([html.Label(t("exe.scenario", lang)),
                      dcc.Dropdown(id="exe-scenario", options=all_options(lang),
                                   value=str(SAMPLE_DATA / "scenarios" / "jiangcheng_flood"), clearable=False)]),
            html.Div([dbc.Button(t("exe.load", lang), id="exe-load", color="secondary", n_clicks=0, className="mt-4")]),
        ], className="form-row2"),
        html.Div(id="exe-msg", role="status"),
        dag.AgGrid(id="exe-grid", columnDefs=columns(lang), rowData=[], columnSize="responsiveSizeToFit",
                   dashGridOptions={"rowSelection": "multiple", "singleClickEdit": True,
                                    "stopEditingWhenCellsLoseFocus": True, "domLayout": "autoHeight",
                                    "localeText": grid_locale(lang)},
                   style={"height": None}, className="ag-theme-alpine"),
        html.Div([
            dbc.Button(t("exe.add", lang), id="exe-add", color="light", size="sm", n_clicks=0, className="me-1"),
            dbc.Button(t("exe.delete", lang), id="exe-delete", color="light", size="sm", n_clicks=0, className="me-1"),
            dbc.Button(t("exe.save", lang), id="exe-save", color="primary", size="sm", n_clicks=0),
        ], className="mt-2"),
        html.Div(id="exe-result", role="status"),
    ], className="panel", id="exe-panel")


def _scenario(value: Any) -> str | None:
    return value if isinstance(value, str) and value in {o["value"] for o in all_options()} else None


def _masked(folder: Path) -> bool:
    """Whether the folder's events list is masked for this request's viewer (a folder that does not
    read is left to save_events, which says why)."""
    try:
        return redacted(events_of(folder), current_viewer())[1]
    except ScenarioError:
        return False


@secured_callback(Output("exe-grid", "rowData"), Output("exe-msg", "children"), Input("exe-load", "n_clicks"),
                  State("exe-scenario", "value"), State("lang", "data"), prevent_initial_call=True, allow=PLANNER)
def _load(n, scenario, lang):
    lang = lang_of(lang)
    folder = _scenario(scenario)
    if not n or folder is None:
        return no_update, no_update
    try:
        rows, masked = redacted(events_of(Path(folder)), current_viewer())
    except ScenarioError as exc:
        return [], dbc.Alert(refusal_text(exc, lang), color="danger")
    note = [html.Div(t("exe.personal", lang), className="small text-warning")] if masked else []
    return rows, html.Div([t("exe.loaded", lang, n=len(rows), name=Path(folder).name), *note], className="small")


@secured_callback(Output("exe-grid", "rowData", allow_duplicate=True), Input("exe-add", "n_clicks"),
                  Input("exe-delete", "n_clicks"), State("exe-grid", "rowData"), State("exe-grid", "selectedRows"),
                  prevent_initial_call=True, allow=PLANNER)
def _edit_rows(add, delete, rows, selected):
    if not (add if ctx.triggered_id == "exe-add" else delete):
        return no_update
    rows = rows if isinstance(rows, list) else []
    if ctx.triggered_id == "exe-add":
        if len(rows) >= MAX_ROWS:
            return no_update
        return rows + [{"section": "injects", "at": "", "type": "", "fields": ""}]
    chosen = selected if isinstance(selected, list) else []
    return [r for r in rows if r not in chosen]


@secured_callback(Output("exe-result", "children"), Output("ex-scenario", "options", allow_duplicate=True),
                  Output("exe-scenario", "options", allow_duplicate=True),
                  Output("exb-scenario", "options", allow_duplicate=True),
                  Input("exe-save", "n_clicks"), State("exe-scenario", "value"), State("exe-grid", "rowData"),
                  State("lang", "data"), prevent_initial_call=True, allow=PLANNER)
def _save(n, scenario, rows, lang):
    lang = lang_of(lang)
    folder = _scenario(scenario)
    nothing = (no_update,) * 3
    if not n:
        return (no_update, *nothing)
    if folder is None or not isinstance(rows, list) or len(rows) > MAX_ROWS:
        return (dbc.Alert("?", color="danger"), *nothing)
    if _masked(Path(folder)):  # the masks would be written over the data
        return (dbc.Alert(t("exe.refused", lang, why=t("exe.personal", lang)), color="danger", id="exe-error"),
                *nothing)
    try:
        s = settings()
        saved = save_events(Path(folder), rows, s.uploads_dir,
                            {"by": access.user()["username"], "at": to_iso(now_ms(), None), "source": "events",
                             "from": Path(folder).name}, UploadLimits.of(s))
    except UploadError as exc:
        return (dbc.Alert(refusal_with("exe.refused", exc, lang), color="danger", id="exe-error"), *nothing)
    sc = saved.scenario
    msg = dbc.Alert([t("exe.saved", lang, id=saved.id, injects=len(sc.injects), actions=len(sc.actions),
                       objectives=len(getattr(sc, "objectives", []) or [])), " ",
                     html.A(t("exe.download", lang), href=f"/exercise/scenario/{saved.id}.zip", id="exe-download")],
                    color="success", id="exe-saved")
    opts = all_options(lang)
    return msg, opts, opts, opts
