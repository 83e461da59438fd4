"""What can go wrong with a poll, as part of the domain's one error hierarchy (`command.errors`).

::

    CommandError                  (command/errors.py)
    └── FeedError                 a poll went wrong; ``retryable`` says whether trying again can help
        ├── TransientError        timeouts, refused or reset connections, HTTP 408 and 5xx (retryable)
        │   └── RateLimited       HTTP 429: retry, but not before ``retry_after`` seconds
        └── PermanentError        other HTTP 4xx: the request itself is wrong
            └── PayloadError      the answer cannot be read (HTML instead of JSON, truncated, wrong shape)

HTTP and parse failures are translated into these once, at the edge (`feeds/http.py` and each
adapter's ``parse``); the coordinator turns them into the source's health.

Attributes besides ``message`` and ``retryable``: ``status`` is the *upstream service's* HTTP
status (None when there was no answer), not the answer an edge of ours gives (use ``exit_code`` and
``code``, or 502/503 by ``retryable``); ``retry_after`` is seconds from the answer's
``Retry-After``; ``url`` is the request that failed.
"""

from __future__ import annotations

from command.errors import CommandError


class FeedError(CommandError):
    """A poll went wrong. `retryable` says whether trying again soon can help."""

    retryable = False
    exit_code = 1
    code = "feed_error"

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None,
                 url: str | None = None) -> None:
        super().__init__(message)
        # `status` here is the upstream answer, None when there was none (module docstring): not the
        # class attribute CommandError.status, which layouts/interop.http_status never reads for these
        self.status, self.retry_after, self.url = status, retry_after, url  # type: ignore[assignment]


class TransientError(FeedError):
    """Timeouts, refused or reset connections, HTTP 408 and 5xx: a retry may succeed."""

    retryable = True
    exit_code = 75  # EX_TEMPFAIL, like command.errors.Unavailable
    code = "feed_unavailable"


class RateLimited(TransientError):
    """HTTP 429: retry, but not before `retry_after` seconds."""

    code = "feed_rate_limited"


class PermanentError(FeedError):
    """HTTP 4xx (other than 408 and 429): the request itself is wrong; retrying will not help."""

    code = "feed_refused"


class PayloadError(PermanentError):
    """The answer cannot be read: an HTML page instead of JSON, truncated JSON, the wrong shape."""

    code = "feed_unreadable"


__all__ = ["FeedError", "TransientError", "RateLimited", "PermanentError", "PayloadError"]
