"""Sign-in and its defences (docs/security.md points at these tests)."""

from __future__ import annotations

import pytest

from command.config import SAMPLE_DATA
from command.trust.auth import ROLES, authenticate, load_users

from .test_web import app, client, sign_in  # noqa: F401 - fixtures


def test_admin_and_auditor_roles_and_their_demo_accounts(client):  # noqa: F811
    assert {"admin", "auditor"} <= set(ROLES)
    users = load_users(SAMPLE_DATA / "users.yaml")
    assert users["admin"].role == "admin" and users["auditor"].role == "auditor"
    assert all(u.demo for u in users.values())
    assert authenticate(users, "auditor", "flood-demo") is not None
    assert sign_in(client, "auditor").headers["Location"] == "/audit"
    assert sign_in(client, "admin").headers["Location"] == "/admin"


@pytest.mark.parametrize("role", ["admin", "auditor"])
def test_users_add_takes_the_new_roles(tmp_path, role):
    import subprocess
    import sys

    from .conftest import ROOT

    path = tmp_path / "users.yaml"
    proc = subprocess.run([sys.executable, "-m", "command", "users", "add", f"new-{role}", "--department",
                           "emergency_management", "--role", role, *(["--totp"] if role == "admin" else []), "--file", str(path)],
                          input="long-enough-1\n", text=True, capture_output=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert load_users(path)[f"new-{role}"].role == role
