"""`/`: the operator page: the map, the alert queue, one-click dispatch and dispatch tracking.

- layout.py: the page's components (ids `map-*`);
- figure.py: the map figure (traces, layers, Patch deltas) and a station's trend;
- queue.py: the alert queue's cards and the dispatch board;
- actions.py: dispatching and alert actions, as plain functions;
- callbacks.py: the Dash callbacks, thin (imported by the app factory, which registers them);
- words.py: the page's own strings (shared words are in command/i18n.py).
"""

from __future__ import annotations

from .layout import layout

__all__ = ["layout"]
