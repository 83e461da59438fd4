"""Sign-ins and account changes on the audit trail of the `live` namespace (command/trust/audit.py).

Actions: `signin`, `signin_failed` (details: via form/basic/token, reason password/code/
totp_required/token), `signout`, `user_added`, `user_changed` (replaced: a new password, role or
second factor), `user_removed`, `sessions_ended`, `throttle_unlocked`, `token_added`, `token_revoked`.
Details never hold a password, a code or a token.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from command.keys import LIVE, Keys
from command.timeutil import now_ms
from command.trust import audit

log = logging.getLogger(__name__)


def record(r: redis.Redis, who: str, action: str, *, strict: bool = False, **details: Any) -> bool:
    """Append one entry. A sign-in is not refused because the trail cannot be written (the error is
    logged); `strict` (the CLI's account changes) raises instead."""
    try:
        audit.record(r, Keys(LIVE), who=who[:64], action=action, at=now_ms(), details=details)
        return True
    except Exception:
        if strict:
            raise
        log.exception("audit: could not record %s by %s", action, who[:64])
        return False
