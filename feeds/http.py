"""HTTP for the feeds: GET with timeouts, retries with backoff and jitter, `Retry-After`, conditional
requests, and reading a body as JSON (or saying what it is instead).

Errors are translated once, here, into `feeds.errors` classes that say whether a retry can help
(`retryable`). Timeouts, connection failures, 5xx and 429 are retried with exponential backoff and
jitter; `Retry-After` is honoured (seconds or an HTTP date); a wait longer than the backoff cap
ends the fetch, and the coordinator holds the next poll back until then.

Nothing here touches Redis: a `Fetcher` is given a function that returns the ETag/Last-Modified
validators kept for a URL, and returns the new ones with the body (`Fetched`) for the caller to
save once what they describe has been written.
"""

from __future__ import annotations

import email.utils
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from .errors import FeedError, PayloadError, PermanentError, RateLimited, TransientError

USER_AGENT = "flood-command/0.1 (+https://github.com/; emergency operations dashboard)"


# ------------------------------------------------------------------------------------------------
# Errors and bodies
# ------------------------------------------------------------------------------------------------
def describe_http_error(exc: httpx.HTTPError, timeout: httpx.Timeout | None = None) -> FeedError:
    """An httpx exception as a FeedError with a message an operator understands."""
    url = None
    if isinstance(exc, httpx.ConnectTimeout):
        return TransientError(f"no connection within {timeout.connect if timeout else '?'} s (connect timeout)", url=url)
    if isinstance(exc, httpx.ReadTimeout):
        return TransientError(f"no answer within {timeout.read if timeout else '?'} s (read timeout)", url=url)
    if isinstance(exc, httpx.TimeoutException):
        return TransientError(f"timed out ({type(exc).__name__})", url=url)
    if isinstance(exc, httpx.ConnectError):
        return TransientError(f"cannot connect: {exc}", url=url)
    if isinstance(exc, httpx.RemoteProtocolError):
        return TransientError(f"the server broke the connection: {exc}", url=url)
    return TransientError(f"HTTP failure: {type(exc).__name__}: {exc}", url=url)


def parse_retry_after(value: str | None, now: int) -> float | None:
    """`Retry-After` as seconds from now: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if dt is None:
        return None
    return max(0.0, dt.timestamp() - now / 1000)


def body_hint(body: bytes, limit: int = 200) -> str:
    """A short, readable excerpt of an error body (JSON `reason`/`message`, an HTML title, or text)."""
    text = body[:4096].decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
        if isinstance(doc, dict):
            for k in ("reason", "message", "detail", "title", "error"):
                if isinstance(doc.get(k), str):
                    return doc[k][:limit]
    except ValueError:
        pass
    m = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
    if m:
        return " ".join(m.group(1).split())[:limit]
    return " ".join(text.split())[:limit]


def load_json(payload: bytes) -> Any:
    """Parse JSON, or raise PayloadError saying what the bytes are instead."""
    if payload.startswith(b"\xef\xbb\xbf"):
        payload = payload[3:]
    head = payload.lstrip()[:200].lower()
    if not head:
        raise PayloadError("empty body where JSON was expected")
    if head.startswith(b"<"):
        what = "an HTML page" if b"<html" in head or b"<!doctype html" in head else "XML/HTML"
        hint = body_hint(payload)
        raise PayloadError(f"expected JSON, got {what}" + (f": {hint!r}" if hint else ""))
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        if exc.pos is not None and exc.pos >= len(payload.rstrip()) - 1:
            raise PayloadError(f"truncated JSON: the body ends at byte {len(payload)} inside a value") from None
        raise PayloadError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


# ------------------------------------------------------------------------------------------------
# Retries
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter. Try `max_tries` times in one poll; the n-th wait is
    uniform in [d/2, d] with d = min(cap, base * 2**(n-1)) seconds ("equal jitter")."""

    max_tries: int = 3
    base: float = 1.0
    cap: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        d = min(self.cap, self.base * 2 ** (attempt - 1))
        return d / 2 + rng.uniform(0, d / 2)

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> RetryPolicy:
        cfg = cfg or {}
        return cls(max_tries=int(cfg.get("max_tries", 3)), base=float(cfg.get("base", 1.0)),
                   cap=float(cfg.get("cap", 30.0)))


# ------------------------------------------------------------------------------------------------
# Fetching
# ------------------------------------------------------------------------------------------------
class NotModified:
    """The answer was 304 Not Modified: nothing new since the validators we sent."""


NOT_MODIFIED = NotModified()


@dataclass
class Fetched:
    """A 2xx body and its validators (`etag`, `last_modified`; None when the answer had none)."""

    body: bytes
    validators: dict[str, str | None] = field(default_factory=dict)


class Fetcher:
    """GET for one source: conditional requests from the kept validators, retries per `retry`."""

    def __init__(self, client: httpx.Client, *, timeout: httpx.Timeout, retry: RetryPolicy,
                 clock: Callable[[], int], sleep: Callable[[float], None], rng: random.Random,
                 validators: Callable[[str], dict[str, Any] | None] = lambda _url: None) -> None:
        self.client, self.timeout, self.retry = client, timeout, retry
        self.clock, self.sleep, self.rng = clock, sleep, rng
        self.validators = validators

    def fetch_once(self, url: str, headers: dict[str, str] | None = None) -> Fetched | NotModified:
        headers = dict(headers or {})
        cached = self.validators(url)
        if cached:
            if cached.get("etag"):
                headers["If-None-Match"] = cached["etag"]
            if cached.get("last_modified"):
                headers["If-Modified-Since"] = cached["last_modified"]
        try:
            resp = self.client.get(url, headers=headers, timeout=self.timeout)
            body = resp.read()
        except httpx.HTTPError as exc:
            err = describe_http_error(exc, self.timeout)
            err.url = url
            raise err from None
        status = resp.status_code
        if status == 304:
            return NOT_MODIFIED
        if 200 <= status < 300:
            return Fetched(body, {"etag": resp.headers.get("ETag"), "last_modified": resp.headers.get("Last-Modified")})
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), self.clock())
        hint = body_hint(body)
        msg = f"HTTP {status} {resp.reason_phrase}".rstrip() + (f": {hint}" if hint else "")
        if status == 429:
            raise RateLimited(msg, status=status, retry_after=retry_after, url=url)
        if status == 408 or status >= 500:
            raise TransientError(msg, status=status, retry_after=retry_after, url=url)
        raise PermanentError(msg, status=status, url=url)

    def fetch(self, url: str, headers: dict[str, str] | None = None) -> Fetched | NotModified:
        """GET with retries: backoff with jitter between tries; Retry-After honoured."""
        policy = self.retry
        attempt = 0
        while True:
            attempt += 1
            try:
                return self.fetch_once(url, headers)
            except FeedError as exc:
                if not exc.retryable or attempt >= policy.max_tries:
                    raise
                wait = policy.delay(attempt, self.rng)
                if exc.retry_after is not None:
                    if exc.retry_after > policy.cap:
                        raise  # longer than we wait inside a poll: the next poll is held back instead
                    wait = max(wait, exc.retry_after)
                self.sleep(wait)
