"""Dispatch by deadline in a real browser, on the sample drill run by the real app (drill runner,
engine, scripted actions): an operator's card says when each unit must leave and when it is working;
a task completed while the river keeps rising is reopened by the engine and comes back on the fire
service's page with its reason, and on the operator's dispatch board (docs/dispatch.md)."""

from __future__ import annotations

import orjson
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from command.keys import Keys
from command.models import Task
from command.timeutil import to_datetime

from .conftest import severe_console_errors, sign_in, wait
from .test_dashboard import start_paused_at, wait_until

pytestmark = pytest.mark.browser
H = 3_600_000
TZ = "Asia/Shanghai"
# a card of the river-stage rule (the stations' own levels) on a gauge
CARD = ("//div[contains(@class,'alert-card')][.//span[contains(., '({subject})')]]"
        "[.//span[contains(., 'river-stage')]]")


def hm(ms: int) -> str:
    return to_datetime(ms, TZ).strftime("%H:%M")


def tasks_of(client, keys: Keys, department: str) -> list[Task]:
    ids = [i.decode() for i in client.zrange(keys.department_tasks(department), 0, -1)]
    return [Task.model_validate_json(x) for x in client.mget([keys.task(i) for i in ids]) if x] if ids else []


def test_a_card_says_when_to_leave_and_a_reopened_task_comes_back_with_its_reason(app_server, browser,
                                                                                    second_browser):
    base, client, _ = app_server
    # the sample's script: WL-017's crew reports the embankment raised at 12:45; the river keeps rising
    ns = start_paused_at(client, "jiangcheng_flood", "3600", int(13.5 * H))
    keys = Keys(ns)

    def reopened() -> Task | None:
        return next((t for t in tasks_of(client, keys, "fire_rescue") if t.subject == "WL-017"
                     and t.status == "reopened"), None)

    wait_until(lambda: reopened() is not None, timeout=30)
    task = reopened()
    assert task is not None
    reason = task.history[-1].note
    assert task.history[-1].by == "verification" and reason.startswith("sensors disagree: WL-017 rose ")

    # the operator's card for WL-017's river-stage alert (red since 13:15): each unit's leave-by and arrival
    sign_in(browser, base, "operator")  # the newest drill is the one shown
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "exercise-banner"), "EXERCISE"))
    card = CARD.format(subject="WL-017")
    wait(browser, 30).until(EC.presence_of_element_located((By.XPATH, card + "//div[contains(@class,'trip')]")))
    fp = next(a["fingerprint"] for a in (orjson.loads(client.get(keys.alert(f.decode())))
                                         for f in client.zrange(keys.alerts_open, 0, -1))
              if a["subject"] == "WL-017" and a["rule"] == "river-stage")
    rec = orjson.loads(client.get(keys.recommendation(fp)))
    trips = [e.text for e in browser.find_elements(By.XPATH, card + "//div[contains(@class,'trip')]")]
    assert len(trips) == len(rec["items"]) >= 1
    for text, item in zip(trips, rec["items"], strict=True):
        arrive = item["arrive_at"] + (-item["arrive_at"] % 60_000)
        assert f"working by {hm(arrive)}" in text
        if item["late_min"] > 0:
            assert "leave now" in text and " after " in text
        else:
            assert f"leave by {hm(item['leave_by'])}" in text and " before " in text

    # the dispatch board says the task is back, and why
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "map-dispatches"), f"Reopened: {reason}"))

    # the fire service's page: the reopened task at the top, with its reason, and a form to answer it
    sign_in(second_browser, base, "fire", path="/department")
    wait(second_browser).until(EC.text_to_be_present_in_element((By.ID, "exercise-banner"), "EXERCISE"))
    mine = "//div[contains(@class,'task-card')][.//b[contains(., 'WL-017')]]"
    wait(second_browser).until(EC.text_to_be_present_in_element((By.XPATH, mine), f"Reopened: {reason}"))
    text = second_browser.find_element(By.XPATH, mine).text
    assert "reopened" in text and "verification" in text  # its status and the history entry's author
    cards = second_browser.find_elements(By.CSS_SELECTOR, "#dept-tasks .task-card")
    assert "WL-017" in cards[0].text  # a task back on the list comes first
    assert second_browser.find_elements(By.XPATH, mine + "//button[normalize-space()='Send update']")
    assert severe_console_errors(browser) == []
    assert severe_console_errors(second_browser) == []
