"""Users, departments and passwords. Users live in a YAML file; passwords are stored hashed (scrypt).

Roles: `operator` (command centre: map, dispatch, every task), `department` (its own tasks only),
`planner` (exercises), `admin` (users, unlocking the sign-in throttle, API tokens) and `auditor`
(reads the audit trail, changes nothing). A department user can never read or change another
department's task: the check is in `command.ops.dispatch`, on the server, whatever the request says.

Each user has a `clearance` (`CLEARANCES`: public, internal, secret; `DEFAULT_CLEARANCE` when the file
names none): what of the graded data (sample_data/classification.yaml) they see whole; the rest is
masked or left out (command/trust/classification.py). A change applies at the user's next request.

Two-factor sign-in (command/trust/totp.py) is required for `admin`, `operator` and `planner` accounts
that are not demo accounts (`demo: true`, sample_data/users.yaml only): `add_user` refuses to make one
without TOTP, and such an account without TOTP cannot sign in (`second_factor_problem`).

The file is written whole (a temporary file, then renamed), mode 0600, under an exclusive lock
(`<file>.lock`) so the CLI and the web workers (which use up recovery codes) never lose each other's
writes. Readers take the file again whenever it changes (`UsersFile`), so a user removed from it, or
whose password changed, loses access at their next request.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import stat
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError, field_validator
from werkzeug.security import check_password_hash, generate_password_hash

from command.config import SAMPLE_DATA
from command.errors import InvalidInput
from command.trust import totp

ROLES = ("operator", "department", "planner", "admin", "auditor")
CLEARANCES = ("public", "internal", "secret")  # lowest first (command/trust/classification.py)
DEFAULT_CLEARANCE = "internal"  # an account whose record names none: secret is always granted by name
TOTP_ROLES = ("admin", "operator", "planner")  # must sign in with a second factor (demo accounts aside)
_USERNAME_RE = re.compile(r"[A-Za-z0-9_.-]{2,40}")  # fullmatch: `$` would let a trailing newline in
# A fixed hash to compare against when the user does not exist, so timing does not reveal names.
_DUMMY_HASH = generate_password_hash("not-a-user")
FILE_MODE = 0o600


class User(BaseModel):
    username: str
    name: str = ""
    department: str
    role: str = "department"
    clearance: str = DEFAULT_CLEARANCE
    password_hash: str
    demo: bool = False  # a sample account (sample_data/users.yaml): exempt from two-factor sign-in
    totp_secret: str = ""  # base32; empty: no TOTP
    recovery_codes: list[str] = []  # SHA-256 of each unused recovery code

    @field_validator("role")
    @classmethod
    def _role(cls, v: str) -> str:
        if v not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        return v

    @field_validator("clearance")
    @classmethod
    def _clearance(cls, v: str) -> str:
        if v not in CLEARANCES:
            raise ValueError(f"clearance must be one of {', '.join(CLEARANCES)}")
        return v

    def public(self) -> dict[str, str]:
        return {"username": self.username, "name": self.name or self.username, "department": self.department,
                "role": self.role, "clearance": self.clearance}

    @property
    def has_totp(self) -> bool:
        return bool(self.totp_secret)

    @property
    def needs_totp(self) -> bool:
        return self.role in TOTP_ROLES and not self.demo

    def fingerprint(self) -> str:
        """Changes whenever what a session was granted on changes: password, second factor, role,
        department. A session remembers it and ends when it no longer matches."""
        basis = "\n".join((self.password_hash, self.totp_secret, self.role, self.department))
        return hashlib.sha256(basis.encode()).hexdigest()[:32]

    def stored(self) -> dict:
        """The user as written to the file (defaults left out, so demo accounts stay short)."""
        doc = self.model_dump()
        for k in ("demo", "totp_secret", "recovery_codes"):
            if not doc[k]:
                del doc[k]
        return doc


class Department(BaseModel):
    id: str
    name: str
    name_zh: str = ""


class UsersError(InvalidInput):
    """A users file or a new user that cannot be used; the message says why."""


def load_departments(path: Path = SAMPLE_DATA / "departments.yaml") -> dict[str, Department]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    items = doc.get("departments", doc) if isinstance(doc, dict) else doc
    return {d["id"]: Department.model_validate(d) for d in items}


def load_users(path: Path) -> dict[str, User]:
    if not path.exists():
        return {}
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UsersError(f"{path}: invalid YAML: {exc}") from None
    users = {}
    for i, raw in enumerate(doc.get("users") or [], 1):
        try:
            u = User.model_validate(raw)
        except ValidationError as exc:
            raise UsersError(f"{path}: user #{i}: {exc.errors()[0]['msg']}") from None
        users[u.username] = u
    return users


class UsersFile:
    """The users of one file, read again whenever the file changes (one `stat` per call otherwise)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._users: dict[str, User] = {}

    def users(self) -> dict[str, User]:
        try:
            st = self.path.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            return {}
        with self._lock:
            if stamp != self._stamp:
                self._users, self._stamp = load_users(self.path), stamp
            return self._users

    def get(self, username: str) -> User | None:
        return self.users().get(username)


