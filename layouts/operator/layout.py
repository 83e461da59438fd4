"""The operator page's components. Their ids (`map-*`) are what the callbacks and the browser tests use."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from command.i18n import t

from . import words  # noqa: F401 - the page's words


def layout(lang: str, ns: str) -> html.Div:
    return html.Div([
        dcc.Interval(id="map-tick", interval=1000),
        dcc.Store(id="map-version"),
        dcc.Store(id="map-side-version"),
        dcc.Store(id="map-poke", data=0),
        dcc.Store(id="map-modal-target"),
        dcc.Store(id="map-queue-all", data=False, storage_type="session"),
        html.Div([
            dcc.Graph(id="map-graph", className="map-graph", config={"displaylogo": False, "scrollZoom": True},
                      figure={"data": [], "layout": {"map": {"style": "white-bg"}}}),
            html.Div(t("map.legend", lang), className="legend muted small"),
            html.Div(t("map.click_station", lang), id="map-station-panel", className="station-panel muted"),
        ], className="map-main"),
        html.Div([
            html.Div(id="map-toast", className="toast-area", role="status"),
            html.H5(t("map.alerts", lang)),
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
