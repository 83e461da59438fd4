"""`/feeds`: each source's health at a glance, and the dead letters with their reasons, so an operator
knows whether a blank area of the map means "no water" or "no data"."""

from __future__ import annotations

from typing import Any

import orjson
from dash import Input, Output, State, dcc, html

from command import i18n
from command.i18n import t
from command.keys import Keys
from command.timeutil import humanize_ms, now_ms
from command.trust.classification import INTERNAL, Redactor, Viewer

from .access import secured_callback
from .common import current_viewer, fmt_time, namespace, ns_tz, rds
from .inputs import lang_of

i18n.add({
    "feeds.title": {"en": "Feeds", "zh": "数据源"},
    "feeds.none": {"en": "No live source has reported yet (configure them in feeds.yaml).",
                   "zh": "尚无数据源上报（在 feeds.yaml 中配置）。"},
    "feeds.green": {"en": "green", "zh": "正常"},
    "feeds.idle": {"en": "not polled yet", "zh": "尚未轮询"},
    "feeds.late": {"en": "late", "zh": "延迟"},
    "feeds.failing": {"en": "failing", "zh": "故障"},
    "feeds.source": {"en": "Source", "zh": "数据源"},
    "feeds.state": {"en": "State", "zh": "状态"},
    "feeds.last_success": {"en": "Last success", "zh": "最近成功"},
    "feeds.last_error": {"en": "Last error", "zh": "最近错误"},
    "feeds.failures": {"en": "Failures in a row", "zh": "连续失败"},
    "feeds.taken": {"en": "Readings taken", "zh": "已接收"},
    "feeds.rejected": {"en": "Rejected", "zh": "已拒收"},
    "feeds.rate_limited": {"en": "Over rate limit", "zh": "超出限速"},
    "feeds.newest": {"en": "Newest reading", "zh": "最新数据"},
    "feeds.deadletters": {"en": "Dead letters (newest first)", "zh": "隔离数据（最新在前）"},
    "feeds.no_deadletters": {"en": "Nothing rejected.", "zh": "无隔离数据。"},
    "feeds.reason": {"en": "Reason", "zh": "原因"},
    "feeds.record": {"en": "Record", "zh": "原始记录"},
})


def deadletters(r, keys: Keys, count: int = 100, viewer: Viewer = INTERNAL) -> list[dict[str, Any]]:
    """The newest rejected records, as `viewer` may see them (a refused inject's reporter is secret)."""
    red = Redactor(viewer)
    out: list[dict[str, Any]] = []
    for eid, f in r.xrevrange(keys.deadletter, count=count) if red.allowed("deadletter") else []:
        rec = {k.decode(): v.decode(errors="replace") for k, v in f.items()}
        rec["id"] = eid.decode()
        try:
            shown = red.record("deadletter", {"record": orjson.loads(rec.get("record", "null"))}, rec["id"]) or {}
            rec["record"] = orjson.dumps(shown.get("record")).decode()[:300]
        except orjson.JSONDecodeError:
            rec["record"] = rec.get("record", "")[:300]
        out.append(rec)
    red.audit(r, keys, "deadletters")
    return out


def view(r, keys: Keys, lang: str, viewer: Viewer = INTERNAL) -> list:
    from feeds.health import all_health, feed_status

    now = now_ms()
    tz = ns_tz(r, keys)
    rows = all_health(r, keys)
    parts: list[Any] = []
    if not rows:
        parts.append(html.Div(t("feeds.none", lang), className="muted", id="feeds-none"))
    else:
        head = html.Tr([html.Th(t(f"feeds.{k}", lang)) for k in
                        ("source", "state", "last_success", "last_error", "failures", "taken", "rejected",
                         "rate_limited", "newest")])
        body = []
        for h in rows:
            st = feed_status(h, now)
            last, newest = h.get("last_success"), h.get("newest")
            body.append(html.Tr([
                html.Td(h["source"]),
                html.Td(html.Span(t(f"feeds.{st}", lang), className=f"health health-{st}")),
                html.Td(fmt_time(last, tz, with_date=True) if last else t("common.never", lang)),
                html.Td(h.get("last_error") or ""),
                html.Td(str(h.get("consecutive_failures") or 0)),
                html.Td(str(h.get("readings") or 0)),
                html.Td(str(h.get("rejected") or 0)),
                html.Td(str(h.get("rate_limited") or 0)),
                html.Td(t("common.ago", lang, d=humanize_ms(now - newest)) if newest else "—"),
            ], id={"type": "feeds-row", "source": h["source"]}))
        parts.append(html.Table([html.Thead(head), html.Tbody(body)], className="table table-sm"))
    dl = deadletters(r, keys, viewer=viewer)
    parts.append(html.H5(t("feeds.deadletters", lang), className="mt-3"))
    if not dl:
        parts.append(html.Div(t("feeds.no_deadletters", lang), className="muted"))
    else:
        parts.append(html.Table([
            html.Thead(html.Tr([html.Th(t("feeds.source", lang)), html.Th(t("feeds.reason", lang)),
                                html.Th(t("feeds.record", lang))])),
            # the source's name, the validator's diagnostic (kept in English as written) and the record as
            # received are data: marked so (lang), not words of the page
            html.Tbody([html.Tr([html.Td(d.get("source", ""), lang="zxx"), html.Td(d.get("reason", ""), lang="en"),
                                 html.Td(html.Code(d.get("record", ""), lang="zxx"))]) for d in dl]),
        ], className="table table-sm", id="feeds-deadletters"))
    return parts


def layout(lang: str, ns: str) -> html.Div:
    return html.Div([dcc.Interval(id="feeds-tick", interval=3000), html.H4(t("feeds.title", lang)),
                     html.Div(id="feeds-body")], className="feeds-page")


FEEDS_ROLES = ("operator", "planner")  # layouts/shell.PAGE_ROLES["feeds"]


@secured_callback(Output("feeds-body", "children"), Input("feeds-tick", "n_intervals"), State("ns", "data"),
                  State("lang", "data"), allow=FEEDS_ROLES)
def _body(_n, ns, lang):
    return view(rds(), namespace(ns), lang_of(lang), current_viewer())
