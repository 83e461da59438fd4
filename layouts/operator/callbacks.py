"""The operator page's Dash callbacks: thin. Each declares who may call it (`secured_callback`, checked
on the server before it runs: the map's readers for the command centre and planners, as the page table
says; dispatching and alert actions for operators only), reads its inputs as the types it needs
(layouts/inputs.py), then calls a plain function (figure.py, queue.py, actions.py) that tests and the
bench call directly."""

from __future__ import annotations

import flask
from dash import ALL, Input, Output, Patch, State, ctx, no_update

from command.publish import views

from .. import access
from ..access import browser_callback, secured_callback
from ..common import current_viewer, namespace, rds
from ..inputs import NOT, clicked, dict_of, lang_of, one_of, str_list, text
from . import filters
from .actions import action_dialog, confirm_action, dispatch_recommended
from .basemap import VECTOR, MapBase
from .figure import map_update, station_panel
from .queue import side_update

MAP_ROLES = ("operator", "planner")  # who reads the map page (layouts/shell.PAGE_ROLES["map"])
COMMAND_ROLES = ("operator",)  # who dispatches and acts on alerts
ACTIONS = ("change", "acknowledge", "escalate", "resolve")


def _settings() -> MapBase:
    """The map's base (layouts/operator/basemap.py), as the app resolved it from its settings at start."""
    base = flask.current_app.config.get("ECD_MAP_BASE")
    return base if isinstance(base, MapBase) else VECTOR


@secured_callback(Output("map-graph", "figure"), Output("map-version", "data"),
                  Input("chg-map", "data"), Input("map-poke", "data"),
                  State("ns", "data"), State("lang", "data"), State("map-version", "data"), allow=MAP_ROLES)
def _update_map(_n, _poke, ns, lang, client):
    client = client if isinstance(client, dict) else None  # anything else: draw the whole map
    fig, ver = map_update(rds(), namespace(ns), lang_of(lang), client, _settings(), current_viewer())
    if isinstance(fig, Patch):
        # the same JSON on the wire; as plain dicts and lists orjson encodes it in one go, while a Patch
        # object makes Dash's encoder walk every value in Python first (~10x slower at 10,000 gauges)
        fig = fig.to_plotly_json()
    return fig, ver


@secured_callback(Output("map-queue", "children"), Output("map-dispatches", "children"),
                  Output("map-side-version", "data"),
                  Input("chg-map", "data"), Input("map-poke", "data"), Input("map-queue-all", "data"),
                  Input("map-filter-level", "value"), Input("map-filter-zone", "value"),
                  Input("map-filter-dept", "value"),
                  State("ns", "data"), State("lang", "data"), State("map-side-version", "data"), allow=MAP_ROLES,
                  note="the dispatch board shows every department's tasks and notes")
def _update_side(_n, _poke, show_all, levels, zones, depts, ns, lang, client):
    return side_update(rds(), namespace(ns), lang_of(lang), show_all is True, client, current_viewer(),
                       filters.parse(levels, zones, depts))


@secured_callback(Output("map-queue-all", "data"), Input("map-queue-toggle", "n_clicks"),
                  State("map-queue-all", "data"), prevent_initial_call=True, allow=MAP_ROLES)
def _toggle_queue(n, show_all):
    if not n:
        return no_update
    return show_all is not True


# The cards' buttons are inside the queue `_update_side` draws again at every change: their clicks reach
# the server through a store outside it (assets/clicks.js says why: a Dispatch clicked as the queue is
# redrawn would lose its answer), and `_one_click_dispatch` and `_open_modal` listen on that store.
browser_callback("relayClick", Output("map-click", "data"),
                 Input({"type": "map-dispatch", "fp": ALL, "level": ALL}, "n_clicks"),
                 Input({"type": "map-action", "fp": ALL, "action": ALL}, "n_clicks"), prevent_initial_call=True,
                 allow=COMMAND_ROLES)


@secured_callback(Output("map-toast", "children"), Output("map-poke", "data"), Input("map-click", "data"),
                  State("ns", "data"), State("lang", "data"), State("map-poke", "data"), prevent_initial_call=True,
                  allow=COMMAND_ROLES)
def _one_click_dispatch(click, ns, lang, poke):
    trig = clicked(click, "map-dispatch")
    if trig is None:
        return no_update, no_update
    fp, level = text(trig.get("fp"), 200), text(trig.get("level"), 20)
    if fp is NOT or level is NOT:
        return no_update, no_update
    r, keys = rds(), namespace(ns)
    return dispatch_recommended(r, keys, fp, level, access.user(), lang_of(lang)), _next_poke(poke)


