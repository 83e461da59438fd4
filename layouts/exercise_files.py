"""`/exercise`, for planners: upload a scenario folder as a zip, see what the command line's loader says
about it (quarantined rows, or the fatal problem with its file and line) before starting it, and
download a kept scenario folder as a zip. The checks are command/scenarios/upload.py's; kept folders
live in the settings' `uploads_dir`, and the drill runner and the backtest read them from there."""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from typing import Any

import dash_bootstrap_components as dbc
import flask
import yaml
from dash import ALL, Input, Output, State, ctx, dcc, html, no_update

from command import i18n
from command.config import SAMPLE_DATA, Settings
from command.errors import Forbidden, NotFound
from command.i18n import t
from command.ops import drills
from command.scenarios.upload import (
    UploadError,
    UploadLimits,
    delete_kept,
    events_of,
    folder_of,
    stored,
    unpack_scenario,
    zip_folder,
)
from command.timeutil import now_ms, to_iso
from command.trust.classification import Redactor, Viewer

from . import access
from .access import route_policy, secured_callback
from .common import current_viewer, rds, refusal_with
from .inputs import lang_of, text

i18n.add({
    "exu.title": {"en": "Upload a scenario (zip)", "zh": "上传场景（zip）"},
    "exu.help": {"en": "A zip of a scenario folder: scenario.yaml and its files, checked as the command line checks "
                       "them. At most {size} and {files} files.",
                 "zh": "场景文件夹的 zip 压缩包：scenario.yaml 及其文件，按命令行的规则校验。最大 {size}，最多 {files} 个文件。"},
    "exu.drop": {"en": "Drop a .zip here or click to choose one", "zh": "将 .zip 拖到此处，或点击选择"},
    "exu.refused": {"en": "Not kept: {why}", "zh": "未保存：{why}"},
    "exu.kept": {"en": "Kept as {id}: {name}, {readings} readings, {q} quarantined row(s). It is in the scenario lists "
                       "above and below.",
                 "zh": "已保存为 {id}：{name}，{readings} 条读数，{q} 行被隔离。可在上下方的场景列表中选择。"},
    "exu.quarantine": {"en": "Quarantined rows (left out of the drill)", "zh": "被隔离的行（不进入演练）"},
    "exu.file": {"en": "File", "zh": "文件"},
    "exu.line": {"en": "Line", "zh": "行"},
    "exu.reason": {"en": "Reason", "zh": "原因"},
    "exu.uploaded": {"en": "uploaded", "zh": "已上传"},
    "exu.download": {"en": "Download as zip", "zh": "下载 zip"},
    "exu.kept_title": {"en": "Kept scenarios", "zh": "已保存的场景"},
    "exu.delete": {"en": "Delete", "zh": "删除"},
    "exu.deleted": {"en": "Deleted {id}.", "zh": "已删除 {id}。"},
    "exu.in_use": {"en": "{id} is used by drill {ns}: stop it first.", "zh": "{id} 正被演练 {ns} 使用，请先结束演练。"},
})

# an inject's reporter (name, phone) is personal data: graded in classification.yaml as the `events`
# dataset's data.reporter.* (the drill's injects), so the authoring page applies the same grade
REPORTER_FIELDS = ("name", "phone")

PLANNER = ("planner",)  # authoring an exercise is the planner's job (docs/drills.md)
_B64_RE = re.compile(r"data:[\w.+/-]*;base64,")


def settings() -> Settings:
    """The app's settings for these pages: the environment's, with the app's data folder."""
    app = flask.current_app
    s = app.config.get("ECD_EXERCISE_SETTINGS")
    if s is None:
        s = Settings(data_dir=Path(app.config["ECD_DATA_DIR"]))
        app.config["ECD_EXERCISE_SETTINGS"] = s
    return s


def sample_options(root: Path = SAMPLE_DATA / "scenarios") -> list[dict[str, str]]:
    return [{"label": p.name, "value": str(p)} for p in sorted(root.iterdir()) if (p / "scenario.yaml").exists()]


