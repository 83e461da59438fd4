"""Who may call what: the pure decision behind every Dash callback and every Flask route.

A `Policy` says who may call one callback or route; a `Caller` is who is asking; `decide` answers
allow, 401 (nobody signed in), 403 (not this caller) or 404 (an item the caller may not know of: the
same answer as for an item that does not exist). No Flask, no Dash, no Redis: the web app's layer
(layouts/access.py) declares the policies next to each callback and route and calls `decide` once,
before the callback or view runs (docs/security.md, "Authorization").

Deny by default: `decide(None, ...)` (nothing declared) refuses everyone, signed in or not.

- **Roles** (`ROLES`): who may call at all. `Policy(allow=("operator", "planner"))`.
- **Department**: `own_department=True` says the data belongs to departments and a department-bound
  role (`DEPARTMENT_BOUND`, today `department`) sees its own only. The callback asks, per item,
  `may_see(policy, caller, department=...)`; a refusal must look like "no such item" (no oracle).
- **Clearance** (`CLEARANCES`, lowest first): `Policy(clearance="internal")` needs a caller cleared to
  at least that level; `may_see(..., classification=...)` checks one item. A person's clearance is the
  `clearance` of their user record (command/trust/auth.py); a token's is `internal` with `read_internal`,
  else `public`; nobody signed in holds `public` (as command.trust.classification.viewer_of says).
  What a clearance shows of a record, field by field, is command/trust/classification.py.
- **Tokens** (API clients): only a policy with `tokens=True` lets one through (its scope is checked
  per path by command.trust.tokens.scope_for); pages and callbacks never take one.
- **Open** (`OPEN`): no sign-in at all (the sign-in page, /health, static files). Declared, never implied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from command.trust.auth import CLEARANCES, ROLES

DEPARTMENT_BOUND = ("department",)  # roles that see their own department's data only
TOKEN_ROLE = "token"  # command.trust.tokens.Token.api_user()


def _rank(level: str | None) -> int:
    """The level's place in CLEARANCES; an unknown or missing level is below `public`."""
    return CLEARANCES.index(level) if level in CLEARANCES else -1


@dataclass(frozen=True)
class Policy:
    """Who may call one callback or route.

    `allow`: the roles that may (an unknown role is a programming error: ValueError). `public`: no
    sign-in needed (then `allow` is ignored; use `OPEN`). `own_department`: department-bound roles see
    their own department's items only (checked per item with `may_see`). `clearance`: the least a
    caller must hold. `tokens`: API tokens may call (under /api/ only). `note`: why, for the docs.
    """

    allow: frozenset[str] = frozenset()
    public: bool = False
    own_department: bool = False
    clearance: str | None = None
    tokens: bool = False
    note: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        unknown = set(self.allow) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown role(s) {sorted(unknown)} (roles: {', '.join(ROLES)})")
        if self.clearance is not None and self.clearance not in CLEARANCES:
            raise ValueError(f"unknown clearance {self.clearance!r} (one of {', '.join(CLEARANCES)})")
        if not self.public and not self.allow and not self.tokens:
            raise ValueError("a policy that allows nobody: name the roles (allow=...)")

    @classmethod
    def of(cls, allow: Iterable[str] | str, **kw: Any) -> Policy:
        roles = (allow,) if isinstance(allow, str) else tuple(allow)
        return cls(allow=frozenset(roles), **kw)

    def describe(self) -> str:
        """One line for tables and messages: `open`, or the roles and conditions."""
        if self.public:
            return "open (no sign-in)"
        parts = [", ".join(r for r in ROLES if r in self.allow) or "no person"]
        if self.own_department:
            parts.append("own department's items")
        if self.clearance:
            parts.append(f"clearance {self.clearance}")
        if self.tokens:
            parts.append("API tokens (by scope)")
        return "; ".join(parts)


OPEN = Policy(public=True, note="no sign-in")
SIGNED_IN = Policy(allow=frozenset(ROLES), note="anyone signed in")


@dataclass(frozen=True)
class Caller:
    """Who is asking: a role (None: nobody signed in; `token` for an API token), their department,
    their clearance, a token's scopes."""

    role: str | None = None
    department: str = ""
    clearance: str = "public"
    scopes: tuple[str, ...] = ()
    username: str = ""

    @classmethod
    def anonymous(cls) -> Caller:
        return cls()

    @classmethod
    def of(cls, user: Mapping[str, Any] | None) -> Caller:
        """From a session user (`User.public()`) or a token's `api_user()`; None: nobody."""
        if not user or not user.get("role"):
            return cls()
        role = str(user["role"])
        scopes = tuple(str(user.get("scopes") or "").split()) if role == TOKEN_ROLE else ()
        if role == TOKEN_ROLE:
            clearance = "internal" if "read_internal" in scopes else "public"
        else:
            clearance = str(user.get("clearance") or "")
            clearance = clearance if clearance in CLEARANCES else "public"
        return cls(role=role, department=str(user.get("department") or ""), clearance=clearance, scopes=scopes,
                   username=str(user.get("username") or ""))

    @property
    def signed_in(self) -> bool:
        return bool(self.role)


@dataclass(frozen=True)
class Decision:
    """`allowed`, else the HTTP `status` (401, 403, 404) and a short `reason` safe to show the caller."""

    allowed: bool
    status: int = 200
    reason: str = ""

    def __bool__(self) -> bool:
        return self.allowed


ALLOW = Decision(True)


def decide(policy: Policy | None, caller: Caller) -> Decision:
    """May `caller` call what `policy` guards? Nothing declared: nobody may."""
    if policy is None:
        return Decision(False, 403, "no access policy is declared for this")
    if policy.public:
        return ALLOW
    if not caller.signed_in:
        return Decision(False, 401, "not signed in")
    if caller.role == TOKEN_ROLE:
        if not policy.tokens:
            return Decision(False, 403, "an API token may not call this")
    elif caller.role not in policy.allow:
        return Decision(False, 403, f"role {caller.role} may not call this")
    if policy.clearance and _rank(caller.clearance) < _rank(policy.clearance):
        return Decision(False, 403, f"this needs clearance {policy.clearance}")
    return ALLOW


def may_see(policy: Policy, caller: Caller, *, department: str | None = None,
            classification: str | None = None) -> bool:
    """May `caller` see one item (of `department`, classified `classification`) through a callback or
    route of `policy`? The caller of this answers a refusal exactly as it answers an unknown item."""
    if not decide(policy, caller):
        return False
    if (policy.own_department and department is not None and caller.role in DEPARTMENT_BOUND
            and department != caller.department):
        return False
    return classification is None or _rank(caller.clearance) >= _rank(classification)


def department_scope(policy: Policy, caller: Caller) -> str | None:
    """The one department whose items `caller` sees through `policy`, or None for every department."""
    if policy.own_department and caller.role in DEPARTMENT_BOUND:
        return caller.department
    return None
