"""Refusals in the page's language (layouts/common.py `refusal_text`, `refusal_with`): a refusal with a key
of its own is said in the page's words; one without is its kind's lead sentence with its English detail
marked lang="en"; the API's JSON stays English. Provoked for real: a dispatch conflict on the operator's
page and a drill command the drill cannot take, through the exercise page's own callback over HTTP."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
import pytest
from dash import html
from dash.development.base_component import Component

from command import errors
from command.config import Settings
from command.i18n import TEXT, t
from command.keys import DRILL_COMMANDS, Keys
from command.ops import drills
from command.ops.dispatch import AlreadyDispatched, dispatch
from command.scenarios.replay import run_replay
from layouts.common import refusal_text, refusal_with

from .conftest import SCENARIOS
from .test_access import _prop_id, _split_outputs

LATIN = re.compile(r"[A-Za-z]")


def words_outside_english(node: Any) -> list[str]:
    """Every text of a rendered value (a string, a component, a list, Dash's JSON of one), leaving out
    what is marked lang="en"."""
    if isinstance(node, Component):
        node = node.to_plotly_json()
    if isinstance(node, str):
        return [node]
    if isinstance(node, list | tuple):
        return [w for n in node for w in words_outside_english(n)]
    if isinstance(node, dict):
        props = node.get("props", node)
        if props.get("lang") == "en":
            return []
        return words_outside_english(props.get("children") or [])
    return []


def latin_in(node: Any) -> list[str]:
    return [w for w in words_outside_english(node) if LATIN.search(w)]


# ---- the helper -----------------------------------------------------------------------------------------
def test_a_refusal_with_a_key_is_said_in_the_pages_words():
    exc = errors.Conflict("Pump 3 is out of service, not available", field="resources", key="err.unit_unavailable",
                          params={"name": "泵 3", "status": "out_of_service"})
    assert refusal_text(exc, "zh") == t("err.unit_unavailable", "zh", name="泵 3") == "泵 3 已不可用，请选择其他资源。"
    assert refusal_text(exc, "en") == "泵 3 is no longer available: choose another resource."
    assert exc.message == "Pump 3 is out of service, not available"  # the English for logs and the API
    assert exc.to_json() == {"error": "conflict", "message": exc.message, "field": "resources"}


def test_a_refusal_without_a_key_gets_its_kinds_lead_and_its_detail_marked_english():
    for cls, lead in ((errors.NotFound, "err.not_found"), (errors.Forbidden, "err.forbidden"),
                      (errors.Conflict, "err.conflict"), (errors.CommandError, "err.refused")):
        shown = refusal_text(cls("no such thing x1"), "zh")
        assert isinstance(shown, list) and shown[0] == TEXT[lead]["zh"]
        detail = shown[-1]
        assert isinstance(detail, html.Span) and detail.lang == "en" and detail.children == "no such thing x1"
        assert latin_in(shown) == []
    rl = refusal_text(errors.RateLimited("slow down", retry_after=3), "zh")
    assert rl[0] == TEXT["err.rate_limited_any"]["zh"]
    un = refusal_text(errors.Unavailable("feed down"), "zh")
    assert un[0] == TEXT["err.unavailable"]["zh"]
    bad = refusal_text(errors.InvalidInput({"a": "too long", "b": "missing"}), "zh")
    assert bad[0] == TEXT["err.invalid"]["zh"] and bad[-1].children == "a: too long; b: missing"
    # in English the message is already in the page's language
    assert refusal_text(errors.NotFound("no such thing x1"), "en") == "no such thing x1"


def test_a_key_that_is_unknown_or_whose_params_do_not_fit_falls_back():
    unknown = refusal_text(errors.Conflict("moved on", key="err.no_such_key"), "zh")
    assert unknown[0] == TEXT["err.conflict"]["zh"] and unknown[-1].children == "moved on"
    missing = refusal_text(errors.Conflict("Pump 3 is busy", key="err.unit_unavailable"), "zh")  # no {name}
    assert missing[0] == TEXT["err.conflict"]["zh"] and missing[-1].children == "Pump 3 is busy"


def test_a_pages_lead_sentence_keeps_the_files_detail_in_english():
    import layouts.exercise_backtest
    import layouts.exercise_events  # noqa: F401 - their words

    shown = refusal_with("exb.bad_rules", errors.InvalidInput("rules.yaml: line 3: unknown field 'x'"), "zh")
    assert shown[0] == "规则文件被拒绝：" and shown[-1].lang == "en"
    assert shown[-1].children == "rules.yaml: line 3: unknown field 'x'" and latin_in(shown) == []
    assert refusal_with("exb.bad_rules", "not UTF-8 text", "zh")[-1].children == "not UTF-8 text"
    keyed = refusal_with("exe.refused", errors.RateLimited("x", retry_after=2, key="err.rate_limited",
                                                           params={"s": 2}), "zh")
    assert keyed == ["未保存：", " ", "短时间内请求过多，请 2 秒后重试。"]


def test_redis_down_and_throttling_carry_keys_but_answer_the_same_json():
    import redis

    down = errors.unavailable_from(redis.ConnectionError("refused"))
    assert down is not None and down.key == "err.redis_down" and latin_in(refusal_text(down, "zh")) == []
    assert down.to_json() == {"error": "unavailable", "message": "Redis is unavailable: refused"}


def test_every_drill_command_a_drill_cannot_take_is_refused_with_a_key():
    drills.check_command("pause", "running", paused=False)  # these go through
    drills.check_command("resume", "paused", paused=True)
    drills.check_command("stop", "starting", paused=False)
    for cmd, status, paused, key in (("pause", "running", True, "err.drill_already_paused"),
                                     ("resume", "running", False, "err.drill_already_running"),
                                     ("speed", "finished", False, "err.drill_not_running"),
                                     ("stop", "stopped", False, "err.drill_not_running"),
                                     ("pause", "", False, "err.drill_not_running")):
        with pytest.raises(errors.Conflict) as got:
            drills.check_command(cmd, status, paused)
        assert got.value.key == key and latin_in(refusal_text(got.value, "zh")) == []


# ---- provoked on the pages ------------------------------------------------------------------------------
@pytest.fixture
def app(redis_url, tmp_path, r):
    from app import create_app

    return create_app(Settings(data_dir=tmp_path / "var"), redis_url=redis_url)


def test_a_dispatch_conflict_on_the_operators_page_is_in_chinese(app, r):
    from layouts.operator import actions

    res = run_replay(r, SCENARIOS / "rule_zone_incident")
    keys = Keys(res.namespace)
    a = orjson.loads(r.get(keys.alert(r.zrange(keys.alerts_open, 0, 0)[0].decode())))
    op = {"username": "operator", "department": "emergency_management", "role": "operator"}
    with app.server.test_request_context("/"):
        # a unit that is out of service: refused, in Chinese, with the unit's name as the data has it
        toast = actions.dispatch_recommended(r, keys, a["fingerprint"], a["level"], op, "zh", resource_ids=["P3"])
        assert toast.color == "warning" and toast.children == "Pump 3 (broken) 已不可用，请选择其他资源。"
        # an alert that is gone, and nothing chosen
        gone = actions.dispatch_recommended(r, keys, "0" * 16, a["level"], op, "zh", resource_ids=["B1"])
        assert gone.children == "该警报已不存在。"
        none = actions.confirm_action(r, keys, {"fp": a["fingerprint"], "level": a["level"], "action": "change"},
                                      [], "", op, "zh")[2]
        assert none.children == "请至少选择一个资源。"
        # another operator got there first: who and when, in Chinese
        first = dispatch(r, keys, fingerprint=a["fingerprint"], level=a["level"], resource_ids=["B1"],
                         operator="duty2", now=1_700_000_000_000)
        assert not isinstance(first, AlreadyDispatched)
        lost = actions.dispatch_recommended(r, keys, a["fingerprint"], a["level"], op, "zh", resource_ids=["B2"])
        assert re.fullmatch(r"duty2 已于 \d\d:\d\d 调派，未重复调派。", lost.children), lost.children
        # resolving without a reason: the dialog's error line
        err = actions.confirm_action(r, keys, {"fp": a["fingerprint"], "level": a["level"], "action": "resolve"},
                                     None, "", op, "zh")[1]
        assert err == "请说明解除警报的原因。"
        for shown in (gone.children, none.children, err):
            assert latin_in(shown) == []


def _control_body(app, ns: str, cmd: str, lang: str) -> dict:
    output = next(o for o in app.callback_map if "ex-stop-confirm.displayed" in o)
    button = {"type": "ex-ctl", "ns": ns, "cmd": cmd, "speed": ""}
    return {"output": output, "outputs": _split_outputs(output),  # the click as the browser passes it on
            "inputs": [{"id": "ex-click", "property": "data", "value": {"id": button, "n": 1, "at": 1}}],
            "state": [{"id": "lang", "property": "data", "value": lang}],
            "changedPropIds": [_prop_id("ex-click", "data")]}


def test_a_drill_command_the_drill_cannot_take_is_refused_in_chinese_and_not_sent(app, r):
    client = app.server.test_client()
    assert client.post("/login", data={"username": "planner", "password": "flood-demo"}).status_code == 302
    ns = drills.start_drill(r, SCENARIOS / "rule_zone_incident", "60", by="planner")  # no runner: stays starting
    sent = r.xlen(DRILL_COMMANDS)
    hdr = {"Origin": "http://localhost"}

    def click(cmd: str) -> dict:
        resp = client.post("/_dash-update-component", json=_control_body(app, ns, cmd, "zh"), headers=hdr)
        assert resp.status_code in (200, 204), resp.data[:300]
        return resp.get_json()["response"] if resp.status_code == 200 else {}

    # not paused: "resume" is refused, in Chinese, and nothing goes to the runner
    got = click("resume")
    msg = next(v["children"] for k, v in got.items() if k.startswith("ex-msg"))
    assert TEXT["err.drill_already_running"]["zh"] in json.dumps(msg, ensure_ascii=False)
    assert latin_in(msg) == [] and r.xlen(DRILL_COMMANDS) == sent
    # a drill that has finished: every command is refused
    r.hset(Keys(ns).replay_control, "status", "finished")
    msg = next(v["children"] for k, v in click("pause").items() if k.startswith("ex-msg"))
    assert TEXT["err.drill_not_running"]["zh"] in json.dumps(msg, ensure_ascii=False) and latin_in(msg) == []
    assert r.xlen(DRILL_COMMANDS) == sent
    # a running drill takes "pause": sent, no refusal
    r.hset(Keys(ns).replay_control, mapping={"status": "running", "paused": "0"})
    got = click("pause")
    assert not any(k.startswith("ex-msg") for k in got) and r.xlen(DRILL_COMMANDS) == sent + 1


def test_a_click_while_redis_is_down_is_refused_in_chinese_not_lost():
    import socket

    import redis

    from layouts.operator import actions

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = redis.Redis(port=port, socket_connect_timeout=0.2, retry=None)  # refused at once, no retries
    keys = Keys("live")
    op = {"username": "operator", "department": "emergency_management", "role": "operator"}
    toast = actions.dispatch_recommended(down, keys, "0" * 16, "red", op, "zh", resource_ids=["B1"])
    assert toast.color == "danger" and toast.children == TEXT["err.redis_down"]["zh"]
    is_open, err, _, changed = actions.confirm_action(down, keys, {"fp": "0" * 16, "level": "red",
                                                                  "action": "acknowledge"}, None, "", op, "zh")
    assert is_open and not changed and err == TEXT["err.redis_down"]["zh"]
