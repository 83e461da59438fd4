"""Alerts that demand attention on the operator page: a new alert at the user's chosen level or above
plays the alert sound, unacknowledged alerts at that level flash (their card, and a pulsing ring at
their place on the map), the browser tab's title counts the unacknowledged alerts of the top level,
and, when the user switched them on, the browser shows desktop notifications.

The server decides what there is: `attention_data` (the open alerts as the page needs them) and the
user's settings (command/ops/preferences.py, kept by user name). The browser does the rest in
assets/attention.js, which reads the two hidden JSON elements drawn here (`attn-data`, `attn-prefs`)
and marks what flashes with the class `attn-flash` on a card (`.alert-card`, id `{"type": "map-card",
"fp": ...}`) and `.attn-pulse[data-fp]` rings over the map. The controls sit in the page's header
(layouts/shell.py draws them on the operator page).
"""

from __future__ import annotations

import hashlib

import dash_bootstrap_components as dbc
import orjson
from dash import Input, Output, State, ctx, dcc, html, no_update

from command import i18n
from command.errors import InvalidInput
from command.i18n import t
from command.keys import Keys
from command.ops import preferences
from command.ops.dispatch import alert_notes
from command.publish import views
from command.trust.classification import INTERNAL, Redactor, Viewer

from .. import access
from ..access import secured_callback
from ..common import current_viewer, namespace, rds
from ..inputs import NOT, lang_of, text

MAP_ROLES = ("operator", "planner")  # who reads the map page (layouts/shell.PAGE_ROLES["map"])
SOUND_FILE = "/assets/attention.wav"  # bundled: no network needed

i18n.add({
    "attn.sound_on": {"en": "🔔 Sound on", "zh": "🔔 声音开"},
    "attn.sound_off": {"en": "🔕 Sound off", "zh": "🔕 声音关"},
    "attn.from": {"en": "from", "zh": "起始等级"},
    "attn.notify_on": {"en": "Desktop alerts on", "zh": "桌面通知开"},
    "attn.notify_off": {"en": "Desktop alerts off", "zh": "桌面通知关"},
    "attn.sound_hint": {"en": "A new alert at this level or above sounds and flashes until acknowledged",
                        "zh": "达到或高于此等级的新告警会发出声音并闪烁，直至确认"},
    "attn.notify_hint": {"en": "Show a notification on the desktop (the browser asks first)",
                         "zh": "在桌面显示通知（浏览器会先征求同意）"},
})


def _prefs_json(p: preferences.Preferences) -> str:
    return orjson.dumps({"sound": p.sound, "level": p.level, "notify": p.notify}).decode()


def _sound_label(p: preferences.Preferences, lang: str) -> str:
    return t("attn.sound_on" if p.sound else "attn.sound_off", lang)


def _notify_label(p: preferences.Preferences, lang: str) -> str:
    return t("attn.notify_on" if p.notify else "attn.notify_off", lang)


def controls(lang: str, prefs: preferences.Preferences) -> html.Div:
    """The header's attention controls and what assets/attention.js reads (hidden)."""
    return html.Div([
        html.Button(_sound_label(prefs, lang), id="attn-sound", n_clicks=0, title=t("attn.sound_hint", lang),
                    className="attn-btn " + ("on" if prefs.sound else "off")),
        html.Label([t("attn.from", lang), " ",
                    dbc.Select(id="attn-level", value=prefs.level, size="sm", className="attn-level",
                               options=[{"label": t(f"level.{lv}", lang), "value": lv}
                                        for lv in preferences.LEVELS])],
                   className="attn-from", title=t("attn.sound_hint", lang)),
        html.Button(_notify_label(prefs, lang), id="attn-notify", n_clicks=0, title=t("attn.notify_hint", lang),
                    className="attn-btn " + ("on" if prefs.notify else "off")),
        html.Span(id="attn-msg", className="attn-msg", role="status"),
        html.Audio(id="attn-audio", src=SOUND_FILE, preload="auto"),
        html.Div(_prefs_json(prefs), id="attn-prefs", hidden=True),
        html.Div(id="attn-data", hidden=True),
        dcc.Store(id="attn-version"),
    ], id="attn-controls", className="attn-controls")


