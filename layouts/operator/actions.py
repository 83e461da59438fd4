"""What the operator's buttons do, as plain functions the callbacks call: dispatch the recommendation (or
the operator's own choice), fill the action dialog, confirm an alert action. Each answers with what the
page shows; a refusal from the domain (a `command.errors.CommandError`) is shown in the page's language
(`layouts.common.refusal_text`).
Commands are stamped with `command.clock.command_time`."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
import flask
import orjson
from rq import Queue

from command.clock import command_time
from command.errors import REDIS_DOWN, CommandError, unavailable_from
from command.i18n import t
from command.keys import RQ_QUEUE, Keys
from command.ops.dispatch import DEFAULT_ACK_MS, AlreadyDispatched, alert_action, dispatch
from command.ops.jobs import schedule_ack_check
from command.publish import views
from command.runtime.redis_client import rq_connection

from ..common import dept_names, fmt_time, ns_tz, refusal_text
from . import words  # noqa: F401 - the page's words


def ack_ms() -> int:
    """How long a department has to acknowledge a task (the app's setting; the default outside a request)."""
    try:
        return int(flask.current_app.config.get("ECD_ACK_MS", DEFAULT_ACK_MS))
    except RuntimeError:  # outside a request (tests): the default
        return DEFAULT_ACK_MS


def dispatch_recommended(r, keys: Keys, fp: str, level: str, user: dict, lang: str, resource_ids=None):
    """Dispatch the recommendation (or the operator's own choice); the message the operator sees (also when
    Redis is down: the click was not lost silently, it was refused)."""
    try:
        return _dispatch_recommended(r, keys, fp, level, user, lang, resource_ids)
    except REDIS_DOWN as exc:
        down = unavailable_from(exc)
        if down is None:
            raise
        return dbc.Alert(refusal_text(down, lang), color="danger", dismissable=True, id="map-toast-msg")


def _dispatch_recommended(r, keys: Keys, fp: str, level: str, user: dict, lang: str, resource_ids=None):
    ids = resource_ids
    if ids is None:
        raw = r.get(keys.alert(fp))
        rec = views.current_recommendations(r, keys, [orjson.loads(raw)]).get(fp) if raw else None
        ids = [i["resource_id"] for i in (rec or {}).get("items", [])]
    now = command_time(r, keys)
    tz = ns_tz(r, keys)
    try:
        res = dispatch(r, keys, fingerprint=fp, level=level, resource_ids=ids, operator=user["username"], now=now,
                       ack_ms=ack_ms())
    except CommandError as exc:
        return dbc.Alert(refusal_text(exc, lang), color="warning", dismissable=True, id="map-toast-msg")
    if isinstance(res, AlreadyDispatched):
        return dbc.Alert(t("map.dispatch_lost", lang, who=res.by, time=fmt_time(res.at, tz)), color="warning",
                         dismissable=True, id="map-toast-msg")
    # each department's acknowledgement timer runs as an RQ job on the namespace's clock
    queue = Queue(RQ_QUEUE, connection=rq_connection(r))  # RQ's own Redis beside a cluster (ECD_RQ_REDIS_URL)
    for task_id in res.task_ids:
        schedule_ack_check(queue, keys.ns, task_id, 0.5)
    names = dept_names(lang)
    return dbc.Alert(t("map.dispatch_ok", lang, n=len(res.resource_ids), s="" if len(res.resource_ids) == 1 else "s",
                       subject=res.subject,
                       depts=", ".join(names.get(d, d) for d in res.departments)),
                     color="success", dismissable=True, id="map-toast-msg")


def action_dialog(r, keys: Keys, fp: str, action: str, lang: str) -> tuple[str, dict, list, list, dict] | None:
    """The dialog for an alert's action: (title, target, resource options, chosen, style of the resource
    list); None when the alert is gone. Only "change" chooses resources."""
    raw = r.get(keys.alert(fp))
    if raw is None:
        return None
    a = orjson.loads(raw)
    title = {"change": t("map.change", lang), "acknowledge": t("map.ack", lang),
             "escalate": t("map.escalate", lang), "resolve": t("map.resolve", lang)}[action] + f" · {a['subject']}"
    options: list[dict] = []
    value: list[str] = []
    style: dict[str, str] = {"display": "none"}
    if action == "change":
        rec = views.current_recommendations(r, keys, [a]).get(fp) or {}
        value = [i["resource_id"] for i in rec.get("items", [])]
        options = resource_options(r, keys, a, lang)
        style = {}
    return title, {"fp": fp, "action": action, "level": a["level"]}, options, value, style


def resource_options(r, keys: Keys, alert: dict, lang: str) -> list[dict]:
    """Every available resource, nearest first, for the operator to choose from."""
    from command.engine.recommend import haversine_km

    names = dept_names(lang)
    res = [x for x in views.resources(r, keys) if x.status.value == "available"]
    if alert.get("lat") is not None:
        res.sort(key=lambda x: haversine_km(alert["lat"], alert["lon"], x.lat, x.lon))
    out = []
    for x in res:
        d = haversine_km(alert["lat"], alert["lon"], x.lat, x.lon) if alert.get("lat") is not None else None
        label = f"{x.name or x.id} ({x.id}) · {x.type.replace('_', ' ')} · {names.get(x.department, x.department)}"
        out.append({"label": label + (f" · {d:.1f} km" if d is not None else ""), "value": x.id})
    return out


def confirm_action(r, keys: Keys, target: dict, chosen: list | None, comment: str | None, user: dict,
                   lang: str) -> tuple[bool, Any, Any, bool]:
    """The dialog's Confirm: (keep the dialog open, its error, the toast or None, whether anything changed)."""
    if target["action"] == "change":
        msg = dispatch_recommended(r, keys, target["fp"], target["level"], user, lang, resource_ids=chosen or [])
        return False, "", msg, True
    try:
        try:
            alert_action(r, keys, fingerprint=target["fp"], action=target["action"], user=user["username"],
                         now=command_time(r, keys), comment=comment or "")
        except REDIS_DOWN as down:
            raise unavailable_from(down) or down from None
    except CommandError as exc:  # its only field is the comment, right above the dialog's error line
        return True, refusal_text(exc, lang), None, False
    label = t({"acknowledge": "map.ack", "escalate": "map.escalate", "resolve": "map.resolve"}[target["action"]], lang)
    return False, "", dbc.Alert(t("map.done", lang, action=label), color="info", dismissable=True,
                                id="map-toast-msg"), True
