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
    "shell.down_since": {"en": "Data unavailable since {time}: the data store does not answer. The page shows "
                                "what it last read; commands fail until it is back.",
                         "zh": "自 {time} 起数据不可用：数据存储无响应。页面显示的是最后读取的数据；恢复前操作将失败。"},
    "shell.retrying": {"en": "This page tries again every 10 seconds.", "zh": "本页面每 10 秒自动重试。"},
    "shell.offline": {"en": "No connection to the server since {time}: the page shows what it last read.",
                      "zh": "自 {time} 起与服务器失去连接：页面显示的是最后读取的数据。"},
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
    # incident categories (command/ops/incidents.py CATEGORIES): the department's form, the operator's cards
    "cat.flooding": {"en": "flooding", "zh": "内涝"},
    "cat.trapped_people": {"en": "people trapped", "zh": "人员被困"},
    "cat.levee_breach": {"en": "levee breach", "zh": "堤防决口"},
    "cat.road_closed": {"en": "road closed", "zh": "道路封闭"},
    "cat.power_outage": {"en": "power outage", "zh": "停电"},
    "cat.landslide": {"en": "landslide", "zh": "山体滑坡"},
    "cat.medical": {"en": "medical", "zh": "医疗"},
    "cat.other": {"en": "other", "zh": "其他"},
    # a drill's state, as the view menu and the exercise page show it (command/ops/drills.py)
    "drill.starting": {"en": "starting", "zh": "启动中"},
    "drill.running": {"en": "running", "zh": "进行中"},
    "drill.paused": {"en": "paused", "zh": "已暂停"},
    "drill.finished": {"en": "finished", "zh": "已完成"},
    "drill.stopped": {"en": "stopped", "zh": "已结束"},
    "drill.failed": {"en": "failed", "zh": "失败"},
    "drill.interrupted": {"en": "interrupted", "zh": "已中断"},
    # the words of the widgets the pages use (Plotly's toolbar, the map's controls, number inputs, tables):
    # the shell hands them to assets/widget-words.js, which puts them in place of the widgets' English
    "widget.Download plot as a PNG": {"en": "Download plot as a PNG", "zh": "下载图片（PNG）"},
    "widget.Pan": {"en": "Pan", "zh": "平移"},
    "widget.Box Select": {"en": "Box Select", "zh": "框选"},
    "widget.Lasso Select": {"en": "Lasso Select", "zh": "套索选择"},
    "widget.Zoom": {"en": "Zoom", "zh": "缩放"},
    "widget.Zoom in": {"en": "Zoom in", "zh": "放大"},
    "widget.Zoom out": {"en": "Zoom out", "zh": "缩小"},
    "widget.Reset view": {"en": "Reset view", "zh": "重置视图"},
    "widget.Reset axes": {"en": "Reset axes", "zh": "重置坐标轴"},
    "widget.Autoscale": {"en": "Autoscale", "zh": "自动缩放"},
    "widget.Toggle Spike Lines": {"en": "Toggle Spike Lines", "zh": "显示/隐藏参考线"},
    "widget.Show closest data on hover": {"en": "Show closest data on hover", "zh": "悬停显示最近数据"},
    "widget.Compare data on hover": {"en": "Compare data on hover", "zh": "悬停比较数据"},
    "widget.Share chart...": {"en": "Share chart...", "zh": "分享图表…"},
    "widget.Produced with Plotly.js": {"en": "Produced with Plotly.js", "zh": "由 Plotly.js 生成"},
    "widget.Map": {"en": "Map", "zh": "地图"},
    "widget.Toggle attribution": {"en": "Toggle attribution", "zh": "显示/隐藏地图来源"},
    "widget.Decrease value": {"en": "Decrease value", "zh": "减少"},
    "widget.Increase value": {"en": "Increase value", "zh": "增加"},
    "widget.No Rows To Show": {"en": "No Rows To Show", "zh": "无数据"},
    "widget.No options": {"en": "No options", "zh": "无选项"},
    "widget.Page Size:": {"en": "Page Size:", "zh": "每页行数："},
    "widget.Page Size": {"en": "Page Size", "zh": "每页行数"},
    "widget.First Page": {"en": "First Page", "zh": "首页"},
    "widget.Previous Page": {"en": "Previous Page", "zh": "上一页"},
    "widget.Next Page": {"en": "Next Page", "zh": "下一页"},
    "widget.Last Page": {"en": "Last Page", "zh": "末页"},
    "widget.Page": {"en": "Page", "zh": "页"},
    "widget.of": {"en": "of", "zh": "/"},
    "widget.to": {"en": "to", "zh": "至"},
    "widget.Loading...": {"en": "Loading...", "zh": "加载中…"},
    "widget.Close alert": {"en": "Close alert", "zh": "关闭提示"},
    "widget.Close": {"en": "Close", "zh": "关闭"},
    # the tables' own words (AG Grid's localeText keys; layouts/common.py grid_locale)
    "grid.noRowsToShow": {"en": "No Rows To Show", "zh": "无数据"},
    "grid.loadingOoo": {"en": "Loading...", "zh": "加载中…"},
    "grid.page": {"en": "Page", "zh": "页"},
    "grid.of": {"en": "of", "zh": "/"},
    "grid.to": {"en": "to", "zh": "至"},
    "grid.more": {"en": "more", "zh": "更多"},
    "grid.pageSizeSelectorLabel": {"en": "Page Size:", "zh": "每页行数："},
    "grid.ariaPageSizeSelectorLabel": {"en": "Page Size", "zh": "每页行数"},
    "grid.firstPage": {"en": "First Page", "zh": "首页"},
    "grid.previousPage": {"en": "Previous Page", "zh": "上一页"},
    "grid.nextPage": {"en": "Next Page", "zh": "下一页"},
    "grid.lastPage": {"en": "Last Page", "zh": "末页"},
    "grid.pageLastRowUnknown": {"en": "?", "zh": "?"},
    "grid.ariaChecked": {"en": "checked", "zh": "已选中"},
    "grid.ariaUnchecked": {"en": "unchecked", "zh": "未选中"},
    "grid.ariaRowSelect": {"en": "Press SPACE to select this row", "zh": "按空格键选择此行"},
    "grid.ariaRowDeselect": {"en": "Press SPACE to deselect this row", "zh": "按空格键取消选择此行"},
    "grid.ariaRowToggleSelection": {"en": "Press Space to toggle row selection", "zh": "按空格键切换行选择"},
    "grid.ariaRowSelectAll": {"en": "Press Space to toggle all rows selection", "zh": "按空格键切换全部行选择"},
    "grid.ariaSortableColumn": {"en": "Press ENTER to sort", "zh": "按回车键排序"},
    "grid.ariaColumnSelectAll": {"en": "Toggle Select All Columns", "zh": "切换全选列"},
    "grid.ariaSearch": {"en": "Search", "zh": "搜索"},
    "grid.ariaFilterInput": {"en": "Filter Input", "zh": "筛选输入"},
    "grid.ariaLabelColumnMenu": {"en": "Column Menu", "zh": "列菜单"},
    "grid.ariaMenuColumn": {"en": "Press CTRL ENTER to open column menu", "zh": "按 Ctrl+回车键打开列菜单"},
    # refusals as the pages show them (layouts/common.py `refusal_text`): a CommandError's `key`, else
    # its class's lead sentence followed by its English detail
    "err.alert_gone": {"en": "This alert no longer exists.", "zh": "该警报已不存在。"},
    "err.no_resources": {"en": "Choose at least one resource.", "zh": "请至少选择一个资源。"},
    "err.resource_twice": {"en": "A resource is listed twice.", "zh": "有资源被重复选择。"},
    "err.unknown_resource": {"en": "Resource {id} does not exist.", "zh": "资源 {id} 不存在。"},
    "err.unit_unavailable": {"en": "{name} is no longer available: choose another resource.",
                             "zh": "{name} 已不可用，请选择其他资源。"},
    "err.resolve_why": {"en": "Say why the alert is resolved.", "zh": "请说明解除警报的原因。"},
    "err.comment_long": {"en": "The comment is too long (2,000 characters at most).",
                         "zh": "备注过长（最多 2000 字）。"},
    "err.rate_limited": {"en": "Too many requests in a short time: try again in {s} s.",
                         "zh": "短时间内请求过多，请 {s} 秒后重试。"},
    "err.redis_down": {"en": "Data is unavailable (the data store does not answer): try again shortly.",
                       "zh": "数据暂不可用（数据存储无响应），请稍后重试。"},
    "err.drill_not_running": {"en": "This drill is no longer running: the command was not sent.",
                              "zh": "该演练已不在进行中，命令未发送。"},
    "err.drill_already_paused": {"en": "This drill is already paused.", "zh": "该演练已暂停。"},
    "err.drill_already_running": {"en": "This drill is already running.", "zh": "该演练已在进行中。"},
    # a refusal without a key of its own: its kind, in the page's language, then its detail
    "err.invalid": {"en": "This input was refused:", "zh": "输入被拒绝："},
    "err.not_found": {"en": "Not found:", "zh": "未找到："},
    "err.forbidden": {"en": "You may not do this:", "zh": "您无权执行此操作："},
    "err.not_signed_in": {"en": "Your session has ended (sign in again):", "zh": "会话已结束，请重新登录："},
    "err.conflict": {"en": "The situation changed meanwhile (look again and retry):", "zh": "情况已发生变化，请刷新后重试："},
    "err.unavailable": {"en": "Data is unavailable for now (try again shortly):", "zh": "数据暂不可用，请稍后重试："},
    "err.rate_limited_any": {"en": "Too many requests in a short time (wait and retry):", "zh": "短时间内请求过多，请稍后重试："},
    "err.refused": {"en": "Refused:", "zh": "操作被拒绝："},
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
