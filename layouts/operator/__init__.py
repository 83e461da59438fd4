"""`/`: the operator page: the map, the alert queue, one-click dispatch and dispatch tracking.

- layout.py: the page's components (ids `map-*`);
- figure.py: the map figure (traces, layers, Patch deltas) and a station's trend;
- queue.py: the alert queue's cards and the dispatch board;
- actions.py: dispatching and alert actions, as plain functions;
- callbacks.py: the Dash callbacks, thin (imported by the app factory, which registers them);
- words.py: the page's own strings (shared words are in command/i18n.py);
- basemap.py: what the map is drawn on (offline vector layers, tiles, MBTiles route), closed roads, labels;
- trips.py: dispatched units' road routes; filters.py: the alert list's filters;
- assets/map-overlay.js: names and scale bar over the map, and the card <-> map link (`window.ecdMap`).
"""

from __future__ import annotations

from .layout import layout

__all__ = ["layout"]
