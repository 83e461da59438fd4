"""Sign-in and its defences: the findings of the security review, each with the request that showed it,
and the roles (docs/security.md points at these tests; two-factor sign-in and API tokens are in
tests/test_signin_totp.py and tests/test_signin_tokens.py)."""

from __future__ import annotations

import base64
import os
import re
import stat
import subprocess
import sys
import threading
import time

import pytest
import yaml

from command.config import SAMPLE_DATA, Settings
from command.keys import LIVE, Keys, address_failures, login_failures, session
from command.trust.auth import ROLES, authenticate, ensure_users_file, load_users
from command.trust.throttle import MAX_DELAY_S, Throttle, Throttled, address_of, delay_s

from .conftest import ROOT


# ---- helpers (tests/test_signin_*.py import them) -----------------------------------------------------------
def make_app(redis_url, tmp_path):
    """The web app on the test Redis, its data folder tmp_path/var (the `cli_env` fixture's too)."""
    from app import create_app

    return create_app(Settings(data_dir=tmp_path / "var"), redis_url=redis_url)


@pytest.fixture
def app(redis_url, tmp_path, r):
    return make_app(redis_url, tmp_path)


@pytest.fixture
def client(app):
    return app.server.test_client()


def sign_in(client, user="operator", password="flood-demo", **form):
    return client.post("/login", data={"username": user, "password": password, **form})


