"""Two-factor sign-in (TOTP and recovery codes): enrolment on the command line, sign-in, no replay."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
import yaml

from command.config import SAMPLE_DATA
from command.trust import totp
from command.trust.auth import load_users, save_user

from .test_signin import basic, cli, make_app, sign_in, signed_in


@pytest.fixture
def app(redis_url, tmp_path, r):
    return make_app(redis_url, tmp_path)


@pytest.fixture
def client(app):
    return app.server.test_client()


def enrol(cli_env, name="duty", role="operator", department="emergency_management", password="duty-password-1"):
    """`users add --totp` against the test app's data folder: (secret, recovery codes, output)."""
    out = cli(cli_env, "users", "add", name, "--department", department, "--role", role, "--totp",
              stdin=password + "\n").stdout
    uri = re.search(r"otpauth://totp/\S+", out).group(0)
    secret = parse_qs(urlsplit(uri).query)["secret"][0]
    codes = re.findall(r"^  ([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})$", out, re.M)
    return secret, codes, out


def code_for(secret: str, at: float | None = None) -> str:
    return pyotp.TOTP(secret).at(at or time.time())


def test_enrolment_prints_the_uri_and_recovery_codes_once(cli_env, tmp_path, r):
    from command.keys import LIVE, Keys
    from command.trust.audit import entries

    secret, codes, out = enrol(cli_env)
    assert [e["action"] for e in entries(r, Keys(LIVE))][:2] == ["totp_enrolled", "user_added"]
    assert secret not in str(entries(r, Keys(LIVE)))
    assert "otpauth://totp/Flood%20command:duty?secret=" in out and "issuer=Flood%20command" in out
    assert len(codes) == 10 and len(set(codes)) == 10
    stored = load_users(tmp_path / "var" / "users.yaml")["duty"]
    assert stored.totp_secret == secret
    text = (tmp_path / "var" / "users.yaml").read_text()
    assert not any(c in text for c in codes)  # kept hashed
    assert sorted(stored.recovery_codes) == sorted(totp.hash_recovery_code(c) for c in codes)


@pytest.mark.parametrize("role", ["operator", "planner", "admin"])
def test_those_roles_are_not_made_without_totp(cli_env, role):
    proc = cli(cli_env, "users", "add", "nope", "--department", "emergency_management", "--role", role,
               stdin="long-enough-1\n", check=False)
    assert proc.returncode == 2 and "needs two-factor sign-in: add --totp" in proc.stderr


def test_a_totp_user_cannot_sign_in_without_a_valid_code(client, cli_env):
    secret, _, _ = enrol(cli_env)
    assert sign_in(client, "duty", "duty-password-1").status_code == 401
    assert sign_in(client, "duty", "duty-password-1", code="000000").status_code == 401
    assert sign_in(client, "duty", "wrong-password", code=code_for(secret)).status_code == 401
    assert not signed_in(client)
    ok = sign_in(client, "duty", "duty-password-1", code=code_for(secret))
    assert ok.status_code == 302 and ok.headers["Location"] == "/"
    assert signed_in(client)


def test_the_wrong_code_message_does_not_say_which_factor_was_wrong(client, cli_env):
    enrol(cli_env)
    no_code = sign_in(client, "duty", "duty-password-1").data
    bad_password = sign_in(client, "duty", "not-the-password").data
    assert b"Wrong user name or password (or two-factor code)." in no_code and b"Wrong user name or password (or two-factor code)." in bad_password


def test_a_code_is_taken_once(app, client, cli_env):
    secret, _, _ = enrol(cli_env)
    code = code_for(secret)
    assert sign_in(client, "duty", "duty-password-1", code=code).status_code == 302
    thief = app.server.test_client()
    assert sign_in(thief, "duty", "duty-password-1", code=code).status_code == 401
    # nor an older one still inside the drift window
    assert sign_in(thief, "duty", "duty-password-1", code=code_for(secret, time.time() - 30)).status_code == 401


def test_codes_from_the_neighbouring_steps_are_taken_but_not_older(r):
    secret = totp.new_secret()
    now = 1_800_000_015.0
    assert totp.matching_step(secret, code_for(secret, now - 30), now) == int(now // 30) - 1
    assert totp.matching_step(secret, code_for(secret, now + 30), now) == int(now // 30) + 1
    assert totp.matching_step(secret, code_for(secret, now - 90), now) is None
    assert totp.verify_code(r, "u", secret, code_for(secret, now), now)
    assert not totp.verify_code(r, "u", secret, code_for(secret, now - 30), now)  # older than the one used


def test_a_recovery_code_works_once(app, client, cli_env, tmp_path):
    _, codes, _ = enrol(cli_env)
    assert sign_in(client, "duty", "duty-password-1", code=codes[0].upper()).status_code == 302
    other = app.server.test_client()
    assert sign_in(other, "duty", "duty-password-1", code=codes[0]).status_code == 401
    assert len(load_users(tmp_path / "var" / "users.yaml")["duty"].recovery_codes) == 9
    assert sign_in(other, "duty", "duty-password-1", code=codes[1].replace("-", " ")).status_code == 302


def test_a_password_change_keeps_the_second_factor(cli_env, tmp_path):
    secret, _, _ = enrol(cli_env)
    out = cli(cli_env, "users", "add", "duty", "--department", "emergency_management", "--role", "operator",
              stdin="another-password-2\n").stdout
    assert "two-factor sign-in: kept" in out
    assert load_users(tmp_path / "var" / "users.yaml")["duty"].totp_secret == secret


def test_an_account_that_needs_totp_and_has_none_cannot_sign_in(client, tmp_path):
    """An operator written into the file by hand, without TOTP and not a demo account."""
    path = tmp_path / "var" / "users.yaml"
    doc = yaml.safe_load(path.read_text())
    demo_operator = next(u for u in doc["users"] if u["username"] == "operator")
    doc["users"].append({**demo_operator, "username": "handmade", "demo": False})
    path.write_text(yaml.safe_dump(doc))
    resp = sign_in(client, "handmade")
    assert resp.status_code == 403 and b"must sign in with two factors" in resp.data
    assert not signed_in(client)


def test_demo_accounts_sign_in_without_a_code(client):
    for name in ("operator", "planner", "admin", "auditor", "fire"):
        assert load_users(SAMPLE_DATA / "users.yaml")[name].demo
        assert sign_in(client, name).status_code == 302, name


def test_a_totp_account_cannot_use_http_basic(client, cli_env):
    enrol(cli_env, "duty2", role="department", department="police")
    assert client.get("/api/live/geojson/zones", headers=basic("duty2", "duty-password-1")).status_code == 401


def test_enrolling_anew_ends_the_old_sessions(client, cli_env):
    secret, _, _ = enrol(cli_env)
    sign_in(client, "duty", "duty-password-1", code=code_for(secret))
    assert signed_in(client)
    enrol(cli_env)  # a new authenticator (the old phone was lost)
    assert not signed_in(client)


def test_save_user_keeps_demo_off_for_new_accounts(tmp_path):
    saved = save_user(tmp_path / "u.yaml", username="desk1", password="long-enough-1", department="police")
    assert not saved.user.demo and saved.enrolment is None and not saved.user.has_totp