def _next_poke(poke) -> int:
    return (poke if isinstance(poke, int) and not isinstance(poke, bool) and 0 <= poke < 2**31 else 0) + 1


@secured_callback(Output("map-modal", "is_open"), Output("map-modal-title", "children"),
                  Output("map-modal-target", "data"),
                  Output("map-modal-resources", "options"), Output("map-modal-resources", "value"),
                  Output("map-modal-resources-wrap", "style"), Output("map-modal-comment", "value"),
                  Output("map-modal-error", "children", allow_duplicate=True),
                  Input("map-click", "data"),
                  State("ns", "data"), State("lang", "data"), prevent_initial_call=True, allow=COMMAND_ROLES)
def _open_modal(click, ns, lang):
    trig = clicked(click, "map-action")
    if trig is None:
        return (no_update,) * 8
    fp, action = text(trig.get("fp"), 200), one_of(trig.get("action"), ACTIONS)
    if fp is NOT or action is NOT:
        return (no_update,) * 8
    dialog = action_dialog(rds(), namespace(ns), fp, action, lang_of(lang))
    if dialog is None:
        return (no_update,) * 8
    title, target, options, value, style = dialog
    return True, title, target, options, value, style, "", ""


@secured_callback(Output("map-modal", "is_open", allow_duplicate=True), Output("map-modal-error", "children"),
                  Output("map-toast", "children", allow_duplicate=True),
                  Output("map-poke", "data", allow_duplicate=True),
                  Input("map-modal-confirm", "n_clicks"), Input("map-modal-cancel", "n_clicks"),
                  State("map-modal-target", "data"), State("map-modal-resources", "value"),
                  State("map-modal-comment", "value"), State("ns", "data"), State("lang", "data"),
                  State("map-poke", "data"), prevent_initial_call=True, allow=COMMAND_ROLES)
def _confirm_modal(ok, _cancel, target, chosen, comment, ns, lang, poke):
    if ctx.triggered_id == "map-modal-cancel" or not target or not ok:
        return False, "", no_update, no_update
    target = dict_of(target, "fp", "action", "level")
    chosen, comment = str_list(chosen), text(comment, 2000)
    if (target is NOT or text(target["fp"], 200) is NOT or one_of(target["action"], ACTIONS) is NOT
            or text(target["level"], 20) is NOT):
        return False, "", no_update, no_update  # not a dialog this page opened
    if chosen is NOT or comment is NOT:
        return True, "?", no_update, no_update
    is_open, error, toast, changed = confirm_action(rds(), namespace(ns), target, chosen, comment, access.user(),
                                                    lang_of(lang))
    return is_open, error, no_update if toast is None else toast, _next_poke(poke) if changed else no_update


@secured_callback(Output("map-station-panel", "children"), Input("map-graph", "clickData"),
                  Input("map-graph", "hoverData"), Input("map-focus", "data"), State("ns", "data"),
                  State("lang", "data"), prevent_initial_call=True, allow=MAP_ROLES)
def _station_click(click, hover, focus, ns, lang):
    if ctx.triggered_id == "map-focus":  # an alert card was clicked (assets/map-overlay.js): its station's trend
        sid = _focused_station(focus)
    else:
        event = click if ctx.triggered_id and ctx.triggered[0]["prop_id"].endswith("clickData") else hover
        sid = _clicked_station(event)
    if sid is None:
        return no_update
    r, keys = rds(), namespace(ns)
    if sid not in views.station_index(r, keys).stations:
        return no_update  # an incident's or a zone's card: no trend to show
    return station_panel(r, keys, sid, lang_of(lang))


def _focused_station(focus) -> str | None:
    sid = text(focus.get("subject"), 200) if isinstance(focus, dict) else NOT
    return sid if sid is not NOT and sid else None


def _clicked_station(event) -> str | None:
    """The station id a map click (or hover) names, or None (not a station, or not a click Plotly sends)."""
    points = event.get("points") if isinstance(event, dict) else None
    pt = points[0] if isinstance(points, list) and points and isinstance(points[0], dict) else None
    if pt is None or pt.get("curveNumber") != 0:
        return None
    custom = pt.get("customdata")
    sid = text(custom[0], 200) if isinstance(custom, list) and custom else NOT
    return sid if sid is not NOT and sid else None