def kept_options(lang: str = "en") -> list[dict[str, str]]:
    """The scenario folders uploaded or saved on this page, newest first."""
    return [{"label": f"{m.get('name', m['id'])} ({t('exu.uploaded', lang)}: {m['id']})", "value": m["folder"]}
            for m in stored(settings().uploads_dir)]


def all_options(lang: str = "en") -> list[dict[str, str]]:
    return sample_options() + kept_options(lang)


def cleared_for_reporters(viewer: Viewer) -> bool:
    red = Redactor(viewer)
    return all(red.action("events", f"data.reporter.{f}") == "keep" for f in REPORTER_FIELDS)


def inject_fields(row: dict[str, Any]) -> dict[str, Any] | None:
    """An events row's `fields` as a mapping when it is an inject naming a reporter, else None."""
    if row.get("section") != "injects" or "reporter" not in str(row.get("fields", "")):
        return None
    rest = yaml.safe_load(row["fields"])  # events_of wrote it from a folder that loaded
    return rest if isinstance(rest, dict) and "reporter" in rest else None


def holds_reporters(folder: Path) -> bool:
    return any(inject_fields(row) is not None for row in events_of(folder))


def decode_upload(contents: Any, max_bytes: int) -> bytes:
    """A dcc.Upload's `contents` (a base64 data URL) as bytes; UploadError when it is not one or too big."""
    if not isinstance(contents, str):
        raise UploadError("expected a file")
    raw = text(contents, max_len=(max_bytes * 4) // 3 + 200)
    if not isinstance(raw, str):
        raise UploadError(f"the file is larger than {max_bytes:,} bytes")
    m = _B64_RE.match(raw)
    if not m:
        raise UploadError("expected a file")
    try:
        return base64.b64decode(raw[m.end():], validate=True)
    except (binascii.Error, ValueError):
        raise UploadError("the file did not arrive whole (bad base64)") from None


def panel(lang: str) -> html.Div:
    s = settings()
    return html.Div([
        html.H5(t("exu.title", lang)),
        html.Div(t("exu.help", lang, size=f"{s.upload_max_bytes // 1000} kB", files=s.upload_max_files),
                 className="small muted"),
        dcc.Upload(id="exu-upload", children=html.Div(t("exu.drop", lang)), accept=".zip,application/zip",
                   max_size=s.upload_max_bytes, multiple=False, className="upload-drop",
                   style={"border": "1px dashed #999", "borderRadius": "6px", "padding": "14px", "textAlign": "center",
                          "cursor": "pointer", "margin": "6px 0"}),
        html.Div(id="exu-result", role="status"),
        html.H6(t("exu.kept_title", lang), className="mt-2"),
        html.Div(id="exu-kept-list"),
        html.Div(id="exu-delete-msg", role="status"),
    ], className="panel", id="exu-panel")


def kept_view(lang: str) -> list:
    return [html.Div([
        html.Span(f"{m['id']} · {m.get('name', '')} · {m.get('by', '')} · {str(m.get('at', ''))[:16]} "),
        html.A(t("exu.download", lang), href=f"/exercise/scenario/{m['id']}.zip", className="me-2"),
        dbc.Button(t("exu.delete", lang), id={"type": "exu-delete", "id": m["id"]}, size="sm", color="danger",
                   outline=True, n_clicks=0),
    ], className="small") for m in stored(settings().uploads_dir)]


@secured_callback(Output("exu-kept-list", "children"), Input("ex-scenario", "options"), State("lang", "data"),
                  allow=PLANNER)
def _kept_list(_options, lang):
    # every change of the kept folders (upload, save, delete) also changes the drill form's options
    return kept_view(lang_of(lang))


@secured_callback(Output("exu-delete-msg", "children"), Output("ex-scenario", "options", allow_duplicate=True),
                  Output("exe-scenario", "options", allow_duplicate=True),
                  Output("exb-scenario", "options", allow_duplicate=True),
                  Input({"type": "exu-delete", "id": ALL}, "n_clicks"), State("lang", "data"),
                  prevent_initial_call=True, allow=PLANNER)
def _delete(_clicks, lang):
    lang = lang_of(lang)
    nothing = (no_update,) * 4
    trig = ctx.triggered_id
    if not isinstance(trig, dict) or not ctx.triggered or not ctx.triggered[0]["value"]:
        return nothing
    root = settings().uploads_dir
    folder = folder_of(root, trig.get("id"))
    if folder is None:
        return nothing
    busy = next((d for d in drills.list_drills(rds()) if d.get("folder") == str(folder)
                 and d.get("status") in ("starting", "running", "paused")), None)
    if busy is not None:
        return (dbc.Alert(t("exu.in_use", lang, id=folder.name, ns=busy["namespace"]), color="warning"),
                *nothing[1:])
    delete_kept(root, folder.name)
    opts = all_options(lang)
    return dbc.Alert(t("exu.deleted", lang, id=folder.name), color="info", id="exu-deleted"), opts, opts, opts


def quarantine_table(rows: list[dict[str, Any]], lang: str) -> html.Table:
    head = html.Tr([html.Th(t("exu.file", lang)), html.Th(t("exu.line", lang)), html.Th(t("exu.reason", lang))])
    body = [html.Tr([html.Td(str(q.get("source", ""))), html.Td(str(q.get("line", ""))), html.Td(str(q.get("reason", "")))])
            for q in rows[:200]]
    return html.Table([html.Thead(head), html.Tbody(body)], className="table table-sm", id="exu-quarantine")


@secured_callback(Output("exu-result", "children"), Output("ex-scenario", "options", allow_duplicate=True),
                  Output("exe-scenario", "options", allow_duplicate=True),
                  Output("exb-scenario", "options", allow_duplicate=True), Input("exu-upload", "contents"), State("exu-upload", "filename"), State("lang", "data"),
                  prevent_initial_call=True, allow=PLANNER)
def _upload(contents, filename, lang):
    lang = lang_of(lang)
    nothing = (no_update,) * 3
    if contents is None:
        return no_update, *nothing
    s = settings()
    name = text(filename, 200)
    try:
        data = decode_upload(contents, s.upload_max_bytes)
        kept = unpack_scenario(data, s.uploads_dir, UploadLimits.of(s),
                               {"by": access.user()["username"], "at": to_iso(now_ms(), None), "source": "upload",
                                "file": name if isinstance(name, str) else ""})
    except UploadError as exc:
        return dbc.Alert(refusal_with("exu.refused", exc, lang), color="danger", id="exu-error"), *nothing
    meta = kept.meta
    out: list[Any] = [dbc.Alert([
        t("exu.kept", lang, id=kept.id, name=kept.scenario.name, readings=meta["readings"], q=meta["quarantined"]), " ",
        html.A(t("exu.download", lang), href=f"/exercise/scenario/{kept.id}.zip")], color="success", id="exu-kept")]
    if meta["quarantine"]:
        out += [html.H6(t("exu.quarantine", lang)), quarantine_table(meta["quarantine"], lang)]
    opts = all_options(lang)
    return out, opts, opts, opts


def register_routes(server: flask.Flask) -> None:
    @server.route("/exercise/scenario/<filename>")
    @route_policy(allow=PLANNER)
    def _scenario_zip(filename):
        sid = filename[:-4] if filename.endswith(".zip") else ""
        folder = folder_of(settings().uploads_dir, sid)
        if folder is None:
            raise NotFound(f"no such scenario {filename!r}")
        if not cleared_for_reporters(current_viewer()) and holds_reporters(folder):
            raise Forbidden("this scenario's injects name reporters (personal data) your clearance does not show")
        resp = flask.make_response(zip_folder(folder))
        resp.headers["Content-Type"] = "application/zip"
        resp.headers["Content-Disposition"] = f'attachment; filename="{folder.name}.zip"'
        return resp
