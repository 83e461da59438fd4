"""The operator page's components. Their ids (`map-*`) are what the callbacks and the browser tests use."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from command.i18n import t
from command.publish import views

from ..common import dept_names, namespace, rds
from . import (
    basemap,
    filters,
    words,  # noqa: F401 - the page's words
)

# resource types named in the legend (the sample's; the hover and the list name any other)
RESOURCE_TYPES = ("pump", "rescue_boat", "rescue_crew", "police_unit", "ambulance", "sandbag_truck", "excavator",
                  "radar_van")


def layout(lang: str, ns: str) -> html.Div:
    return html.Div([
        dcc.Store(id="chg-map"),  # set by assets/changes.js when the map's data changed (layouts/changes.py)
        dcc.Store(id="map-version"),
        dcc.Store(id="map-side-version"),
        dcc.Store(id="map-poke", data=0),
        dcc.Store(id="map-click"),  # the last click on an alert card's button (`relayClick`, assets/clicks.js)
        dcc.Store(id="map-modal-target"),
        dcc.Store(id="map-queue-all", data=False, storage_type="session"),
        dcc.Store(id="map-focus"),  # the alert card clicked last (assets/map-overlay.js): its trend opens
        html.Div([
            dcc.Graph(id="map-graph", className="map-graph", config={"displaylogo": False, "scrollZoom": True},
                      figure={"data": [], "layout": {"map": {"style": "white-bg"}}}),
            legend(lang),
            html.Div(t("map.click_station", lang), id="map-station-panel", className="station-panel muted"),
        ], className="map-main"),
        html.Div([
            html.Div(id="map-toast", className="toast-area", role="status"),
            html.H5(t("map.alerts", lang)),
            _filters(lang, ns),
            html.Div(id="map-queue", className="queue"),
            html.H5(t("map.dispatches", lang), className="mt-3"),
            html.Div(id="map-dispatches", className="dispatches"),
        ], className="map-side"),
        dbc.Modal([
            dbc.ModalHeader(dbc.ModalTitle(id="map-modal-title")),
            dbc.ModalBody([
                html.Div(id="map-modal-resources-wrap", children=[
                    html.Label(t("map.choose_resources", lang)),
                    dcc.Checklist(id="map-modal-resources", options=[], value=[], className="checklist"),
                ]),
                html.Label(t("map.comment", lang), className="mt-2"),
                dcc.Textarea(id="map-modal-comment", style={"width": "100%"}, maxLength=2000),
                html.Div(id="map-modal-error", className="field-error"),
            ]),
            dbc.ModalFooter([
                dbc.Button(t("map.cancel", lang), id="map-modal-cancel", color="secondary", outline=True, n_clicks=0),
                dbc.Button(t("map.confirm", lang), id="map-modal-confirm", color="primary", n_clicks=0),
            ]),
        ], id="map-modal", is_open=False),
    ], className="map-page")


def _filters(lang: str, ns: str | None) -> html.Div:
    """The list's filters, with the namespace's zones (none when Redis cannot say: the list still shows)."""
    try:
        zones = views.zones(rds(), namespace(ns))
    except Exception:  # noqa: BLE001 - Redis unavailable or a bad namespace: a filter without zones
        zones = {}
    return filters.controls(lang, zones, dept_names(lang))


def _key(color: str, label: str, shape: str = "dot", edge: str | None = None) -> html.Span:
    style = {"background": color}
    if shape == "dash":
        style = {"borderTopColor": color}
    if edge:
        style["border"] = f"2px solid {edge}"
    return html.Span([html.Span(className=f"legend-swatch legend-{shape}", style=style), label],
                     className="legend-item")


def legend(lang: str) -> html.Details:
    """What every colour and symbol on the map means, in the page's language; drawn from the colours the
    map uses (command/publish/views.py), collapsible under the map."""
    levels = [_key(views.LEVEL_COLORS[lv], t(f"level.{lv}", lang)) for lv in ("yellow", "orange", "red")]
    rows = [
        (t("legend.stations", lang), [_key(views.NORMAL_COLOR, t("legend.normal", lang)), *levels,
                                      _key(views.NO_DATA_COLOR, t("legend.no_data", lang)),
                                      html.Span(t("legend.bigger", lang), className="legend-item muted")]),
        (t("legend.zones", lang), [*(_key(views.RISK_COLORS[k], t(f"legend.risk_{k}", lang), "area")
                                     for k in ("high", "medium", "low")),
                                   _key("rgba(120,120,120,0.08)", t("legend.risk_none", lang), "area"),
                                   _key("transparent", t("legend.no_alert", lang), "area", "#5c6b7a"),
                                   *(_key("transparent", t(f"level.{lv}", lang), "area", views.LEVEL_COLORS[lv])
                                     for lv in ("yellow", "orange", "red"))]),
        (t("legend.incidents", lang), [_key("#b71c1c", t("legend.incident_open", lang)),
                                       _key("#bdbdbd", t("legend.incident_closed", lang))]),
        (t("legend.warnings", lang), [_key("transparent", t("legend.warning_outline", lang), "area",
                                           views.LEVEL_COLORS["orange"])]),
        (t("legend.resources", lang), [_key(c, t(f"resource.{s}", lang)) for s, c in views.RESOURCE_COLORS.items()]),
        (t("legend.resource_types", lang), [html.Span(t(f"rtype.{k}", lang), className="legend-item")
                                            for k in RESOURCE_TYPES]),
        (t("legend.roads", lang), [
            *(_key(color, t(f"legend.road_{name}", lang), "line") for name, _, color, _ in basemap.STREET_CLASSES),
            _key(basemap.BRIDGE_COLOR, t("legend.road_bridge", lang), "line"),
            _key(basemap.CLOSED_COLOR, t("legend.road_closed", lang), "dash"),
            _key(basemap.ROUTE_COLOR, t("legend.route", lang), "line")]),
        (t("legend.landmarks", lang), [_key(c, t(f"landmark.{k}", lang)) for k, c in basemap.LANDMARK_COLORS.items()]),
        (t("legend.rivers", lang), [_key(basemap.WATER_COLOR, "", "line"),
                                    html.Span(t("legend.districts", lang), className="legend-item muted"),
                                    _key("transparent", t("legend.highlight", lang), "ring")]),
    ]
    return html.Details([
        html.Summary(t("map.legend", lang)),
        *(html.Div([html.B(title, className="legend-title"), *items], className="legend-row") for title, items in rows),
    ], id="map-legend", className="legend small", open=True)
