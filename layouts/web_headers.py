"""Security headers on every answer: a Content-Security-Policy Dash runs under (its inline scripts by
hash), frame-ancestors 'none', nosniff, Referrer-Policy (docs/security.md)."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import flask

from .web_basics import STATIC_PATHS, secure_cookies

log = logging.getLogger(__name__)


# ---- security headers ----------------------------------------------------------------------------------
def content_security_policy(script_hashes: list[str], tiles: str | None = None) -> str:
    """Scripts only from this site, or Dash's own inline script by its hash; styles may be inline
    (Dash and Plotly set style attributes); the map's workers come from blob: URLs; a tile server
    (ECD_MAP_TILES) is allowed for images and fetches."""
    tile_origin = ""
    if tiles:
        parts = urlsplit(tiles.replace("{", "").replace("}", ""))
        if parts.scheme in ("http", "https") and parts.netloc:
            tile_origin = f" {parts.scheme}://{parts.netloc}"
    return "; ".join([
        "default-src 'self'",
        "script-src 'self' " + " ".join(script_hashes),
        "style-src 'self' 'unsafe-inline'",
        f"img-src 'self' data: blob:{tile_origin}",
        "font-src 'self' data:",
        f"connect-src 'self'{tile_origin}",
        "worker-src 'self' blob:",
        "child-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def _dash_script_hashes() -> list[str]:
    import dash

    try:
        return list(dash.get_app().csp_hashes())
    except Exception:  # noqa: BLE001 - no Dash app (a bare Flask test): no inline script to allow
        return []


def security_headers(response: flask.Response) -> flask.Response:
    app = flask.current_app
    csp = app.config.get("ECD_CSP")
    if csp is None:
        csp = app.config["ECD_CSP"] = content_security_policy(_dash_script_hashes(), app.config.get("ECD_MAP_TILES"))
    h = response.headers
    h.setdefault("Content-Security-Policy", csp)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "same-origin")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    h.setdefault("Permissions-Policy", "camera=(), microphone=(), payment=(), usb=()")
    if secure_cookies():
        h.setdefault("Strict-Transport-Security", "max-age=31536000")
    if not flask.request.path.startswith(STATIC_PATHS) and "Cache-Control" not in h:
        h["Cache-Control"] = "no-store"
    return response
