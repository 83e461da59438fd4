"""The domain's one error hierarchy, translated once at each edge.

::

    CommandError                  something the caller can act on; ``retryable`` says whether trying
    ├── InvalidInput              again can help; ``status`` is the HTTP answer; ``exit_code`` the CLI's
    │   (field -> message)        bad input, with one message per field           422 / exit 2
    ├── NotFound                  no such thing (or not one the caller may know of) 404 / exit 2
    ├── Forbidden                 the caller may not do this                        403 / exit 2
    ├── Conflict                  lost a race or the state moved on: re-read        409 / exit 1
    ├── RateLimited               too many from one user/department: wait retry_after 429 / exit 2
    └── Unavailable               a dependency (Redis, a feed) is down: retry       503 / exit 75

An error may carry an i18n ``key`` (and ``params``) for the pages: they show it in the page's language
(layouts/common.py ``refusal_text``), ``message`` staying the English for logs, the API and the audit trail.

The edges: Dash callbacks show ``message`` (and ``errors`` per field) to the user, HTTP routes
answer ``status`` with a JSON body, the CLI exits with ``exit_code``, the engine loop backs off and
retries on ``retryable``. Nothing below an edge turns these into strings or status codes itself.

Redis going away is not raised as `Unavailable` by the code that talks to Redis (redis-py raises its
own exceptions from anywhere): each edge translates it with `unavailable_from`, once.
"""

from __future__ import annotations

from typing import Any

import redis


class CommandError(Exception):
    """Base: a refusal or failure the caller can act on."""

    status = 400
    exit_code = 2
    retryable = False
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, key: str | None = None,
                 params: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message  # English: logs, the API's JSON, the audit trail
        self.field = field
        # the page's words for it (command/i18n.py; layouts/common.py `refusal_text`); never in to_json
        self.key = key
        self.params: dict[str, Any] = dict(params or {})

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return body


class InvalidInput(CommandError, ValueError):
    """Bad input. ``errors`` maps each bad field to its message (empty when not about one field)."""

    status = 422
    code = "invalid"

    def __init__(self, errors: dict[str, str] | str, *, field: str | None = None, key: str | None = None,
                 params: dict[str, Any] | None = None) -> None:
        if isinstance(errors, str):
            message, errors = errors, ({field: errors} if field else {})
        else:
            message = "; ".join(f"{k}: {v}" for k, v in errors.items()) or "invalid input"
        self.errors: dict[str, str] = dict(errors)
        if field is None and len(self.errors) == 1:
            field = next(iter(self.errors))
        super().__init__(message, field=field, key=key, params=params)

    def to_json(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, "errors": self.errors}


class NotFound(CommandError, LookupError):
    status = 404
    code = "not_found"


class Forbidden(CommandError, PermissionError):
    status = 403
    code = "forbidden"


class Conflict(CommandError):
    status = 409
    exit_code = 1
    code = "conflict"


class Unavailable(CommandError):
    """A dependency is down or overloaded. ``retry_after`` (seconds) when known."""

    status = 503
    exit_code = 75  # EX_TEMPFAIL: a supervisor may try again
    retryable = True
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: float | None = None, field: str | None = None, key: str | None = None,
                 params: dict[str, Any] | None = None) -> None:
        super().__init__(message, field=field, key=key, params=params)
        self.retry_after = retry_after


class RateLimited(CommandError):
    """Back-pressure (command/trust/throttle.py): too many requests from one user, department or
    source; refused, try again after `retry_after` seconds (HTTP 429 with Retry-After)."""

    status = 429
    retryable = True
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, field: str | None = None, key: str | None = None,
                 params: dict[str, Any] | None = None) -> None:
        super().__init__(message, field=field, key=key, params=params)
        self.retry_after = retry_after


# redis-py's "the server is not there (yet)": refused or dropped connections, timeouts, a server still
# loading its data. Refused credentials (subclasses of its ConnectionError) are not an outage: waiting
# does not fix them; nor is any other redis-py error (a WRONGTYPE, a script error): that is a bug.
REDIS_DOWN: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
_REDIS_REFUSED: tuple[type[Exception], ...] = (redis.AuthenticationError, redis.exceptions.AuthorizationError)


def unavailable_from(exc: BaseException) -> Unavailable | None:
    """`exc` as `Unavailable` when it is Redis being down (`REDIS_DOWN`, which includes
    `BusyLoadingError`); None for anything else. The edges (CLI, HTTP, the engine loop) call this, so
    a Redis outage is one retryable error wherever it surfaces."""
    if isinstance(exc, REDIS_DOWN) and not isinstance(exc, _REDIS_REFUSED):
        return Unavailable(f"Redis is unavailable: {exc}", key="err.redis_down")
    return None
