"""`python -m command users ...` and `python -m command tokens ...`: accounts, the sign-in throttle,
sessions and API tokens (docs/security.md). Run them with the web app's environment (REDIS_URL,
ECD_DATA_DIR): they end sessions and write the audit trail in its Redis.

    users add NAME --department D [--role R] [--name N] [--totp] [--clearance C]   password on standard input
    users remove NAME            the user's sessions end at once
    users unlock [NAME] [--address A]    forget failed sign-ins
    users sign-out NAME          end every session of NAME
    users list
    tokens add NAME --scope S [--scope S ...] [--department D]      prints the token once
    tokens list
    tokens revoke NAME
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from command.config import Settings
from command.errors import InvalidInput

ROLE_CHOICES = ["operator", "department", "planner", "admin", "auditor"]


def register(sub: argparse._SubParsersAction) -> None:
    from command.trust.tokens import SCOPES

    up = sub.add_parser("users", help="dashboard users: add, remove, unlock, sign out, list")
    usub = up.add_subparsers(dest="users_cmd", required=True)
    ua = usub.add_parser("add", help="add or replace a user (the password is read from standard input)")
    ua.add_argument("username")
    ua.add_argument("--department", required=True)
    ua.add_argument("--role", default="department", choices=ROLE_CHOICES)
    ua.add_argument("--name", default="")
    ua.add_argument("--clearance", choices=["public", "internal", "secret"], default=None,
                    help="what of the graded data (classification.yaml) the user sees whole (default: "
                         "internal for a new user, unchanged for an existing one)")
    ua.add_argument("--totp", action="store_true",
                    help="enrol two-factor sign-in: prints the otpauth:// URI and recovery codes, once "
                         "(required for admin, operator and planner)")
    ua.set_defaults(handler=cmd_users_add)
    ur = usub.add_parser("remove", help="remove a user; their sessions end at once")
    ur.add_argument("username")
    ur.set_defaults(handler=cmd_users_remove)
    uu = usub.add_parser("unlock", help="forget the failed sign-ins of a user name and/or a client address")
    uu.add_argument("username", nargs="?")
    uu.add_argument("--address", help="a client address (IPv6: any address of its /64)")
    uu.set_defaults(handler=cmd_users_unlock)
    us = usub.add_parser("sign-out", help="end every session of a user")
    us.add_argument("username")
    us.set_defaults(handler=cmd_users_sign_out)
    ul = usub.add_parser("list", help="users, their second factor, failed sign-ins and sessions")
    ul.set_defaults(handler=cmd_users_list)
    for p in (ua, ur, uu, us, ul):
        p.add_argument("--file", type=Path, default=None, help="users file (default DATA_DIR/users.yaml)")

    tp = sub.add_parser("tokens", help="API tokens for other systems: add, list, revoke")
    tsub = tp.add_subparsers(dest="tokens_cmd", required=True)
    ta = tsub.add_parser("add", help="make a token; it is printed once, only its hash is kept")
    ta.add_argument("name")
    ta.add_argument("--scope", action="append", required=True, choices=SCOPES, help="repeat for several")
    ta.add_argument("--department", default="emergency_management",
                    help="the department incidents it submits belong to (default emergency_management)")
    ta.set_defaults(handler=cmd_tokens_add)
    tl = tsub.add_parser("list", help="the tokens (never their secrets)")
    tl.set_defaults(handler=cmd_tokens_list)
    tr = tsub.add_parser("revoke", help="revoke a token: it stops working at its next request")
    tr.add_argument("name")
    tr.set_defaults(handler=cmd_tokens_revoke)
    for p in (ta, tl, tr):
        p.add_argument("--file", type=Path, default=None, help="tokens file (default DATA_DIR/tokens.yaml)")


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no login name (a container): still say it was the command line
        return "cli"


def _users_path(args: argparse.Namespace, settings: Settings) -> Path:
    from command.trust.auth import ensure_users_file

    return args.file or ensure_users_file(settings.data_dir / "users.yaml")


def _refused(exc: InvalidInput) -> int:
    print(f"error: {exc.message}", file=sys.stderr)
    return 2


def _with_redis(settings: Settings, work) -> None:
    """Run `work(r)` on the app's Redis: sessions to end, the audit trail."""
    from command.runtime.redis_server import redis_for

    with redis_for(settings) as r:
        work(r)


def cmd_users_add(args: argparse.Namespace, settings: Settings) -> int:
    from command.trust import events
    from command.trust.auth import save_user
    from command.trust.sessions import SessionStore, idle_ms_from_env

    path = _users_path(args, settings)
    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    try:
        saved = save_user(path, username=args.username, password=password, department=args.department,
                          role=args.role, name=args.name, totp_enrol=args.totp, clearance=args.clearance)
    except InvalidInput as exc:
        return _refused(exc)
    user = saved.user
    ended = 0

    def work(r) -> None:
        nonlocal ended
        if saved.replaced is not None:  # a new password (or role...): the old sessions end now
            ended = SessionStore(r, idle_ms_from_env()).end_user(user.username)
        action = "user_changed" if saved.replaced is not None else "user_added"
        events.record(r, _who(), action, strict=True, username=user.username, role=user.role,
                      department=user.department, clearance=user.clearance, totp=user.has_totp,
                      sessions_ended=ended)
        if saved.enrolment is not None:
            events.record(r, _who(), "totp_enrolled", strict=True, username=user.username)

    _with_redis(settings, work)
    print(f"user {user.username} ({user.role}, {user.department}, clearance {user.clearance}) saved in {path}"
          + (f"; {ended} session(s) ended" if ended else ""))
    if saved.enrolment is not None:
        e = saved.enrolment
        print("\nTwo-factor sign-in: add this to an authenticator app (shown once, keep it secret):")
        print(f"  {e.uri}")
        print(f"  secret: {e.secret}")
        _print_qr(e.uri)
        print("\nRecovery codes (each works once, in place of a code; store them offline):")
        for c in e.recovery_codes:
            print(f"  {c}")
    elif saved.user.has_totp:
        print("two-factor sign-in: kept (add --totp to enrol a new authenticator)")
    return 0


