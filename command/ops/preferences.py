"""A user's own page settings, kept on the server by user name (so they follow the user to another
browser or a new shift's screen): whether a new alert sounds, from which level, and whether the browser
may show a desktop notification.

`parse` is pure: it takes whatever a request sent and answers the settings or an `InvalidInput` naming
each bad field (nothing is stored then). `load` and `save` are the Redis edge (one hash per user,
`command.keys.preferences`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import redis

from command.errors import InvalidInput
from command.keys import preferences as prefs_key

LEVELS = ("yellow", "orange", "red")  # the levels an alert sound can start from, lowest first
_USERNAME_RE = re.compile(r"[A-Za-z0-9_.-]{2,40}")  # as command/trust/auth.py accepts them


@dataclass(frozen=True)
class Preferences:
    sound: bool = True  # a new alert at `level` or above plays the alert sound
    level: str = "red"
    notify: bool = False  # also a desktop notification (the browser asks the user first)


DEFAULT = Preferences()
FIELDS = tuple(asdict(DEFAULT))


def _flag(v: Any) -> bool | None:
    """A boolean as JSON sends it, or as Redis keeps it ("1"/"0"); None when it is neither."""
    if isinstance(v, bool):
        return v
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if v in ("1", "0"):
        return v == "1"
    return None


def parse(values: Mapping[str, Any], base: Preferences = DEFAULT) -> Preferences:
    """`base` with the fields `values` gives, each checked; unknown fields and bad values are refused."""
    if not isinstance(values, Mapping):
        raise InvalidInput("must be an object of settings")
    errors: dict[str, str] = {}
    out = asdict(base)
    for k, v in values.items():
        if k not in FIELDS:
            errors[str(k)[:40]] = "not a setting"
        elif k == "level":
            lv = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
            if lv not in LEVELS:
                errors[k] = f"must be one of {', '.join(LEVELS)}"
            else:
                out[k] = lv
        else:
            flag = _flag(v)
            if flag is None:
                errors[k] = "must be true or false"
            else:
                out[k] = flag
    if errors:
        raise InvalidInput(errors)
    return Preferences(**out)


def _key(username: str) -> str:
    if not isinstance(username, str) or not _USERNAME_RE.fullmatch(username):
        raise InvalidInput("not a user name", field="username")
    return prefs_key(username)


def load(r: redis.Redis, username: str) -> Preferences:
    """The user's settings; the defaults for what was never set (or no longer reads as a setting)."""
    stored = {k.decode(): v for k, v in r.hgetall(_key(username)).items()}
    try:
        return parse({k: v for k, v in stored.items() if k in FIELDS})
    except InvalidInput:  # written by an older version: start again from the defaults
        return DEFAULT


def save(r: redis.Redis, username: str, values: Mapping[str, Any]) -> Preferences:
    """Check `values` over the user's current settings and store the result; InvalidInput stores nothing."""
    prefs = parse(values, load(r, username))
    r.hset(_key(username), mapping={"sound": int(prefs.sound), "level": prefs.level, "notify": int(prefs.notify)})
    return prefs
