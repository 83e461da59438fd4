"""The operator page's Dash callbacks: thin. Each checks the signed-in user on the server, then calls a
plain function (figure.py, queue.py, actions.py) that tests and the bench call directly."""

from __future__ import annotations

import flask
from dash import ALL, Input, Output, Patch, State, callback, ctx, no_update

from ..common import namespace, rds, require_user
from .actions import action_dialog, confirm_action, dispatch_recommended
from .figure import map_update, station_panel
from .queue import side_update


def _settings():
    """The map's base style and its raster tiles (None offline), from the app's settings."""
    cfg = flask.current_app.config
    return cfg.get("ECD_MAP_STYLE", "white-bg"), cfg.get("ECD_MAP_TILES")


@callback(Output("map-graph", "figure"), Output("map-version", "data"),
          Input("map-tick", "n_intervals"), Input("map-poke", "data"),
          State("ns", "data"), State("lang", "data"), State("map-version", "data"))
def _update_map(_n, _poke, ns, lang, client):
    require_user()
    style, tiles = _settings()
    fig, ver = map_update(rds(), namespace(ns), lang or "en", client, style, tiles)
    if isinstance(fig, Patch):
        # the same JSON on the wire; as plain dicts and lists orjson encodes it in one go, while a Patch
        # object makes Dash's encoder walk every value in Python first (~10x slower at 10,000 gauges)
        fig = fig.to_plotly_json()
    return fig, ver


@callback(Output("map-queue", "children"), Output("map-dispatches", "children"), Output("map-side-version", "data"),
          Input("map-tick", "n_intervals"), Input("map-poke", "data"), Input("map-queue-all", "data"),
          State("ns", "data"), State("lang", "data"), State("map-side-version", "data"))
def _update_side(_n, _poke, show_all, ns, lang, client):
    require_user()
    return side_update(rds(), namespace(ns), lang, bool(show_all), client)


@callback(Output("map-queue-all", "data"), Input("map-queue-toggle", "n_clicks"), State("map-queue-all", "data"),
          prevent_initial_call=True)
def _toggle_queue(n, show_all):
    if not n:
        return no_update
    return not show_all


@callback(Output("map-toast", "children"), Output("map-poke", "data"),
          Input({"type": "map-dispatch", "fp": ALL, "level": ALL}, "n_clicks"),
          State("ns", "data"), State("lang", "data"), State("map-poke", "data"), prevent_initial_call=True)
def _one_click_dispatch(clicks, ns, lang, poke):
    trig = ctx.triggered_id
    if not trig or not any(clicks):
        return no_update, no_update
    user = require_user("operator")
    r, keys = rds(), namespace(ns)
    return dispatch_recommended(r, keys, trig["fp"], trig["level"], user, lang or "en"), (poke or 0) + 1


@callback(Output("map-modal", "is_open"), Output("map-modal-title", "children"), Output("map-modal-target", "data"),
          Output("map-modal-resources", "options"), Output("map-modal-resources", "value"),
          Output("map-modal-resources-wrap", "style"), Output("map-modal-comment", "value"),
          Output("map-modal-error", "children", allow_duplicate=True),
          Input({"type": "map-action", "fp": ALL, "action": ALL}, "n_clicks"),
          State("ns", "data"), State("lang", "data"), prevent_initial_call=True)
def _open_modal(clicks, ns, lang):
    trig = ctx.triggered_id
    if not trig or not any(clicks):
        return (no_update,) * 8
    require_user("operator")
    dialog = action_dialog(rds(), namespace(ns), trig["fp"], trig["action"], lang or "en")
    if dialog is None:
        return (no_update,) * 8
    title, target, options, value, style = dialog
    return True, title, target, options, value, style, "", ""


@callback(Output("map-modal", "is_open", allow_duplicate=True), Output("map-modal-error", "children"),
          Output("map-toast", "children", allow_duplicate=True), Output("map-poke", "data", allow_duplicate=True),
          Input("map-modal-confirm", "n_clicks"), Input("map-modal-cancel", "n_clicks"),
          State("map-modal-target", "data"), State("map-modal-resources", "value"), State("map-modal-comment", "value"),
          State("ns", "data"), State("lang", "data"), State("map-poke", "data"), prevent_initial_call=True)
def _confirm_modal(ok, _cancel, target, chosen, comment, ns, lang, poke):
    if ctx.triggered_id == "map-modal-cancel" or not target or not ok:
        return False, "", no_update, no_update
    user = require_user("operator")
    is_open, error, toast, changed = confirm_action(rds(), namespace(ns), target, chosen, comment, user, lang or "en")
    return is_open, error, no_update if toast is None else toast, (poke or 0) + 1 if changed else no_update


@callback(Output("map-station-panel", "children"), Input("map-graph", "clickData"), Input("map-graph", "hoverData"),
          State("ns", "data"), State("lang", "data"), prevent_initial_call=True)
def _station_click(click, hover, ns, lang):
    require_user()
    event = click if ctx.triggered_id and ctx.triggered[0]["prop_id"].endswith("clickData") else hover
    if not event or not event.get("points"):
        return no_update
    pt = event["points"][0]
    if pt.get("curveNumber") != 0:
        return no_update
    sid = pt["customdata"][0]
    return station_panel(rds(), namespace(ns), sid, lang or "en")
