"""The audit trail: a keyed chain (HMAC, key outside Redis), anchors outside Redis, key rotation, legacy
entries, the `audit` CLI and the anchor loop, on a real Redis and real files."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import threading
import time

import orjson
import pytest

from command.keys import AUDIT_NAMESPACES, Keys
from command.trust import audit, audit_keys
from command.trust.anchor import Anchorer, head, read_anchors, write_anchors

from .conftest import ROOT


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """This process seals with the keys of a fresh data folder (the one `cli_env` gives the CLI)."""
    monkeypatch.delenv(audit_keys.KEY_ENV, raising=False)
    d = tmp_path / "var"
    monkeypatch.setattr(audit, "_store", audit_keys.KeyStore(d))
    return d


@pytest.fixture
def env(cli_env):
    return {k: v for k, v in cli_env.items() if k != audit_keys.KEY_ENV}


def fill(r, keys, n, who="op", start=0):
    for i in range(start, start + n):
        audit.record(r, keys, who=who, action="dispatch", at=1_000 + i, details={"i": i})


def stream(r, keys):
    return [(eid.decode(), {k.decode(): v for k, v in f.items()}) for eid, f in r.xrange(keys.audit)]


def rebuild(r, keys, items):
    """Replace the stream by `items` [(id, fields)] and point the head at the last: what someone with
    write access to Redis, but not the key, can do."""
    r.delete(keys.audit)
    for eid, f in items:
        r.xadd(keys.audit, f, id=eid)
    r.set(keys.audit_head, items[-1][1]["hash"])


def anchor_now(r, keys, path):
    a = head(r, keys)
    write_anchors(path, [a])
    return a


def test_an_intact_chain_verifies_and_the_key_stays_out_of_redis(r, keys, data_dir):
    fill(r, keys, 3)
    v = audit.verify(r, keys)
    assert v.ok and v.state == "intact" and v.entries == 3 and v.legacy == 0
    kid, key = audit.key_store().current()
    assert {f["kid"].decode() for _, f in stream(r, keys)} == {kid} and v.kids == [kid]
    assert stat.S_IMODE((data_dir / "audit_key").stat().st_mode) == 0o600
    dump = b"".join(r.dump(k) or b"" for k in r.keys("*"))
    assert key not in dump and key.hex().encode() not in dump
    assert r.sismember(AUDIT_NAMESPACES, keys.ns)


def test_a_rewritten_entry_is_detected_even_with_recomputed_hashes(r, keys, data_dir):
    fill(r, keys, 4)
    items = stream(r, keys)
    # 1. change the second entry's body and recompute every hash after it the only way one can without the
    # key, as plain SHA-256 (an old-style chain)
    forged, prev = [items[0]], items[0][1]["hash"].decode()
    for eid, f in items[1:]:
        body = orjson.loads(f["body"])
        if eid == items[1][0]:
            body["who"] = "someone-else"
        body = audit.body_of(**body)
        h = audit.legacy_hash(prev, body)
        forged.append((eid, {"prev": prev, "hash": h, "body": body}))
        prev = h
    rebuild(r, keys, forged)
    v = audit.verify(r, keys)
    assert not v.ok and v.broken_at == items[1][0] and "rewritten without the key" in v.reason
    # 2. keep the key id and guess a key
    forged, prev = [items[0]], items[0][1]["hash"].decode()
    kid = items[0][1]["kid"].decode()
    for eid, f in items[1:]:
        body = orjson.loads(f["body"])
        body["who"] = "someone-else"
        body = audit.body_of(**body)
        h = audit.keyed_hash(b"a guess", kid, prev, body)
        forged.append((eid, {"prev": prev, "hash": h, "kid": kid, "body": body}))
        prev = h
    rebuild(r, keys, forged)
    v = audit.verify(r, keys)
    assert not v.ok and v.broken_at == items[1][0] and "HMAC" in v.reason
    # 3. the whole chain rewritten as an old-style one: no link breaks, but it is no longer keyed, and the
    # anchors (taken before) name a hash it does not have
    rebuild(r, keys, items)
    anchors = data_dir / "audit" / "anchors.jsonl"
    anchor_now(r, keys, anchors)
    forged, prev = [], audit.GENESIS
    for eid, f in items:
        body = audit.body_of(**{**orjson.loads(f["body"]), "who": "someone-else"})
        h = audit.legacy_hash(prev, body)
        forged.append((eid, {"prev": prev, "hash": h, "body": body}))
        prev = h
    rebuild(r, keys, forged)
    assert audit.verify(r, keys).state == "legacy"  # never "intact"
    v = audit.verify(r, keys, anchors=read_anchors(anchors))
    assert not v.ok and v.broken_at == items[-1][0] and "differs from the anchor" in v.reason
    # 4. an entry moved, or one in the middle removed
    rebuild(r, keys, [items[0], items[2], items[3]])
    v = audit.verify(r, keys)
    assert not v.ok and v.broken_at == items[2][0] and "link" in v.reason


def test_removed_newest_entries_are_detected_by_the_anchors(r, keys, data_dir):
    anchors = data_dir / "audit" / "anchors.jsonl"
    fill(r, keys, 3)
    anchor_now(r, keys, anchors)
    fill(r, keys, 2, start=3)
    a = anchor_now(r, keys, anchors)
    items = stream(r, keys)
    assert audit.verify(r, keys, anchors=read_anchors(anchors)).anchors == 2
    # cut the last two entries and move the head back: a well-formed, shorter chain
    r.xdel(keys.audit, items[3][0], items[4][0])
    r.set(keys.audit_head, items[2][1]["hash"])
    assert audit.verify(r, keys).ok  # the chain alone cannot tell
    v = audit.verify(r, keys, anchors=read_anchors(anchors))
    assert not v.ok and v.broken_at == a.id == items[4][0] and "#4–#5 are missing" in v.reason


def test_a_deleted_trail_is_detected(r, keys, data_dir):
    anchors = data_dir / "audit" / "anchors.jsonl"
    fill(r, keys, 2)
    a = anchor_now(r, keys, anchors)
    r.delete(keys.audit)
    v = audit.verify(r, keys)  # the head is still there
    assert not v.ok and "trail is gone" in v.reason
    r.delete(keys.audit_head)
    assert audit.verify(r, keys).state == "empty"  # nothing left to tell, without the anchors
    v = audit.verify(r, keys, anchors=read_anchors(anchors))
    assert not v.ok and v.broken_at == a.id and "the trail is gone" in v.reason and v.entries == 0
    other = Keys(keys.ns + "-other")  # anchors of another namespace say nothing about this one
    assert audit.verify(r, other, anchors=read_anchors(anchors)).ok


def test_key_rotation_keeps_old_entries_verifiable(r, keys, data_dir):
    store = audit.key_store()
    fill(r, keys, 2)
    old_kid = store.current()[0]
    # rotated by another process (the CLI): this one takes the new key at its next entry, no restart
    retired, new_kid = audit_keys.KeyStore(data_dir).rotate(now=5)
    assert retired == old_kid and new_kid != old_kid
    fill(r, keys, 2, start=2)
    kids = [f["kid"].decode() for _, f in stream(r, keys)]
    assert kids == [old_kid, old_kid, new_kid, new_kid]
    assert stat.S_IMODE((data_dir / "audit_keyring").stat().st_mode) == 0o600
    v = audit.verify(r, keys, store=audit_keys.KeyStore(data_dir))  # a fresh process
    assert v.ok and v.state == "intact" and v.kids == [old_kid, new_kid]
    # without the keyring the old entries cannot be checked, and say so
    (data_dir / "audit_keyring").rename(data_dir / "keyring.bak")
    v = audit.verify(r, keys, store=audit_keys.KeyStore(data_dir))
    assert not v.ok and v.entries == 1 and "unknown key" in v.reason


def test_legacy_entries_verify_as_legacy_and_are_sealed_by_the_first_keyed_one(r, keys, data_dir):
    prev = audit.GENESIS
    for i in range(2):  # written by the code before the key: prev, hash, body
        body = audit.body_of("op", "dispatch", i, {"i": i})
        h = hashlib.sha256(prev.encode() + b"\n" + body).hexdigest()
        r.xadd(keys.audit, {"prev": prev, "hash": h, "body": body})
        r.set(keys.audit_head, h)
        prev = h
    fill(r, keys, 2, start=2)
    v = audit.verify(r, keys)
    assert v.ok and v.state == "legacy" and v.legacy == 2 and v.entries == 4
    assert "LEGACY" in v.describe()
    # a legacy entry rewritten, with every legacy hash recomputed: the first keyed entry no longer links
    items = stream(r, keys)
    body = audit.body_of("intruder", "dispatch", 0, {"i": 0})
    h0 = audit.legacy_hash(audit.GENESIS, body)
    b1 = items[1][1]["body"]
    h1 = audit.legacy_hash(h0, b1)
    rebuild(r, keys, [(items[0][0], {"prev": audit.GENESIS, "hash": h0, "body": body}),
                      (items[1][0], {"prev": h0, "hash": h1, "body": b1}), *items[2:]])
    v = audit.verify(r, keys)
    assert not v.ok and v.broken_at == items[2][0]


def test_the_key_from_the_environment(r, keys, data_dir, monkeypatch):
    monkeypatch.setenv(audit_keys.KEY_ENV, "k" * 40)
    fill(r, keys, 1)
    assert not (data_dir / "audit_key").exists()
    assert stream(r, keys)[0][1]["kid"].decode() == audit_keys.key_id(b"k" * 40)
    assert audit.verify(r, keys).ok
    # rotation with an environment key: it is kept in the keyring, the new value is the operator's to set
    assert audit.key_store().rotate(now=1) == (audit_keys.key_id(b"k" * 40), None)
    monkeypatch.setenv(audit_keys.KEY_ENV, "n" * 40)
    fill(r, keys, 1, start=1)
    assert audit.verify(r, keys, store=audit_keys.KeyStore(data_dir)).ok
    monkeypatch.setenv(audit_keys.KEY_ENV, "short")
    with pytest.raises(audit_keys.AuditKeyError):
        fill(r, keys, 1)


def test_processes_starting_together_make_one_key(tmp_path):
    d = tmp_path / "var"
    code = ("import sys; from pathlib import Path; from command.trust.audit_keys import KeyStore; "
            "print(KeyStore(Path(sys.argv[1])).current()[0])")
    env = {k: v for k, v in os.environ.items() if k != audit_keys.KEY_ENV}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(d)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              text=True) for _ in range(8)]
    kids = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(kids) == 1 and all(p.returncode == 0 for p in procs)
    assert [p.name for p in d.iterdir()] == ["audit_key"]  # nothing left aside


def test_record_read_for_secret_fields(r, keys, data_dir):
    r.set(keys.clock, 1_700_000_000_000)
    audit.record_read(r, keys, "operator", "incident.reporter_phone", {"incident": "I-1"})
    e = audit.entries(r, keys)[0]
    assert e["action"] == audit.READ_ACTION and e["who"] == "operator" and e["at"] == 1_700_000_000_000
    assert e["details"] == {"incident": "I-1", "what": "incident.reporter_phone"}
    assert audit.verify(r, keys).ok


# ---- the command line ------------------------------------------------------------------------------------
def verify_cli(env, *args):
    return subprocess.run([sys.executable, "-m", "command", "audit", "verify", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_verify_cli_exit_codes(r, keys, data_dir, env):
    fill(r, keys, 3)
    ok = verify_cli(env, "--namespace", keys.ns)
    assert ok.returncode == 0, ok.stderr
    assert f"{keys.ns}: INTACT: 3 entries" in ok.stdout and "no anchors" in ok.stderr
    # anchored, then the newest entry cut
    anchor_now(r, keys, data_dir / "audit" / "anchors.jsonl")
    items = stream(r, keys)
    assert verify_cli(env, "--namespace", keys.ns).returncode == 0
    r.xdel(keys.audit, items[2][0])
    r.set(keys.audit_head, items[1][1]["hash"])
    cut = verify_cli(env, "--namespace", keys.ns)
    assert cut.returncode == 1
    assert f"BROKEN at entry {items[2][0]}: entries #3–#3 are missing" in cut.stdout
    # a rewritten entry, named with its reason; --all checks every namespace
    rebuild(r, keys, items)
    f = dict(items[1][1], body=audit.body_of("x", "dispatch", 0, {}))
    rebuild(r, keys, [items[0], (items[1][0], f), items[2]])
    bad = verify_cli(env, "--all")
    assert bad.returncode == 1 and f"BROKEN at entry {items[1][0]}: the entry's content does not match its HMAC" \
        in bad.stdout
    # another anchors file, and bad usage
    other = data_dir / "elsewhere.jsonl"
    other.write_text("")
    rebuild(r, keys, items)
    assert verify_cli(env, "--namespace", keys.ns, "--anchors", str(other)).returncode == 0
    assert verify_cli(env, "--namespace", "a:b").returncode == 2
    assert verify_cli(env, "--anchors", str(data_dir / "missing.jsonl")).returncode == 2
    assert verify_cli(env, "--frobnicate").returncode == 2
    assert verify_cli(env, "--all", "--namespace", "live").returncode == 2


def test_rotate_key_cli(r, keys, data_dir, env):
    fill(r, keys, 1)
    old = audit.key_store().current()[0]
    proc = subprocess.run([sys.executable, "-m", "command", "audit", "rotate-key"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"audit key {old} retired" in proc.stdout
    new = audit.key_store().current()[0]
    assert new != old
    live = Keys("live")
    rotated = audit.entries(r, live)[0]
    assert rotated["action"] == "audit_key_rotate" and rotated["details"] == {"retired": old, "new": new}
    fill(r, keys, 1, start=1)
    assert verify_cli(env, "--all").returncode == 0


# ---- the anchor loop -------------------------------------------------------------------------------------
def test_the_anchor_loop_anchors_within_ten_seconds_and_at_shutdown(r, keys, data_dir, env):
    path = data_dir / "audit" / "anchors.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "command", "audit", "anchor"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "audit anchors every 5 s" in proc.stdout.readline()
        fill(r, keys, 2)
        t0 = time.monotonic()
        while [a.count for a in read_anchors(path, keys.ns)][-1:] != [2] and time.monotonic() - t0 < 12:
            time.sleep(0.1)
        assert time.monotonic() - t0 <= 10
        anchors = read_anchors(path, keys.ns)
        # the loop may tick between the two entries: then an anchor of the first one comes before
        assert [(a.count, a.id) for a in anchors] in ([(2, stream(r, keys)[-1][0])],
                                                      [(1, stream(r, keys)[0][0]), (2, stream(r, keys)[-1][0])])
        fill(r, keys, 1, start=2)
        proc.send_signal(signal.SIGTERM)  # before its next tick: the last anchor is written on the way out
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    last = read_anchors(path, keys.ns)[-1]
    assert last.count == 3 and last.id == stream(r, keys)[-1][0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert audit.verify(r, keys, anchors=read_anchors(path)).anchors == len(anchors) + 1  # each one checked


def test_the_anchorer_writes_only_what_moved_and_starts_again_in_a_new_file(r, keys, data_dir):
    path = data_dir / "audit" / "anchors.jsonl"
    fill(r, keys, 1)
    r.sadd(AUDIT_NAMESPACES, "not a namespace")  # ignored
    a = Anchorer(r, path)
    assert [x.ns for x in a.tick()] == [keys.ns]
    assert a.tick() == []  # nothing moved
    assert Anchorer(r, path).tick() == []  # a restarted loop knows what it anchored
    path.rename(path.with_name("anchors-shipped.jsonl"))  # rotated away: the new file gets every head again
    assert [x.count for x in a.tick()] == [1]
    # stopping: one more tick, at once
    stop = threading.Event()
    t = threading.Thread(target=a.run, args=(stop, 10))
    t.start()
    time.sleep(0.2)
    fill(r, keys, 1, start=1)
    stop.set()
    t.join(5)
    assert not t.is_alive() and read_anchors(path, keys.ns)[-1].count == 2


def test_existing_trails_are_found_at_start(r, keys, data_dir):
    fill(r, keys, 1)
    r.delete(AUDIT_NAMESPACES)  # a trail written before the set existed
    a = Anchorer(r, data_dir / "anchors.jsonl")
    stop = threading.Event()
    stop.set()
    a.run(stop, 1)
    assert [x.ns for x in read_anchors(data_dir / "anchors.jsonl")] == [keys.ns]


def test_a_torn_anchor_line_is_skipped(tmp_path):
    path = tmp_path / "anchors.jsonl"
    path.write_bytes(b'{"ns":"live","id":"1-0","hash":"ab","count":1,"at":5}\n{"ns":"live","id":"2-0","ha')
    assert [a.id for a in read_anchors(path)] == ["1-0"]


def test_python_app_runs_the_anchor_loop_and_the_trail_verifies_after_it_stops(tmp_path):
    import httpx

    from .test_app import _port

    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", audit_keys.KEY_ENV)}
    env["ECD_DATA_DIR"] = str(tmp_path / "var")
    port = _port()
    anchors = tmp_path / "var" / "audit" / "anchors.jsonl"
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--speed", "max"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        info = orjson.loads((tmp_path / "var" / "app.json").read_bytes())
        assert "audit" in info["children"]
        # the sample exercise's drill_start is anchored within one interval
        while time.monotonic() < deadline and not [a for a in read_anchors(anchors) if a.ns.startswith("drill-")]:
            time.sleep(0.2)
        assert [a for a in read_anchors(anchors) if a.ns.startswith("drill-")]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "audit anchor loop stopped" in (tmp_path / "var" / "logs" / "audit.log").read_text()
    # Redis is down: verify starts the data folder's embedded one again, from its AOF
    check = subprocess.run([sys.executable, "-m", "command", "audit", "verify", "--all"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "drill-" in check.stdout and "anchors agree" in check.stdout and "BROKEN" not in check.stdout
