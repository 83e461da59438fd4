"""`/admin` (role admin): users with their second factor, the throttle and sessions; API tokens."""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

import flask

from command import i18n
from command.i18n import t
from command.trust import events
from command.trust.auth import UsersFile
from command.trust.sessions import SessionStore, idle_ms_from_env
from command.trust.throttle import Throttle
from command.trust.tokens import TokensFile

from .access import route_policy
from .common import dept_names, rds
from .web_basics import (
    TEMPLATES,
    pick_lang,
)

log = logging.getLogger(__name__)


# ---- the admin page ------------------------------------------------------------------------------------
i18n.add({
    "admin.title": {"en": "Administration", "zh": "系统管理"},
    "admin.users": {"en": "Users", "zh": "用户"},
    "admin.tokens": {"en": "API tokens", "zh": "API 令牌"},
    "admin.done": {"en": "Done.", "zh": "已完成。"},
    "admin.help": {"en": "Add or change users and make tokens with the command line:",
                   "zh": "添加或修改用户、创建令牌请使用命令行："},  # then the command, as code
})
# the tables' headings and buttons, and the roles
i18n.add({
    "admin.user": {"en": "user", "zh": "用户"},
    "admin.role": {"en": "role", "zh": "角色"},
    "admin.department": {"en": "department", "zh": "部门"},
    "admin.2fa": {"en": "2FA", "zh": "双重认证"},
    "admin.recovery": {"en": "recovery codes", "zh": "恢复码"},
    "admin.failures": {"en": "failed sign-ins", "zh": "登录失败"},
    "admin.sessions": {"en": "sessions", "zh": "会话"},
    "admin.demo": {"en": "demo", "zh": "演示"},
    "admin.missing_totp": {"en": "missing: cannot sign in", "zh": "缺失：无法登录"},
    "admin.waits": {"en": "waits {s} s", "zh": "需等待 {s} 秒"},
    "admin.unlock": {"en": "unlock", "zh": "解锁"},
    "admin.end_sessions": {"en": "end sessions", "zh": "结束会话"},
    "admin.name": {"en": "name", "zh": "名称"},
    "admin.scopes": {"en": "scopes", "zh": "权限范围"},
    "admin.revoke": {"en": "revoke", "zh": "吊销"},
    "role.operator": {"en": "operator", "zh": "值班员"},
    "role.department": {"en": "department", "zh": "部门"},
    "role.planner": {"en": "planner", "zh": "演练策划"},
    "role.admin": {"en": "admin", "zh": "管理员"},
    "role.auditor": {"en": "auditor", "zh": "审计员"},
})


def register_admin(server: flask.Flask, users_path: Path, users: UsersFile, tokens: TokensFile) -> None:
    """`/admin` (role admin): users with their second factor, throttle and sessions; API tokens.
    It can unlock a throttled name, end a user's sessions and revoke a token (each audited); users
    and tokens are made on the command line, where their secrets are shown once."""
    from command.trust import throttle as throttle_mod
    from command.trust.tokens import list_tokens, revoke_token

    def admin_user() -> dict[str, str]:
        user = flask.session.get("user")
        if not user or user.get("role") != "admin":
            flask.abort(403)
        return user

    def check_csrf() -> None:
        sent = flask.request.form.get("csrf", "")
        if not sent or not hmac.compare_digest(sent, str(flask.session.get("csrf", ""))):
            flask.abort(403)

    @server.route("/admin")
    @route_policy(allow="admin")
    def _admin():
        admin_user()
        lang = pick_lang(flask.request)
        r = rds()
        thr = Throttle(r)
        store = SessionStore(r, idle_ms_from_env())
        rows = []
        for u in sorted(users.users().values(), key=lambda u: u.username):
            st = next(iter(thr.state(u.username).values()))
            rows.append({"username": u.username, "name": u.name, "role": u.role, "department": u.department,
                         "totp": u.has_totp, "needs_totp": u.needs_totp, "demo": u.demo,
                         "recovery": len(u.recovery_codes), "failures": st["failures"], "wait_s": st["wait_s"],
                         "sessions": store.count(u.username)})
        words = {"app_title": t("app.title", lang), "title": t("admin.title", lang), "users": t("admin.users", lang),
                 "tokens": t("admin.tokens", lang), "help": t("admin.help", lang), "sign_out": t("shell.sign_out", lang),
                 "done": t("admin.done", lang)}
        words.update({w: t(f"admin.{w}", lang) for w in (
            "user", "role", "department", "2fa", "recovery", "failures", "sessions", "demo", "missing_totp", "unlock",
            "end_sessions", "name", "scopes", "revoke")})
        names = dept_names(lang)
        for row in rows:  # shown in the page's language
            row["role_label"] = t(f"role.{row['role']}", lang)
            row["department_label"] = names.get(row["department"], row["department"])
            row["waits"] = t("admin.waits", lang, s=round(row["wait_s"])) if row["wait_s"] else ""
        return TEMPLATES.get_template("admin.html").render(
            words=words, users=rows, tokens=list_tokens(tokens.path), csrf=flask.session.get("csrf", ""),
            done=flask.request.args.get("done") == "1", html_lang="zh-CN" if lang == "zh" else "en")

    @server.route("/admin/<action>", methods=["POST"])
    @route_policy(allow="admin", note="and the session's CSRF token")
    def _admin_action(action: str):
        me = admin_user()
        check_csrf()
        target = flask.request.form.get("name", "")[:64]
        r = rds()
        if action == "unlock" and target:
            throttle_mod.unlock(r, name=target)
            events.record(r, me["username"], "throttle_unlocked", name=target, via="web")
        elif action == "end-sessions" and target:
            n = SessionStore(r, idle_ms_from_env()).end_user(target)
            events.record(r, me["username"], "sessions_ended", username=target, sessions=n, via="web")
        elif action == "revoke-token" and target:
            if revoke_token(tokens.path, target):
                events.record(r, me["username"], "token_revoked", name=target, via="web")
        else:
            flask.abort(400)
        return flask.redirect("/admin?done=1")
