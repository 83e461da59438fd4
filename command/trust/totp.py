"""Two-factor sign-in: TOTP (RFC 6238: 6 digits, 30-second steps, SHA-1, as every authenticator app
reads an `otpauth://` URI) and single-use recovery codes.

- The secret is 160 random bits (pyotp), kept in users.yaml (mode 0600) next to the password hash.
- A code is taken for the current step or one step either side (clock drift), and a user's code is
  never taken twice: Redis keeps the newest step each user signed in with (`command.keys.totp_used`)
  and a Lua script takes a step only if it is newer (`claim_step`), so a code seen over a shoulder or
  in a proxy log cannot be replayed, not even by two workers at the same moment.
- Recovery codes are 80 random bits each (16 base32 characters, shown as 4 groups), kept only as
  SHA-256 hashes; one is used up by signing in with it (`command.trust.auth.use_recovery_code`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import pyotp
import redis

from command.keys import totp_used

ISSUER = "Flood command"
STEP_S = 30
DRIFT_STEPS = 1
RECOVERY_CODES = 10
_B32 = "abcdefghijklmnopqrstuvwxyz234567"

# KEYS[1]: the user's newest step; ARGV: the step, its expiry (ms). 1 when the step was newer (taken).
_CLAIM = """
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
local step = tonumber(ARGV[1])
if step <= last then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, username: str, issuer: str = ISSUER) -> str:
    """The `otpauth://totp/...` URI an authenticator app takes (as text or as a QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=issuer)


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The time step `code` is valid for (now, or one step either side), or None."""
    code = "".join(code.split())
    if not secret or len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    now = time.time() if now is None else now
    step = int(now // STEP_S)
    for s in range(step - DRIFT_STEPS, step + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(s), code):
            return s
    return None


def claim_step(r: redis.Redis, username: str, step: int) -> bool:
    """Take `step` for `username` unless it (or a newer one) was taken: a code works once."""
    ttl_ms = (2 * DRIFT_STEPS + 2) * STEP_S * 1000
    return bool(r.eval(_CLAIM, 1, totp_used(username), step, ttl_ms))


def verify_code(r: redis.Redis, username: str, secret: str, code: str, now: float | None = None) -> bool:
    """A valid TOTP code not used before: True, and it is used up."""
    step = matching_step(secret, code, now)
    return step is not None and claim_step(r, username, step)


# ---- recovery codes ----------------------------------------------------------------------------------
def new_recovery_codes(n: int = RECOVERY_CODES) -> list[str]:
    codes = []
    for _ in range(n):
        raw = "".join(secrets.choice(_B32) for _ in range(16))
        codes.append("-".join(raw[i:i + 4] for i in range(0, 16, 4)))
    return codes


def normalize_recovery_code(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch in _B32)


def hash_recovery_code(code: str) -> str:
    """SHA-256 of the normalized code (80 random bits: a slow hash would add nothing)."""
    return hashlib.sha256(b"ecd-recovery:" + normalize_recovery_code(code).encode()).hexdigest()


def looks_like_recovery_code(code: str) -> bool:
    return len(normalize_recovery_code(code)) == 16