def attention_data(r, keys: Keys, lang: str, viewer: Viewer = INTERNAL) -> dict:
    """What the browser needs to sound, flash and count: the open alerts the queue shows, each as
    [fingerprint, level, acknowledged, subject, lon, lat], and the words of the tab title."""
    rank = views.level_rank(r, keys)
    levels = sorted(rank, key=rank.__getitem__)
    top = levels[-1] if levels else "red"
    # the namespace only as a digest: a page's text (even hidden) should not repeat what its menus show
    out = {"ns": hashlib.sha256(keys.ns.encode()).hexdigest()[:12], "title": t("app.title", lang), "levels": levels, "top": top,
           "top_label": t(f"level.{top}", lang), "alerts": []}
    if not Redactor(viewer).allowed("alerts"):
        return out
    alerts = views.open_alerts(r, keys, rank)
    notes = alert_notes(r, keys, [a["fingerprint"] for a in alerts])
    for a in alerts:
        n = notes.get(a["fingerprint"], {})
        # as the queue: an alert resolved at this level or above stays out (views.alert_queue)
        if n.get("resolved_at") and rank.get(a["level"], -1) <= rank.get(n.get("resolved_level", ""), -1):
            continue
        out["alerts"].append([a["fingerprint"], a["level"], bool(n.get("acknowledged_by")), a.get("subject", ""),
                              a.get("lon"), a.get("lat")])
    return out


@secured_callback(Output("attn-data", "children"), Output("attn-version", "data"),
                  Input("chg-map", "data"), Input("map-poke", "data"),
                  State("ns", "data"), State("lang", "data"), State("attn-version", "data"), allow=MAP_ROLES)
def _attention(_n, _poke, ns, lang, client):
    r, keys, viewer = rds(), namespace(ns), current_viewer()
    lang = lang_of(lang)
    ver = views.versions(r, keys)
    sig = hashlib.sha256(orjson.dumps([keys.ns, lang, ver["alerts"], viewer.clearance])).hexdigest()[:16]
    if sig == client:
        return no_update, no_update
    return orjson.dumps(attention_data(r, keys, lang, viewer)).decode(), sig


@secured_callback(Output("attn-prefs", "children"), Output("attn-sound", "children"),
                  Output("attn-sound", "className"), Output("attn-notify", "children"),
                  Output("attn-notify", "className"), Output("attn-msg", "children"),
                  Input("attn-sound", "n_clicks"), Input("attn-level", "value"), Input("attn-notify", "n_clicks"),
                  State("lang", "data"), prevent_initial_call=True, allow=MAP_ROLES,
                  note="the signed-in user's own settings only")
def _settings(_sound, level, _notify, lang):
    lang = lang_of(lang)
    user = access.user()["username"]
    r = rds()
    trig = ctx.triggered_id
    current = preferences.load(r, user)
    if trig == "attn-sound":
        change: dict = {"sound": not current.sound}
    elif trig == "attn-notify":
        change = {"notify": not current.notify}
    elif trig == "attn-level":
        lv = text(level, 20)
        change = {"level": lv if lv is not NOT else repr(level)[:20]}
    else:
        return (no_update,) * 6
    try:
        p = preferences.save(r, user, change)
    except InvalidInput as exc:  # a crafted value: say so, store nothing
        return no_update, no_update, no_update, no_update, no_update, exc.message
    return (_prefs_json(p), _sound_label(p, lang), "attn-btn " + ("on" if p.sound else "off"),
            _notify_label(p, lang), "attn-btn " + ("on" if p.notify else "off"), "")
