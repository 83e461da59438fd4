"""One translation table for every user-facing string: English and Simplified Chinese.

`t(key, lang, **fmt)` looks a key up; a key missing in a language falls back to English, and a key
missing everywhere shows as the key itself (and tests/test_i18n.py catches it). Keys are dotted by page.

Words that more than one page uses (the shell's, task statuses, levels ...) live in `TEXT` below, so no
page depends on another having been imported; a page's own words may stay with the page (`add`).
"""

from __future__ import annotations

LANGS = ("en", "zh")
DEFAULT_LANG = "en"

TEXT: dict[str, dict[str, str]] = {
    "app.title": {"en": "Flood command", "zh": "防汛指挥"},
    "app.exercise_banner": {"en": "EXERCISE · NOT A REAL EVENT", "zh": "演练 · 非真实事件"},
    "level.yellow": {"en": "yellow", "zh": "黄色"},
    "level.orange": {"en": "orange", "zh": "橙色"},
    "level.red": {"en": "red", "zh": "红色"},
    "nav.map": {"en": "Operations map", "zh": "指挥地图"},
    "nav.department": {"en": "Department tasks", "zh": "部门任务"},
    "nav.exercise": {"en": "Exercise", "zh": "演练"},
    "nav.feeds": {"en": "Feeds", "zh": "数据源"},
    "nav.audit": {"en": "Audit trail", "zh": "审计日志"},
    # the shell around every page, and the sign-in page
    "shell.live": {"en": "Live", "zh": "实时"},
    "shell.drill": {"en": "Exercise: {name}", "zh": "演练：{name}"},
    "shell.signed_in": {"en": "{name} · {department}", "zh": "{name} · {department}"},
    "shell.sign_out": {"en": "Sign out", "zh": "退出"},
    "shell.clock": {"en": "Clock", "zh": "时钟"},
    "shell.scenario_clock": {"en": "Scenario time", "zh": "演练时间"},
    "shell.view": {"en": "View", "zh": "视图"},
    "shell.language": {"en": "中文", "zh": "English"},
    "shell.forbidden": {"en": "This page is for the command centre.", "zh": "此页面仅供指挥中心使用。"},
    "shell.not_found": {"en": "No such page.", "zh": "页面不存在。"},
    "shell.signed_out": {"en": "Your session has ended: sign in again.", "zh": "会话已结束，请重新登录。"},
    # words more than one page uses
    "common.never": {"en": "never", "zh": "从未"},
    "common.ago": {"en": "{d} ago", "zh": "{d}前"},
    "status.assigned": {"en": "assigned", "zh": "已派发"},
    "status.acknowledged": {"en": "acknowledged", "zh": "已确认"},
    "status.en_route": {"en": "en route", "zh": "在途"},
    "status.on_scene": {"en": "on scene", "zh": "到达现场"},
    "status.need_support": {"en": "need support", "zh": "请求支援"},
    "status.completed": {"en": "completed", "zh": "已完成"},
    "status.flagged": {"en": "flagged", "zh": "已标记"},
    # checking that the work worked (command/ops/verify.py): a completed task reopened, or verified
    "status.reopened": {"en": "reopened", "zh": "已重新打开"},
    "status.verified": {"en": "verified", "zh": "已核实"},
    "map.reopened": {"en": "⚑ Reopened: {reason}", "zh": "⚑ 已重新打开：{reason}"},
    # personal data as the classification lets the viewer see it (masked or whole): several pages show it
    "people.reported_by": {"en": "Reported by {who}", "zh": "报告人：{who}"},
    "people.assisted": {"en": "People assisted: {who}", "zh": "获救人员：{who}"},
    # the data catalogue (/catalog, layouts/catalog.py) and the levels it names
    "nav.catalog": {"en": "Data catalogue", "zh": "数据目录"},
    "class.public": {"en": "Public", "zh": "公开"},
    "class.internal": {"en": "Internal", "zh": "内部"},
    "class.secret": {"en": "Secret", "zh": "秘密"},
}


def t(key: str, lang: str | None = None, **fmt: object) -> str:
    entry = TEXT.get(key)
    if entry is None:
        return key
    text = entry.get(lang or DEFAULT_LANG) or entry.get(DEFAULT_LANG) or key
    return text.format(**fmt) if fmt else text


def add(table: dict[str, dict[str, str]]) -> None:
    """A page registers its own strings here at import (each key once: a clash is a bug)."""
    for key, entry in table.items():
        if key in TEXT and TEXT[key] != entry:
            raise KeyError(f"translation key {key!r} defined twice")
        TEXT[key] = entry
