"""Shared by every page: the signed-in user, the Redis client, the namespace, badges and times.

The words pages share are in the central table, command/i18n.py."""

from __future__ import annotations

import functools
from typing import Any

import flask
import redis
from dash import html

from command.errors import CommandError, Forbidden, InvalidInput
from command.i18n import TEXT, t
from command.keys import LIVE, Keys
from command.runtime.redis_client import pooled
from command.trust.classification import INTERNAL, Viewer, viewer_of


def rds() -> redis.Redis:
    """A client on the app's Redis (one connection pool per process; no data is kept here; timeouts and
    retries: command/runtime/redis_client.py)."""
    return pooled(flask.current_app.config["ECD_REDIS_URL"], "app")


def current_user() -> dict[str, str] | None:
    return flask.session.get("user")


def current_viewer() -> Viewer:
    """Who this request shows data to, for the classification (command/trust/classification.py): the
    API caller (token or HTTP Basic) under /api/, else the signed-in user; outside a request (a test, the
    bench calling a page's plain functions) an internal viewer."""
    if not flask.has_request_context():
        return INTERNAL
    return viewer_of(flask.g.get("api_user") or current_user())


class NotSignedIn(Forbidden):
    """No one is signed in: HTTP 401, where Forbidden (a signed-in user who may not) is 403."""

    status = 401
    code = "not_signed_in"


def require_user(*roles: str) -> dict[str, str]:
    """The signed-in user, checked on the server (a crafted request gets nothing): NotSignedIn, or
    Forbidden for a role that may not (both `command.errors` classes). For a page's layout; callbacks
    and routes declare their policy instead (layouts/access.py: `secured_callback`, `route_policy`)."""
    user = current_user()
    if user is None:
        raise NotSignedIn("not signed in")
    if roles and user["role"] not in roles:
        raise Forbidden(f"role {user['role']} may not do this")
    return user


def namespace(ns: str | None) -> Keys:
    """The namespace the page shows: a validated drill namespace, or live (also for a value that is not
    a string: a crafted request's)."""
    if isinstance(ns, str) and ns and ns != LIVE:
        try:
            return Keys(ns)
        except InvalidInput:  # a name no namespace can have: live
            pass
    return Keys(LIVE)


def is_exercise(r: redis.Redis, keys: Keys) -> bool:
    return keys.ns != LIVE and r.hget(keys.meta, "mode") == b"exercise"


def exercise_banner(lang: str, scenario: str = "") -> html.Div:
    """Every screen of a drill carries this: a drill must never be mistaken for reality."""
    return html.Div([html.Span("⚠ "), t("app.exercise_banner", lang),
                     html.Span(f" · {scenario}" if scenario else "", className="banner-scenario")],
                    className="exercise-banner", id="exercise-banner", role="alert")


def drill_status(status: str, lang: str) -> str:
    """A drill's state in the page's language (an unknown one as it is)."""
    return t(f"drill.{status}", lang) if f"drill.{status}" in TEXT else status


# a refusal without a key of its own: its kind's lead sentence (command/i18n.py `err.*`), by error code
_REFUSAL_LEAD = {"invalid": "err.invalid", "not_found": "err.not_found", "forbidden": "err.forbidden",
                 "not_signed_in": "err.not_signed_in", "conflict": "err.conflict", "unavailable": "err.unavailable",
                 "rate_limited": "err.rate_limited_any"}


def refusal_text(exc: CommandError, lang: str) -> str | list[Any]:
    """A refusal as a page shows it, in the page's language: its own sentence when it carries a known
    `key` (with `params`), else its kind's lead sentence followed by its English `message`, marked
    lang="en" (the detail, e.g. a file's line, has no translation). `message` itself stays English for
    the API, the logs and the audit trail."""
    if exc.key and exc.key in TEXT:
        try:
            return t(exc.key, lang).format(**exc.params)  # always: a sentence missing a param falls back
        except (KeyError, IndexError, ValueError):  # params that do not fit the sentence: the fallback
            pass
    if lang not in TEXT["err.refused"] or lang == "en":
        return exc.message  # already in the page's language
    lead = t(_REFUSAL_LEAD.get(exc.code, "err.refused"), lang)
    return [lead, " ", html.Span(exc.message, lang="en", className="refusal-detail")]


def refusal_with(lead_key: str, exc: CommandError | str, lang: str) -> list[Any]:
    """A page's own lead sentence (a `{why}` at its end, e.g. "Rules file refused: {why}") with the
    refusal after it: its own sentence when it has a known key, else its English detail (a file's name
    and line) marked lang="en". A plain string is such a detail."""
    lead = t(lead_key, lang, why="").rstrip()
    if isinstance(exc, CommandError):
        said = refusal_text(exc, lang)
        if isinstance(said, str):
            return [lead, " ", said]
        exc = exc.message
    return [lead, " ", html.Span(exc, lang="en", className="refusal-detail")]


def grid_locale(lang: str) -> dict[str, str]:
    """A table's (AG Grid's) own words in `lang`, as its `localeText` option (command/i18n.py `grid.*`)."""
    return {k.split(".", 1)[1]: t(k, lang) for k in TEXT if k.startswith("grid.")}


def level_badge(level: str, lang: str) -> html.Span:
    return html.Span(t(f"level.{level}", lang), className=f"lvl lvl-{level}")


def fmt_time(ms: int | None, tz: str | None, with_date: bool = False) -> str:
    from command.timeutil import to_iso

    if ms is None:
        return ""
    iso = to_iso(ms, tz or None) or ""
    return f"{iso[5:10]} {iso[11:16]}" if with_date else iso[11:16]


def ns_tz(r: redis.Redis, keys: Keys) -> str | None:
    tz = r.hget(keys.meta, "timezone")
    return tz.decode() if tz else None


def dept_names(lang: str) -> dict[str, str]:

    return {d.id: (d.name_zh if lang == "zh" and d.name_zh else d.name) for d in _departments().values()}


@functools.cache
def _departments():
    from command.trust.auth import load_departments

    return load_departments()


def pick(d: dict[str, Any], lang: str, key: str) -> str:
    """A model's field in the user's language when it has one (name / name_zh)."""
    return (d.get(f"{key}_zh") if lang == "zh" else None) or d.get(key) or ""