def ensure_users_file(path: Path, seed: Path = SAMPLE_DATA / "users.yaml") -> Path:
    """First start: copy the demo accounts so the sample works out of the box (change them for real use).
    The copy, like every users file this code writes, can be read by its owner only; a file found
    readable by others is tightened."""
    if not path.exists() and seed.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, seed.read_text(encoding="utf-8"), exclusive=True)
    elif path.exists() and stat.S_IMODE(path.stat().st_mode) & 0o077:
        with contextlib.suppress(PermissionError):
            path.chmod(FILE_MODE)
    return path


def write_private(path: Path, body: str, exclusive: bool = False) -> None:
    """Write `body` to `path` through a 0600 temporary file and a rename (or a link when `exclusive`:
    the first of several starting processes wins, the others keep its file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the users file (a `.lock` file beside it) for a read-change-write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def save_users(path: Path, users: dict[str, User]) -> None:
    """Write the whole file (call under `locked(path)`)."""
    body = yaml.safe_dump({"users": [u.stored() for u in users.values()]}, allow_unicode=True, sort_keys=False)
    write_private(path, body)


def authenticate(users: dict[str, User], username: str, password: str) -> User | None:
    u = users.get(username)
    if u is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    return u if check_password_hash(u.password_hash, password) else None


# ---- second factor -----------------------------------------------------------------------------------
def second_factor_problem(r, users_path: Path, user: User, code: str) -> str | None:
    """None when `user` (whose password was right) may sign in with `code`; else why not:
    "totp_required" (the account must have TOTP and has none) or "code" (missing or wrong, or used).
    A TOTP code is used up in Redis; a recovery code is removed from the file."""
    if not user.has_totp:
        return "totp_required" if user.needs_totp else None
    code = (code or "").strip()
    if not code:
        return "code"
    if totp.verify_code(r, user.username, user.totp_secret, code):
        return None
    if totp.looks_like_recovery_code(code) and use_recovery_code(users_path, user.username, code):
        return None
    return "code"


def use_recovery_code(path: Path, username: str, code: str) -> bool:
    """Use up one recovery code of `username`: True when it was one (it is gone from the file now)."""
    h = totp.hash_recovery_code(code)
    with locked(path):
        users = load_users(path)
        u = users.get(username)
        if u is None or h not in u.recovery_codes:
            return False
        users[username] = u.model_copy(update={"recovery_codes": [c for c in u.recovery_codes if c != h]})
        save_users(path, users)
    return True


# ---- changing users ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Enrolment:
    """What a new TOTP enrolment shows once: the secret (and its URI) and the recovery codes."""

    secret: str
    uri: str
    recovery_codes: list[str]


@dataclass(frozen=True)
class Saved:
    user: User
    replaced: User | None  # the user it replaced (a password change), if any
    enrolment: Enrolment | None


def save_user(path: Path, *, username: str, password: str, department: str, role: str = "department",
              name: str = "", totp_enrol: bool = False, clearance: str | None = None,
              departments: dict[str, Department] | None = None) -> Saved:
    """Add or replace a user, writing the file atomically. A replaced user keeps their TOTP unless
    `totp_enrol` makes a new one, and their clearance unless `clearance` names one; a role that needs
    TOTP is refused without one."""
    if not _USERNAME_RE.fullmatch(username):
        raise UsersError("username: 2-40 letters, digits, '.', '_' or '-'")
    if len(password) < 8:
        raise UsersError("password: at least 8 characters")
    departments = departments if departments is not None else load_departments()
    if department not in departments:
        raise UsersError(f"unknown department {department!r} (one of {', '.join(sorted(departments))})")
    if role not in ROLES:
        raise UsersError(f"role must be one of {', '.join(ROLES)}")
    if clearance is not None and clearance not in CLEARANCES:
        raise UsersError(f"clearance must be one of {', '.join(CLEARANCES)}")
    with locked(path):
        users = load_users(path)
        old = users.get(username)
        secret, codes = (old.totp_secret, old.recovery_codes) if old and old.has_totp else ("", [])
        enrolment = None
        if totp_enrol:
            plain = totp.new_recovery_codes()
            secret, codes = totp.new_secret(), [totp.hash_recovery_code(c) for c in plain]
            enrolment = Enrolment(secret, totp.provisioning_uri(secret, username), plain)
        if role in TOTP_ROLES and not secret:
            raise UsersError(f"role {role} needs two-factor sign-in: add --totp")
        clearance = clearance or (old.clearance if old else DEFAULT_CLEARANCE)
        user = User(username=username, name=name, department=department, role=role, clearance=clearance,
                    password_hash=generate_password_hash(password), totp_secret=secret, recovery_codes=codes)
        users[username] = user
        save_users(path, users)
    return Saved(user, old, enrolment)


def add_user(path: Path, *, username: str, password: str, department: str, role: str = "department",
             name: str = "", departments: dict[str, Department] | None = None, totp_enrol: bool = False,
             clearance: str | None = None) -> User:
    """Add (or replace) a user, writing the file atomically (`save_user` says more)."""
    return save_user(path, username=username, password=password, department=department, role=role, name=name,
                     totp_enrol=totp_enrol, clearance=clearance, departments=departments).user


def remove_user(path: Path, username: str) -> User | None:
    """Remove a user from the file; returns them (None when there was no such user)."""
    with locked(path):
        users = load_users(path)
        gone = users.pop(username, None)
        if gone is not None:
            save_users(path, users)
    return gone
