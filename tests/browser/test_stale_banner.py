"""A Redis outage as the duty officer and a fire crew see it: `python app.py` on its own embedded Redis,
stopped (SIGSTOP) while both pages are open. Each page says "Data unavailable since HH:MM" within a few
seconds (assets/changes.js, from /_changes' 503 and the time the outage began), keeps what it last
drew, and clears the banner by itself when Redis answers again; a change made during the outage shows
once it is back. With the web server itself gone, the pages say there is no connection. The time is
the page's own clock (the browser's time zone)."""

from __future__ import annotations

import os
import re
import signal
from datetime import datetime

import pytest
from selenium.webdriver.common.by import By

from command.ops import drills

from ..conftest import SCENARIOS
from ..faults.conftest import start_app, stop_app
from .conftest import make_driver, severe_console_errors, sign_in, wait


@pytest.fixture
def own_app(tmp_path):
    data = tmp_path / "var"
    data.mkdir()
    app = start_app(data, "--workers", "2")
    yield app
    if app.proc.poll() is None:
        stop_app(app)


def banner(driver) -> str:
    el = driver.find_element(By.ID, "shell-stale")
    return el.text if el.is_displayed() else ""


def test_a_redis_outage_is_said_on_every_page_with_its_start_and_cleared_after(own_app):
    app = own_app
    ns = drills.start_drill(app.r, SCENARIOS / "rule_threshold", "60", by="test")
    op, phone = make_driver(), make_driver()
    try:
        sign_in(op, app.base, "operator")
        sign_in(phone, app.base, "fire", path="/department")
        for d in (op, phone):
            wait(d, 30).until(lambda d: d.execute_script("return (window.ecdChanges || {}).asks || 0") >= 2)
            assert banner(d) == ""
        wait(op, 30).until(lambda d: d.find_elements(By.ID, "exercise-banner"))  # the running drill is shown
        redis_pid = app.pid("redis")
        stopped_at = datetime.now()
        os.kill(redis_pid, signal.SIGSTOP)
        try:
            for d in (op, phone):
                text = wait(d, 10).until(banner)
                assert text.startswith("Data unavailable since "), text
                hhmm = re.search(r"since (\d\d):(\d\d)", text)
                shown = int(hhmm.group(1)) * 60 + int(hhmm.group(2))
                assert abs(shown - (stopped_at.hour * 60 + stopped_at.minute)) <= 1, (text, stopped_at)
            # what was drawn stays: the map and the exercise banner are still there
            assert op.find_elements(By.ID, "map-graph") and op.find_elements(By.ID, "exercise-banner")
            assert phone.find_elements(By.ID, "dept-title")
        finally:
            os.kill(redis_pid, signal.SIGCONT)
        app.wait_healthy(30)
        for d in (op, phone):
            wait(d, 30).until(lambda d: banner(d) == "")
        # and the pages follow changes again: the drill paused after the outage is said so in the top bar
        drills.send(app.r, "pause", ns=ns, by="test")
        wait(op, 30).until(lambda d: "⏸" in d.find_element(By.ID, "shell-clock").text)
        for d in (op, phone):  # the browser's note of each 503 answer is all the console has
            assert [e for e in severe_console_errors(d) if "_changes" not in e["message"]] == []
        # the web server itself gone: "no connection", from the first question that went unanswered
        stop_app(app)
        for d in (op, phone):
            text = wait(d, 15).until(banner)
            assert text.startswith("No connection to the server since "), text
    finally:
        op.quit()
        phone.quit()