def _print_qr(uri: str) -> None:
    """The URI as a QR code in the terminal, when qrcode is installed and this is a terminal."""
    if not sys.stdout.isatty():
        return
    try:
        import qrcode
    except ImportError:
        return
    qr = qrcode.QRCode(border=1)
    qr.add_data(uri)
    qr.print_ascii(invert=True)


def cmd_users_remove(args: argparse.Namespace, settings: Settings) -> int:
    from command.trust import events
    from command.trust.auth import remove_user
    from command.trust.sessions import SessionStore, idle_ms_from_env

    path = _users_path(args, settings)
    gone = remove_user(path, args.username)
    if gone is None:
        print(f"error: no user {args.username!r} in {path}", file=sys.stderr)
        return 2
    ended = 0

    def work(r) -> None:
        nonlocal ended
        ended = SessionStore(r, idle_ms_from_env()).end_user(gone.username)
        events.record(r, _who(), "user_removed", strict=True, username=gone.username, role=gone.role,
                      sessions_ended=ended)

    _with_redis(settings, work)
    print(f"user {gone.username} removed from {path}; {ended} session(s) ended")
    return 0


def cmd_users_unlock(args: argparse.Namespace, settings: Settings) -> int:
    from command.trust import events
    from command.trust.throttle import unlock

    if not args.username and not args.address:
        print("error: name a user, an --address, or both", file=sys.stderr)
        return 2
    cleared = 0

    def work(r) -> None:
        nonlocal cleared
        cleared = unlock(r, name=args.username, address=args.address)
        events.record(r, _who(), "throttle_unlocked", strict=True, name=args.username, address=args.address)

    _with_redis(settings, work)
    what = " and ".join(x for x in (args.username and f"user {args.username}",
                                     args.address and f"address {args.address}") if x)
    print(f"unlocked {what}" + ("" if cleared else " (it had no failed sign-ins)"))
    return 0


def cmd_users_sign_out(args: argparse.Namespace, settings: Settings) -> int:
    from command.trust import events
    from command.trust.sessions import SessionStore, idle_ms_from_env

    ended = 0

    def work(r) -> None:
        nonlocal ended
        ended = SessionStore(r, idle_ms_from_env()).end_user(args.username)
        events.record(r, _who(), "sessions_ended", strict=True, username=args.username, sessions=ended)

    _with_redis(settings, work)
    print(f"{ended} session(s) of {args.username} ended")
    return 0


def cmd_users_list(args: argparse.Namespace, settings: Settings) -> int:
    from command.trust.auth import load_users
    from command.trust.sessions import SessionStore, idle_ms_from_env
    from command.trust.throttle import Throttle

    users = load_users(_users_path(args, settings))
    lines: list[str] = []

    def work(r) -> None:
        thr, store = Throttle(r), SessionStore(r, idle_ms_from_env())
        for u in sorted(users.values(), key=lambda u: u.username):
            st = next(iter(thr.state(u.username).values()))
            second = "totp" if u.has_totp else ("MISSING" if u.needs_totp else "-")
            wait = f" (waits {st['wait_s']:.0f} s)" if st["wait_s"] else ""
            lines.append(f"{u.username:<16} {u.role:<10} {u.department:<22} {u.clearance:<8} 2fa={second:<7} "
                         f"{'demo ' if u.demo else ''}failures={st['failures']}{wait} sessions={store.count(u.username)}")

    _with_redis(settings, work)
    print("\n".join(lines))
    return 0


def _tokens_path(args: argparse.Namespace, settings: Settings) -> Path:
    return args.file or settings.data_dir / "tokens.yaml"


def cmd_tokens_add(args: argparse.Namespace, settings: Settings) -> int:
    from command.trust import events
    from command.trust.tokens import add_token

    try:
        token, secret = add_token(_tokens_path(args, settings), args.name, args.scope, args.department)
    except InvalidInput as exc:
        return _refused(exc)
    _with_redis(settings, lambda r: events.record(r, _who(), "token_added", strict=True, name=token.name,
                                                  scopes=list(token.scopes), department=token.department))
    print(f"token {token.name} ({', '.join(token.scopes)}; department {token.department}); "
          "send it as `Authorization: Bearer <token>`. It is shown once:")
    print(secret)
    return 0


def cmd_tokens_list(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from command.trust.tokens import list_tokens

    for tk in list_tokens(_tokens_path(args, settings)):
        made = datetime.fromtimestamp(tk.created / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
        print(f"{tk.name:<20} {','.join(tk.scopes):<45} {tk.department:<22} {made}")
    return 0


def cmd_tokens_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from command.trust import events
    from command.trust.tokens import revoke_token

    if not revoke_token(_tokens_path(args, settings), args.name):
        print(f"error: no token {args.name!r}", file=sys.stderr)
        return 2
    _with_redis(settings, lambda r: events.record(r, _who(), "token_revoked", strict=True, name=args.name))
    print(f"token {args.name} revoked")
    return 0
