"""Users, departments and passwords. Users live in a YAML file; passwords are stored hashed (scrypt).

Roles: `operator` (command centre: map, dispatch, every task), `department` (its own tasks only),
`planner` (exercises), `admin` (users, unlocking the sign-in throttle, API tokens) and `auditor`
(reads the audit trail, changes nothing). A department user can never read or change another
department's task: the check is in `command.ops.dispatch`, on the server, whatever the request says.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError, field_validator
from werkzeug.security import check_password_hash, generate_password_hash

from command.config import SAMPLE_DATA
from command.errors import InvalidInput

ROLES = ("operator", "department", "planner", "admin", "auditor")
_USERNAME_RE = re.compile(r"[A-Za-z0-9_.-]{2,40}")  # fullmatch: `$` would let a trailing newline in
# A fixed hash to compare against when the user does not exist, so timing does not reveal names.
_DUMMY_HASH = generate_password_hash("not-a-user")


class User(BaseModel):
    username: str
    name: str = ""
    department: str
    role: str = "department"
    password_hash: str
    demo: bool = False  # a sample account (sample_data/users.yaml): exempt from two-factor sign-in

    @field_validator("role")
    @classmethod
    def _role(cls, v: str) -> str:
        if v not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        return v

    def public(self) -> dict[str, str]:
        return {"username": self.username, "name": self.name or self.username, "department": self.department,
                "role": self.role}


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


def ensure_users_file(path: Path, seed: Path = SAMPLE_DATA / "users.yaml") -> Path:
    """First start: copy the demo accounts so the sample works out of the box (change them for real use)."""
    if not path.exists() and seed.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(seed, path)
    return path


def authenticate(users: dict[str, User], username: str, password: str) -> User | None:
    u = users.get(username)
    if u is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    return u if check_password_hash(u.password_hash, password) else None


def add_user(path: Path, *, username: str, password: str, department: str, role: str = "department",
             name: str = "", departments: dict[str, Department] | None = None) -> User:
    """Add (or replace) a user, writing the file atomically."""
    if not _USERNAME_RE.fullmatch(username):
        raise UsersError("username: 2-40 letters, digits, '.', '_' or '-'")
    if len(password) < 8:
        raise UsersError("password: at least 8 characters")
    departments = departments if departments is not None else load_departments()
    if department not in departments:
        raise UsersError(f"unknown department {department!r} (one of {', '.join(sorted(departments))})")
    if role not in ROLES:
        raise UsersError(f"role must be one of {', '.join(ROLES)}")
    users = load_users(path)
    user = User(username=username, name=name, department=department, role=role,
                password_hash=generate_password_hash(password))
    users[username] = user
    path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump({"users": [u.model_dump() for u in users.values()]}, allow_unicode=True, sort_keys=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".users-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(body)
    os.replace(tmp, path)
    return user