def basic(user="operator", password="flood-demo"):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def from_address(addr: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": addr}}


def cli(env, *args, stdin="", check=True):
    proc = subprocess.run([sys.executable, "-m", "command", *args], input=stdin, text=True, capture_output=True,
                          cwd=ROOT, env=env, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def session_cookie(client):
    cookie = client.get_cookie("ecd_session")
    return cookie.value if cookie else None


def signed_in(client) -> bool:
    """Does the client's session still open a page?"""
    return client.get("/").status_code == 200


# ---- 7. roles ----------------------------------------------------------------------------------------
def test_admin_and_auditor_roles_and_their_demo_accounts(client):
    assert {"admin", "auditor"} <= set(ROLES)
    users = load_users(SAMPLE_DATA / "users.yaml")
    assert users["admin"].role == "admin" and users["auditor"].role == "auditor"
    assert all(u.demo for u in users.values())
    assert authenticate(users, "auditor", "flood-demo") is not None
    assert sign_in(client, "auditor").headers["Location"] == "/audit"
    assert sign_in(client, "admin").headers["Location"] == "/admin"


def test_users_add_takes_the_new_roles(cli_env, tmp_path):
    path = tmp_path / "users.yaml"
    cli(cli_env, "users", "add", "new-auditor", "--department", "emergency_management", "--role", "auditor",
        "--file", str(path), stdin="long-enough-1\n")
    cli(cli_env, "users", "add", "new-admin", "--department", "emergency_management", "--role", "admin",
        "--totp", "--file", str(path), stdin="long-enough-1\n")
    users = load_users(path)
    assert users["new-auditor"].role == "auditor" and users["new-admin"].role == "admin"


def test_auditor_and_admin_change_nothing_over_the_api(client, r):
    from command.scenarios.replay import run_replay

    from .conftest import SCENARIOS

    ns = run_replay(r, SCENARIOS / "rule_threshold").namespace
    incident = {"id": "CAD-9", "time": "2026-07-01T02:00:00+08:00", "category": "flooding", "lat": 30.05,
                "lon": 114.05}
    for who in ("auditor", "admin"):
        assert client.get(f"/api/{ns}/geojson/stations", headers=basic(who)).status_code == 200
        assert client.post(f"/api/{ns}/incidents", json=incident, headers=basic(who)).status_code == 403
    assert client.post(f"/api/{ns}/incidents", json=incident, headers=basic("fire")).status_code == 201


def test_the_admin_page_is_for_admins_and_its_forms_need_the_csrf_token(client, r):
    sign_in(client, "fire")
    assert client.get("/admin").status_code == 403
    for _ in range(6):
        sign_in(client, "planner", "wrong")
    sign_in(client, "admin")
    page = client.get("/admin")
    assert page.status_code == 200 and b'data-user="planner"' in page.data
    token = re.search(rb'name="csrf" value="([^"]+)"', page.data).group(1).decode()
    assert client.post("/admin/unlock", data={"name": "planner"}).status_code == 403  # no token
    assert client.post("/admin/unlock", data={"name": "planner", "csrf": "forged"}).status_code == 403
    assert r.exists(login_failures("planner"))
    assert client.post("/admin/unlock", data={"name": "planner", "csrf": token}).status_code == 302
    assert not r.exists(login_failures("planner"))


# ---- 1. reflected XSS on /login ---------------------------------------------------------------------------
XSS = '"><script>alert(document.domain)</script>'


def test_login_page_escapes_everything_it_echoes(client):
    page = client.get("/login", query_string={"lang": XSS, "next": "/" + XSS})
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and "<script>" not in body
    assert 'action="/login?lang=en' in body  # an unknown language is not echoed: English
    failed = client.post("/login?lang=zh", data={"username": XSS, "password": "x"})
    text = failed.get_data(as_text=True)
    assert failed.status_code == 401 and "<script>" not in text and "&lt;script&gt;" in text
    assert 'lang="zh-CN"' in text and "用户名" in text


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_login_page_takes_the_known_languages(client, lang):
    body = client.get(f"/login?lang={lang}").get_data(as_text=True)
    assert f'action="/login?lang={lang}"' in body and 'id="login-code"' in body


# ---- 2. one throttle for every way in, before the expensive hash ------------------------------------------
def test_http_basic_is_throttled_before_the_password_hash(client, monkeypatch):
    from command.trust import auth

    hashes = []
    real = auth.check_password_hash
    monkeypatch.setattr(auth, "check_password_hash", lambda h, p: hashes.append(1) or real(h, p))
    for _ in range(5):
        assert client.get("/api/live/geojson/stations", headers=basic("operator", "guess")).status_code == 401
    assert len(hashes) == 5
    resp = client.get("/api/live/geojson/stations", headers=basic("operator", "flood-demo"))
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
    assert len(hashes) == 5  # refused before any scrypt: a throttled guess costs one Redis call


def test_the_form_and_http_basic_share_one_throttle(client):
    for _ in range(3):
        assert sign_in(client, "fire", "guess").status_code == 401
    for _ in range(2):
        assert client.get("/api/live/geojson/zones", headers=basic("fire", "guess")).status_code == 401
    refused = sign_in(client, "fire")
    assert refused.status_code == 429 and b"Too many failed attempts" in refused.data
    assert "Retry-After" in refused.headers
    assert client.get("/api/live/geojson/zones", headers=basic("fire")).status_code == 429
    assert sign_in(client, "water").status_code == 302  # another name is not affected


def test_the_throttle_counts_per_address_whatever_the_name(client):
    for i in range(20):
        assert client.post("/login", data={"username": f"spray{i}", "password": "x"},
                           **from_address("203.0.113.7")).status_code == 401
    resp = client.post("/login", data={"username": "operator", "password": "flood-demo"}, **from_address("203.0.113.7"))
    assert resp.status_code == 429
    assert client.post("/login", data={"username": "operator", "password": "flood-demo"},
                       **from_address("198.51.100.2")).status_code == 302


def test_ipv6_addresses_count_per_64():
    assert address_of("2001:db8:1:2:aaaa::1") == address_of("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert address_of("2001:db8:1:3::1") != address_of("2001:db8:1:2::1")
    assert address_of("::ffff:10.0.0.1") == "10.0.0.1" and address_of(None) == "unknown"


def test_delays_grow_from_the_fifth_failure_and_stop_at_fifteen_minutes(r):
    assert [delay_s(n, 5) for n in range(4, 11)] == [0, 1, 2, 4, 8, 16, 32]
    assert delay_s(15, 5) == delay_s(500, 5) == MAX_DELAY_S == 900
    thr = Throttle(r)
    t0 = 1_000_000
    for i in range(5):
        thr.attempt("duty", "10.0.0.1", now_ms=t0 + i)  # five failures (charged, never given back)
    with pytest.raises(Throttled) as exc:
        thr.attempt("duty", "10.0.0.1", now_ms=t0 + 500)
    assert exc.value.retry_after == 1
    thr.attempt("duty", "10.0.0.1", now_ms=t0 + 4 + 1000)  # 1 s after the 5th: the 6th may try
    with pytest.raises(Throttled) as exc:
        thr.attempt("duty", "10.0.0.1", now_ms=t0 + 1004 + 1500)
    assert exc.value.retry_after == 1  # the 6th failure: 2 s after it
    for n in range(6, 30):  # an attacker who always waits long enough
        thr.attempt("duty", "10.0.0.1", now_ms=t0 + n * 1_000_000)
    assert thr.state("duty")[login_failures("duty")]["failures"] == 30
    assert 86_000_000 < r.pttl(login_failures("duty")) <= 86_400_000  # forgotten a day after the last
    with pytest.raises(Throttled) as exc:
        thr.attempt("duty", "10.0.0.1", now_ms=t0 + 29 * 1_000_000 + 1)
    assert exc.value.retry_after == MAX_DELAY_S  # capped: never a lock


def test_parallel_guesses_cannot_pass_the_throttle_together(r):
    """The check and the charge are one Lua script: 40 guesses at once, 5 get through."""
    thr = Throttle(r)
    passed, barrier = [], threading.Barrier(40)

    def guess():
        barrier.wait()
        try:
            thr.attempt("operator", "10.9.9.9")
            passed.append(1)
        except Throttled:
            pass

    threads = [threading.Thread(target=guess) for _ in range(40)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(passed) == 5


def test_an_attacker_cannot_make_the_duty_officer_wait_at_their_own_browser(app, client):
    """The officer's browser signed in before: its tries count apart from the name's shared count."""
    officer = app.server.test_client()
    assert sign_in(officer).status_code == 302
    assert officer.get_cookie("ecd_device").http_only
    officer.get("/logout")
    for _ in range(8):  # someone guesses the duty officer's password from elsewhere
        client.post("/login", data={"username": "operator", "password": "guess"}, **from_address("203.0.113.50"))
    assert client.post("/login", data={"username": "operator", "password": "flood-demo"},
                       **from_address("203.0.113.51")).status_code == 429  # a browser never used by operator
    assert sign_in(officer).status_code == 302  # the officer's own browser is not held up
    forged = app.server.test_client()
    forged.set_cookie("ecd_device", officer.get_cookie("ecd_device").value[:-2] + "xx")
    assert sign_in(forged).status_code == 429  # a cookie that is not ours counts for nothing
    fire = app.server.test_client()
    fire.set_cookie("ecd_device", officer.get_cookie("ecd_device").value)
    assert sign_in(fire, "fire").status_code == 302 and fire.get_cookie("ecd_device").value != officer.get_cookie(
        "ecd_device").value  # another user's device cookie is replaced by their own


def test_another_site_cannot_sign_a_user_out(client):
    sign_in(client)
    client.get("/logout", headers={"Sec-Fetch-Site": "cross-site"})
    assert signed_in(client)
    client.get("/logout", headers={"Sec-Fetch-Site": "same-origin"})
    assert not signed_in(client)


def test_a_right_password_forgets_the_names_failures(client, r):
    for _ in range(4):
        sign_in(client, "police", "guess")
    assert sign_in(client, "police").status_code == 302
    assert not r.exists(login_failures("police"))
    assert int(r.hget(address_failures("127.0.0.1"), "n")) == 4  # the address keeps its failures


def test_an_admin_unlocks_a_name_and_an_address(client, cli_env, r):
    for _ in range(6):
        sign_in(client, "operator", "guess")
    assert sign_in(client, "operator").status_code == 429
    out = cli(cli_env, "users", "unlock", "operator").stdout
    assert "unlocked user operator" in out
    assert sign_in(client, "operator").status_code == 302
    r.hset(address_failures("192.0.2.1"), mapping={"n": 50, "last": int(time.time() * 1000)})
    assert sign_in(client, "fire").status_code == 302
    assert client.post("/login", data={"username": "fire", "password": "flood-demo"},
                       **from_address("192.0.2.1")).status_code == 429
    cli(cli_env, "users", "unlock", "--address", "192.0.2.1")
    assert client.post("/login", data={"username": "fire", "password": "flood-demo"},
                       **from_address("192.0.2.1")).status_code == 302
    actions = [e["action"] for e in _audit(r)]
    assert actions.count("throttle_unlocked") == 2


# ---- 3. open redirect ------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["/\t/evil.example/x", "//evil.example/x", "/\\evil.example/x", "\\\\evil.example",
                                    "https://evil.example/", "javascript:alert(1)", "/\n/evil.example",
                                    "/\r\n/evil.example", "/\x00/evil.example", "///evil.example", "/\u2028/evil.example",
                                    "evil.example/x", "/ /evil.example"])
def test_sign_in_never_redirects_off_the_site(client, target):
    resp = sign_in(client, next=target)
    assert resp.status_code == 302 and resp.headers["Location"] == "/", target


def test_sign_in_returns_to_a_path_on_the_site(client):
    assert sign_in(client, next="/feeds?view=all").headers["Location"] == "/feeds?view=all"
    first = client.application.test_client().get("/feeds?view=all")
    assert first.headers["Location"] == "/login?next=%2Ffeeds%3Fview%3Dall"


# ---- 4. server-side sessions: revocable ------------------------------------------------------------------
def test_the_cookie_holds_only_a_random_id(client, r):
    resp = sign_in(client)
    set_cookie = next(c for c in resp.headers.getlist("Set-Cookie") if c.startswith("ecd_session="))
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and "Expires" not in set_cookie
    sid = session_cookie(client)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", sid)
    assert b"operator" not in base64.urlsafe_b64decode(sid + "=")
    assert r.get(session(__import__('hashlib').sha256(sid.encode()).hexdigest())) is not None


def test_an_old_cookie_is_dead_after_sign_out(app, client):
    cookies = [c.split(";")[0].partition("=") for c in sign_in(client).headers.getlist("Set-Cookie")]
    name, _, value = next(c for c in cookies if "session" in c[0])
    assert signed_in(client)
    client.get("/logout")
    replay = app.server.test_client()
    replay.set_cookie(name, value)  # the cookie someone copied before the sign-out
    assert replay.get("/").status_code == 302
    assert replay.post("/_dash-update-component", json={}).status_code == 401
    assert replay.get("/api/live/geojson/stations").status_code == 401


def test_the_session_id_changes_at_sign_in(app, client):
    """Session fixation: an id planted before sign-in is not the one signed in."""
    sign_in(client, "fire")
    planted = session_cookie(client)
    sign_in(client, "fire")
    assert session_cookie(client) != planted
    other = app.server.test_client()
    other.set_cookie("ecd_session", planted)
    assert not signed_in(other)  # the old id ended when the new one began


def test_a_password_change_ends_the_users_sessions(app, client, cli_env):
    sign_in(client, "fire")
    assert client.get("/department").status_code == 200
    out = cli(cli_env, "users", "add", "fire", "--department", "fire_rescue", stdin="a-new-password\n").stdout
    assert "1 session(s) ended" in out
    assert client.get("/department").status_code == 302
    assert sign_in(client, "fire", "a-new-password").status_code == 302


def test_a_removed_user_is_signed_out_at_once(client, cli_env, r):
    sign_in(client, "works")
    assert signed_in(client)
    out = cli(cli_env, "users", "remove", "works").stdout
    assert "1 session(s) ended" in out
    assert not signed_in(client)
    assert sign_in(client, "works").status_code == 401
    assert "user_removed" in [e["action"] for e in _audit(r)]


def test_a_user_taken_out_of_the_file_by_hand_loses_access_on_the_next_request(client, tmp_path):
    sign_in(client, "medical")
    assert signed_in(client)
    path = tmp_path / "var" / "users.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["users"] = [u for u in doc["users"] if u["username"] != "medical"]
    path.write_text(yaml.safe_dump(doc))
    assert not signed_in(client)
    assert client.post("/_dash-update-component", json={}).status_code == 401


def test_a_session_ends_when_idle(redis_url, tmp_path, r, monkeypatch):
    from app import create_app

    monkeypatch.setenv("ECD_SESSION_IDLE_MINUTES", "0.025")  # 1.5 s
    client = create_app(Settings(data_dir=tmp_path / "var"), redis_url=redis_url).server.test_client()
    sign_in(client)
    for _ in range(4):  # in use: each request pushes the end on
        time.sleep(0.6)
        assert signed_in(client)
    time.sleep(2.0)
    assert not signed_in(client)


def test_the_idle_timeout_defaults_to_a_shift():
    from command.trust.sessions import idle_ms_from_env

    assert idle_ms_from_env({}) == 720 * 60_000
    assert idle_ms_from_env({"ECD_SESSION_IDLE_MINUTES": "30"}) == 30 * 60_000
    with pytest.raises(ValueError):
        idle_ms_from_env({"ECD_SESSION_IDLE_MINUTES": "-1"})


def test_an_admin_ends_a_users_sessions(client, cli_env, r):
    sign_in(client, "planner")
    assert signed_in(client)
    assert "1 session(s) of planner ended" in cli(cli_env, "users", "sign-out", "planner").stdout
    assert not signed_in(client)
    assert _audit(r)[0]["action"] == "sessions_ended" and _audit(r)[0]["details"]["username"] == "planner"


# ---- 5. audit, file modes, headers, cookies, sizes ---------------------------------------------------------
def _audit(r):
    from command.trust.audit import entries

    return entries(r, Keys(LIVE))


def test_sign_ins_and_user_changes_are_audited(client, cli_env, r):
    sign_in(client, "operator", "not-it")
    sign_in(client, "operator")
    client.get("/logout")
    cli(cli_env, "users", "add", "duty9", "--department", "police", stdin="s3cret-pass\n")
    got = [(e["who"], e["action"]) for e in reversed(_audit(r))]
    assert got[:3] == [("operator", "signin_failed"), ("operator", "signin"), ("operator", "signout")]
    assert got[3][1] == "user_added" and got[3][0].startswith("cli")
    failed = next(e for e in _audit(r) if e["action"] == "signin_failed")
    assert failed["details"] == {"via": "form", "reason": "password", "address": "127.0.0.1"}
    assert "not-it" not in str(_audit(r)) and "s3cret-pass" not in str(_audit(r))


def test_users_files_can_be_read_by_their_owner_only(tmp_path, cli_env):
    seeded = ensure_users_file(tmp_path / "a" / "users.yaml")
    assert stat.S_IMODE(seeded.stat().st_mode) == 0o600
    assert load_users(seeded).keys() == load_users(SAMPLE_DATA / "users.yaml").keys()
    loose = tmp_path / "b" / "users.yaml"
    loose.parent.mkdir()
    loose.write_text((SAMPLE_DATA / "users.yaml").read_text())
    os.chmod(loose, 0o644)
    ensure_users_file(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600
    written = tmp_path / "c" / "users.yaml"
    cli(cli_env, "users", "add", "duty3", "--department", "police", "--file", str(written), stdin="s3cret-pass\n")
    assert stat.S_IMODE(written.stat().st_mode) == 0o600


def test_every_answer_carries_the_security_headers(client):
    pages = [client.get("/login"), client.get("/"), client.get("/api/live/geojson/stations")]
    sign_in(client)
    pages += [client.get("/"), client.get("/assets/2-app.css")]
    for resp in pages:
        h = resp.headers
        csp = h["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
        assert re.search(r"script-src 'self' 'sha256-[A-Za-z0-9+/=]+'", csp) and "unsafe-eval" not in csp
        assert h["X-Content-Type-Options"] == "nosniff" and h["Referrer-Policy"] == "same-origin"
        assert h["X-Frame-Options"] == "DENY" and h["Cross-Origin-Opener-Policy"] == "same-origin"
    assert pages[3].headers["Cache-Control"] == "no-store"


def test_dash_inline_script_is_allowed_by_its_hash(client):
    import hashlib

    sign_in(client)
    page = re.sub(r"<!--.*?-->", "", client.get("/").get_data(as_text=True), flags=re.S)  # IE's conditional comment
    inline = re.findall(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>(.*?)</script>", page, re.S)
    assert inline  # Dash's renderer
    csp = client.get("/").headers["Content-Security-Policy"]
    for script in inline:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp


def test_secure_cookies_behind_https(redis_url, tmp_path, r, monkeypatch):
    from app import create_app

    monkeypatch.setenv("ECD_SECURE_COOKIES", "1")
    client = create_app(Settings(data_dir=tmp_path / "var"), redis_url=redis_url).server.test_client()
    resp = client.post("/login", data={"username": "operator", "password": "flood-demo"}, base_url="https://localhost")
    cookies = resp.headers.getlist("Set-Cookie")
    assert {c.split("=")[0] for c in cookies} == {"__Host-ecd_session", "__Host-ecd_device"}
    assert all("Secure" in c and "Path=/" in c and "HttpOnly" in c for c in cookies)
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")


def test_bodies_over_a_megabyte_are_refused_on_every_route(client):
    big = b"x" * (1024 * 1024 + 1)
    sign_in(client)
    for path in ("/_dash-update-component", "/login", "/api/live/incidents", "/no-such-route"):
        resp = client.post(path, data=big, content_type="application/json")
        assert resp.status_code == 413, path


def test_a_cross_site_post_is_refused(client):
    resp = client.post("/login", data={"username": "operator", "password": "flood-demo"},
                       headers={"Origin": "https://evil.example"})
    assert resp.status_code == 403
    sign_in(client)
    assert client.post("/_dash-update-component", json={}, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    same = client.post("/login", data={"username": "operator", "password": "flood-demo"},
                       headers={"Origin": "http://localhost"})
    assert same.status_code == 302


def test_a_warning_names_the_demo_accounts_without_two_factors(redis_url, tmp_path, r, caplog):
    with caplog.at_level("WARNING", logger="layouts.signin"):
        make_app(redis_url, tmp_path)
    assert "demo accounts without two-factor sign-in are enabled: admin, operator, planner" in caplog.text


def test_a_users_session_list_outlives_sessions_kept_alive_by_their_requests(r):
    """A request pushes its session's expiry on with one command (GETEX); the user's list of sessions,
    which `end_user` ends them by, is pushed on less often but always expires after every session in
    it: a session kept alive past several idle periods is still ended by its admin."""
    from command.keys import session as session_key
    from command.keys import user_sessions
    from command.trust.sessions import SessionStore, sid_hash

    store = SessionStore(r, 1000)  # the shortest idle period: 1 s
    sid = store.create("kept-alive", {"role": "fire"})
    for _ in range(8):  # 2.4 s: the list's own first expiry (2 s) passes while the session is in use
        time.sleep(0.3)
        assert store.load(sid) is not None
        assert r.pttl(user_sessions("kept-alive")) > r.pttl(session_key(sid_hash(sid))) > 0
    assert store.end_user("kept-alive") == 1
    assert store.load(sid) is None
