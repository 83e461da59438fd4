"""Every Redis client of flood command is built here: timeouts, retries, keepalive and health checks
in one place, one of three kinds by what the caller can afford when Redis goes away.

- ``"app"`` (the web app, the RQ worker, one-shot CLI commands): a command that fails on the way
  (refused connection, timeout, a server still loading its data) is tried again,
  ``Retry(ExponentialBackoff(cap, 0.1), retries)``. Commands that must not run twice are WATCHed
  transactions (dispatch, task updates, alert actions, the audit chain): redis-py never re-sends
  those, it raises WatchError and the command reads again and decides again.
- ``"loop"`` (the long-running loops that must neither lose nor double input: the rule engine, the
  drill runner, the feeds runner, the ack-timer sweep): a command is tried again only when it cannot
  have run, i.e. it never reached Redis (refused or timed-out connect) or Redis refused it while
  loading (`UnsentRetry`). Any other failure (a timeout waiting for the answer, a connection dropped
  after sending) leaves the outcome unknown: the error reaches the loop, which backs off, forgets
  what it holds in memory and resumes from what Redis committed (consumer group pending entries,
  leases, the drill's saved position, high-water marks). Re-sending instead would double an XADD or
  strand an XREADGROUP batch when Redis ran the first copy after all (a stalled server runs what
  is in its socket buffer when it resumes).
- ``"probe"`` (/health, the supervisor's checks, the embedded server's start and stop): short
  timeouts, no retry: it says how Redis is now.

Every kind has TCP keepalive on and a health check (PING) on a connection idle for
`Settings.redis_health_check_s`. `trouble(exc)` says whether an error means "Redis is not
available or refuses writes now" (wait and retry) or something else (a bug: raise).
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from command.config import Settings

Purpose = Literal["app", "loop", "probe"]
RETRY_BASE_S = 0.1
# What "try again" covers: the server was not reachable, did not answer in time, or is loading.
RETRYABLE: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
# Refusals of writes that waiting may cure: memory full (maxmemory), a failed snapshot
# (stop-writes-on-bgsave-error), a read-only replica.
_WRITE_REFUSALS = ("OOM ", "MISCONF ", "READONLY ")


def _never_sent(error: Exception) -> bool:
    """Did this error happen before the command reached Redis (or did Redis refuse to run it)?"""
    if isinstance(error, redis.BusyLoadingError):
        return True  # LOADING: refused, not run
    if isinstance(error, (redis.AuthenticationError, redis.exceptions.AuthorizationError)):
        return False  # waiting does not fix credentials
    text = str(error)
    # redis-py's connect errors: "Error 111 connecting to 127.0.0.1:6379. Connection refused." and
    # "Timeout connecting to server"; an error while reading an answer says "reading" or "closed".
    return isinstance(error, (redis.ConnectionError, redis.TimeoutError)) and (
        " connecting to " in text or text.startswith("Timeout connecting"))


class UnsentRetry(Retry):
    """A Retry that tries again only when the command cannot have run (`_never_sent`)."""

    def call_with_retry(self, do, fail, is_retryable=None, with_failure_count=False):
        def retryable(error: Exception) -> bool:
            return _never_sent(error) and (is_retryable is None or is_retryable(error))

        return super().call_with_retry(do, fail, is_retryable=retryable, with_failure_count=with_failure_count)


def _options(purpose: Purpose, settings: Settings) -> dict[str, Any]:
    backoff = ExponentialBackoff(cap=settings.redis_retry_cap, base=RETRY_BASE_S)
    common: dict[str, Any] = {"socket_keepalive": True, "health_check_interval": settings.redis_health_check_s}
    if purpose == "probe":
        t = settings.health_timeout
        return {**common, "socket_timeout": t, "socket_connect_timeout": t, "retry": Retry(backoff, 0),
                "health_check_interval": 0}
    retry_cls = UnsentRetry if purpose == "loop" else Retry
    return {**common, "socket_timeout": settings.redis_timeout, "socket_connect_timeout": settings.redis_connect_timeout,
            "retry": retry_cls(backoff, settings.redis_retries, supported_errors=RETRYABLE)}


def client(url: str, purpose: Purpose = "app", *, settings: Settings | None = None, **overrides: Any) -> redis.Redis:
    """A client on `url` for `purpose` (see the module's text); `overrides` are redis-py keywords."""
    opts = _options(purpose, settings or Settings())
    opts.update(overrides)
    return redis.Redis.from_url(url, **opts)


@functools.cache
def shared_pool(url: str, purpose: Purpose = "app") -> redis.ConnectionPool:
    """One connection pool per process, URL and purpose (the web workers' clients share it)."""
    return redis.ConnectionPool.from_url(url, **_options(purpose, Settings()))


def pooled(url: str, purpose: Purpose = "app") -> redis.Redis:
    """A client on the process's shared pool for `url` and `purpose` (cheap: make one per request)."""
    return redis.Redis(connection_pool=shared_pool(url, purpose))


def writes_refused(exc: BaseException) -> str | None:
    """Redis's reason when it refuses writes for now (memory full, failed snapshot, read-only), else None."""
    if isinstance(exc, (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError)):
        return str(exc)
    if isinstance(exc, redis.ResponseError):
        text = str(exc)
        # a refused command inside MULTI aborts the EXEC: "EXECABORT ... previous errors" carries no reason
        if text.startswith(_WRITE_REFUSALS) or (text.startswith("EXECABORT") and "OOM" in text):
            return text
    return None


def trouble(exc: BaseException) -> str | None:
    """Why Redis cannot serve us now, when waiting may cure it: down, timed out, loading, or refusing
    writes (`writes_refused`). None for any other error (refused credentials, a wrong type: a bug)."""
    if isinstance(exc, (redis.AuthenticationError, redis.exceptions.AuthorizationError)):
        return None
    if isinstance(exc, redis.BusyLoadingError):
        return f"Redis is loading its data: {exc}"
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return f"Redis is unavailable: {exc}"
    refused = writes_refused(exc)
    return f"Redis refuses writes: {refused}" if refused else None


def as_unavailable(exc: BaseException):
    """`exc` as a retryable `command.errors.Unavailable` when Redis cannot serve us now (`trouble`), or
    `exc` itself when it already is a retryable `CommandError`; None for anything else. The
    long-running loops back off and resume on it (command/engine/consumer.py, command/ops/drills.py)."""
    from command.errors import CommandError, Unavailable

    if isinstance(exc, CommandError):
        return exc if exc.retryable else None
    why = trouble(exc)
    return Unavailable(why) if why is not None else None
