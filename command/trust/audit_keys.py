"""The audit trail's keys: the current one (to seal new entries) and every retired one (to verify).

The key is never in Redis: ``ECD_AUDIT_KEY`` (32+ characters), else ``<data_dir>/audit_key``, made
once with mode 0600 (written aside, then linked in, so processes starting together make one key);
retired keys stay in ``<data_dir>/audit_keyring``. See command/trust/audit.py.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import logging
import os
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from command.errors import CommandError

log = logging.getLogger(__name__)

KEY_ENV = "ECD_AUDIT_KEY"
KEY_FILE = "audit_key"
KEYRING_FILE = "audit_keyring"
MIN_ENV_KEY_CHARS = 32


class AuditKeyError(CommandError):
    """The audit key cannot be read or made: commands must not go unaudited, so they fail."""

    status = 500
    exit_code = 1
    code = "audit_key"


# ---- the key ---------------------------------------------------------------------------------------------
def key_id(key: bytes) -> str:
    """A key's public name: derived from the key, so it says nothing about it and cannot collide."""
    return hmac.new(key, b"ecd audit key id", hashlib.sha256).hexdigest()[:16]


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path: Path, text: str) -> Path:
    """Write `text` to a new 0600 file next to `path` (fsynced); returns its name."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    return tmp


def _read_key_file(path: Path) -> bytes:
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError:
        raise AuditKeyError(f"{path}: not a hex audit key") from None
    if len(key) < 16:
        raise AuditKeyError(f"{path}: the audit key is too short")
    if path.stat().st_mode & 0o077:
        log.warning("%s can be read by other users: chmod 600 it", path)
    return key


class KeyStore:
    """The audit keys of one data folder: the current one (to seal) and every known one (to verify).

    The files are looked at again whenever they change (inode or mtime), so a rotation made by
    `python -m command audit rotate-key` reaches running processes at their next entry.
    """

    def __init__(self, data_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self._env = env
        self._lock = threading.Lock()
        self._current: tuple[str, bytes] | None = None
        self._current_stamp: tuple[int, int] | None = None
        self._known: dict[str, bytes] = {}
        self._known_stamp: tuple[Any, ...] | None = None

    @property
    def key_path(self) -> Path:
        return self.data_dir / KEY_FILE

    @property
    def keyring_path(self) -> Path:
        return self.data_dir / KEYRING_FILE

    def _env_key(self) -> bytes | None:
        value = (os.environ if self._env is None else self._env).get(KEY_ENV)
        if not value:
            return None
        if len(value) < MIN_ENV_KEY_CHARS:
            raise AuditKeyError(f"{KEY_ENV} must be at least {MIN_ENV_KEY_CHARS} characters (e.g. 64 hex digits)")
        return value.encode()

    def _ensure_file(self) -> None:
        """Make `audit_key` once. Several processes may start at once: write aside, link; the first wins."""
        path = self.key_path
        if path.exists():
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = _write_new(path, secrets.token_hex(32) + "\n")
        except OSError as exc:
            raise AuditKeyError(f"cannot make the audit key {path}: {exc}") from None
        try:
            os.link(tmp, path)
            _fsync_dir(path.parent)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()

    def current(self) -> tuple[str, bytes]:
        """(key id, key) to seal new entries with."""
        env = self._env_key()
        if env is not None:
            return key_id(env), env
        with self._lock:
            stamp = _stamp(self.key_path)
            if self._current is None or stamp != self._current_stamp:
                if stamp is None:
                    self._ensure_file()
                    stamp = _stamp(self.key_path)
                key = _read_key_file(self.key_path)
                self._current, self._current_stamp = (key_id(key), key), stamp
            return self._current

    def known(self) -> dict[str, bytes]:
        """Every key this folder knows, by id: the environment's, the current file's, the keyring's."""
        env = self._env_key()
        stamp = (env, _stamp(self.key_path), _stamp(self.keyring_path))
        with self._lock:
            if stamp != self._known_stamp:
                keys = self._keyring()
                if stamp[1] is not None:
                    k = _read_key_file(self.key_path)
                    keys[key_id(k)] = k
                if env is not None:
                    keys[key_id(env)] = env
                self._known, self._known_stamp = keys, stamp
            return self._known

    def _keyring_lines(self) -> list[bytes]:
        try:
            return [ln for ln in self.keyring_path.read_bytes().splitlines() if ln.strip()]
        except FileNotFoundError:
            return []

    def _keyring(self) -> dict[str, bytes]:
        keys = {}
        for line in self._keyring_lines():
            try:
                k = bytes.fromhex(orjson.loads(line)["key"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                log.warning("%s: an unreadable line is skipped", self.keyring_path)
                continue
            keys[key_id(k)] = k
        return keys

    def _keep(self, key: bytes, now: int) -> None:
        """Add `key` to the keyring (append, fsync) unless it is there already."""
        if key_id(key) in self._keyring():
            return
        line = orjson.dumps({"kid": key_id(key), "key": key.hex(), "retired": now}) + b"\n"
        fd = os.open(self.keyring_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def rotate(self, now: int) -> tuple[str, str | None]:
        """Retire the current key into the keyring and make a new one: (old id, new id).

        With ``ECD_AUDIT_KEY`` set the new key is the operator's to choose: the current one is kept in
        the keyring (so what it sealed still verifies) and the new id is None.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / ".audit_key.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            env = self._env_key()
            if env is not None:
                self._keep(env, now)
                return key_id(env), None
            self._ensure_file()
            old = _read_key_file(self.key_path)
            self._keep(old, now)  # first: the old key is never lost, even if what follows fails
            new = secrets.token_bytes(32)
            tmp = _write_new(self.key_path, new.hex() + "\n")
            os.replace(tmp, self.key_path)
            _fsync_dir(self.data_dir)
            return key_id(old), key_id(new)
