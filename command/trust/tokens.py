"""API tokens for other systems, instead of a person's password over HTTP Basic.

`python -m command tokens add NAME --scope S [--scope ...] [--department D]` prints a token once;
other systems send it as `Authorization: Bearer <token>`. Only its SHA-256 is kept, in
`<data_dir>/tokens.yaml` (mode 0600, written whole under a lock, read again when it changes, so a
revoked token stops working at its next request in every worker).

Scopes (`SCOPES`), and what each allows (`scope_for` maps a request to the scope it needs):

- `read_public`: what is published anyway: alerts (Atom, CAP), stations, zones, alerts and warnings as GeoJSON;
- `read_internal`: every other read under /api/ (resources, and whatever is added later), and read_public;
- `submit_incidents`: `POST /api/<ns>/incidents` (as the token's department), nothing else.

A request no scope names (any other method or path) is refused to every token: new routes are closed
to tokens until they are given a scope here.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from command.errors import InvalidInput
from command.trust.auth import load_departments, locked, write_private

SCOPES = ("read_public", "read_internal", "submit_incidents")
IMPLIED = {"read_internal": {"read_public"}}  # a scope also grants these
TOKEN_PREFIX = "ecd_"
PUBLIC_LAYERS = ("stations", "zones", "alerts", "warnings")
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{2,40}")
_NS = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_PUBLIC_RE = re.compile(rf"/api/{_NS}/(alerts\.atom|cap/[^/]+\.xml|geojson/({'|'.join(PUBLIC_LAYERS)})(\.geojson)?)")
_INTAKE_RE = re.compile(rf"/api/{_NS}/incidents")


class TokenError(InvalidInput):
    """A token that cannot be made or found; the message says why."""


@dataclass(frozen=True)
class Token:
    name: str
    scopes: tuple[str, ...]
    department: str
    created: int  # epoch ms

    def allows(self, scope: str | None) -> bool:
        if scope is None:
            return False
        granted = set(self.scopes)
        for s in self.scopes:
            granted |= IMPLIED.get(s, set())
        return scope in granted

    def api_user(self) -> dict[str, str]:
        """Who the token acts as in the app (an incident it submits belongs to its department)."""
        return {"username": f"token:{self.name}", "name": self.name, "department": self.department,
                "role": "token", "scopes": " ".join(self.scopes)}


def scope_for(method: str, path: str) -> str | None:
    """The scope a request needs, or None when no token may make it."""
    method = method.upper()
    if method in ("GET", "HEAD"):
        if _PUBLIC_RE.fullmatch(path):
            return "read_public"
        if path.startswith("/api/"):
            return "read_internal"
        return None
    if method == "POST" and _INTAKE_RE.fullmatch(path):
        return "submit_incidents"
    return None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokensFile:
    """The tokens of one file, by hash, read again whenever the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._by_hash: dict[str, Token] = {}

    def _load(self) -> dict[str, Token]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._by_hash = {e["hash"]: _token_of(e) for e in _entries(self.path)}
            self._stamp = stamp
        return self._by_hash

    def find(self, token: str) -> Token | None:
        """The token this secret is, or None. Looked up by its SHA-256, so no secret is compared."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        return self._load().get(token_hash(token))


def _token_of(e: dict) -> Token:
    return Token(e["name"], tuple(e["scopes"]), e["department"], int(e.get("created", 0)))


def _entries(path: Path) -> list[dict]:
    if not path.exists():
        return []
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return list(doc.get("tokens") or [])


def _save(path: Path, entries: list[dict]) -> None:
    write_private(path, yaml.safe_dump({"tokens": entries}, sort_keys=False))


def add_token(path: Path, name: str, scopes: list[str], department: str = "emergency_management") -> tuple[Token, str]:
    """Make a token: (its record, the secret to hand over once)."""
    if not _NAME_RE.fullmatch(name):
        raise TokenError("name: 2-40 letters, digits, '.', '_' or '-'")
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise TokenError(f"scope must be one or more of {', '.join(SCOPES)}" + (f" (not {bad[0]!r})" if bad else ""))
    departments = load_departments()
    if department not in departments:
        raise TokenError(f"unknown department {department!r} (one of {', '.join(sorted(departments))})")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    entry = {"name": name, "hash": token_hash(secret), "scopes": sorted(set(scopes), key=SCOPES.index),
             "department": department, "created": int(time.time() * 1000)}
    with locked(path):
        entries = _entries(path)
        if any(e["name"] == name for e in entries):
            raise TokenError(f"a token named {name!r} exists: revoke it first")
        _save(path, [*entries, entry])
    return _token_of(entry), secret


def list_tokens(path: Path) -> list[Token]:
    return [_token_of(e) for e in _entries(path)]


def revoke_token(path: Path, name: str) -> bool:
    with locked(path):
        entries = _entries(path)
        kept = [e for e in entries if e["name"] != name]
        if len(kept) == len(entries):
            return False
        _save(path, kept)
    return True
