"""What every part of the web app's front door shares: which paths need no session, the page
templates, and small checks of a request (a same-site `next`, the language, the client address,
cookie names and whether they are Secure)."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from urllib.parse import urlsplit

import flask
import jinja2

from command import i18n
from command.trust.throttle import address_of

# Who may call each route and callback is declared next to it (layouts/access.py); over /api/ a
# person's role is checked against the route's policy, a token's scopes by tokens.scope_for.
STATIC_PATHS = ("/assets/", "/_dash-component-suites/", "/_favicon")
# answered without reading a session (/health: even without Redis; /public/: open data, layouts/public.py)
NO_SESSION_PATHS = (*STATIC_PATHS, "/health", "/public/")
MAX_BODY_BYTES = 1024 * 1024  # a Dash callback is a few KB, an incident well under 3 KB
MAX_NEXT = 2000
TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                                autoescape=True, trim_blocks=True, lstrip_blocks=True)



# ---- small checks --------------------------------------------------------------------------------------
def safe_next(value: str | None) -> str:
    """`value` when it is a path on this site, else "". Refused: spaces, control and format characters
    (a browser drops a TAB or a newline, so `/<TAB>/evil.example` would become `//evil.example`), a
    backslash (read as `/`), `//`, a scheme or a host, anything not starting with one `/`."""
    if not value or len(value) > MAX_NEXT or not value.startswith("/"):
        return ""
    if any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Zs") for ch in value) \
            or "\\" in value:
        return ""
    if value.startswith("//") or value.lstrip("/") != value[1:]:
        return ""
    try:
        parts = urlsplit(value)
    except ValueError:
        return ""
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return ""
    return value


def pick_lang(req: flask.Request) -> str:
    """The page's language: `?lang=` when it is one we have, else the one chosen on the sign-in page (kept in
    the session), else the browser's, else English."""
    lang = req.args.get("lang", "")
    if lang in i18n.LANGS:
        return lang
    chosen = flask.session.get("lang")
    if chosen in i18n.LANGS:
        return chosen
    best = req.accept_languages.best_match(["en", "zh", "zh-CN", "zh-TW"]) or ""
    return "zh" if best.startswith("zh") else "en"


def secure_cookies() -> bool:
    return os.environ.get("ECD_SECURE_COOKIES", "") in ("1", "true", "yes")


def cookie_name() -> str:
    # `__Host-`: the browser takes it only over HTTPS, for this host, path / (no subdomain can set it)
    return "__Host-ecd_session" if secure_cookies() else "ecd_session"


def client_address() -> str:
    return address_of(flask.request.remote_addr)
