"""Alerts that demand attention, in a real browser: a new red alert starts the alert sound (not when the
user switched it off), unacknowledged alerts flash on their card and on the map, the tab title counts the
unacknowledged red alerts, and the settings are kept on the server for the user."""

from __future__ import annotations

import time

import orjson
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select

from command.keys import Keys
from command.keys import preferences as prefs_key
from command.ops import drills, preferences
from command.ops.dispatch import alert_action

from ..conftest import SCENARIOS
from .conftest import click, severe_console_errors, sign_in, text_of, wait
from .test_dashboard import start_paused_at, wait_until

pytestmark = pytest.mark.browser

HOUR = 3_600_000


def plays(driver) -> int:
    return driver.execute_script("return window.ecdAttention ? window.ecdAttention.plays : -1;")


def run_until(client, ns: str, ms_after_start: int) -> None:
    """Resume the paused drill and pause it again once its clock passes a point."""
    drills.send(client, "resume", ns=ns, by="test")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        st = drills.drill_state(client, ns)
        if st.get("clock") and int(st["clock"]) - int(st["start"]) >= ms_after_start:
            drills.send(client, "pause", ns=ns, by="test")
            wait_until(lambda: drills.drill_state(client, ns).get("paused") == "1")
            return
        time.sleep(0.05)
    pytest.fail(f"drill {ns} did not reach the point: {drills.drill_state(client, ns)}")


# the browser's notifications, counted: asked for permission how often, and what was shown
NOTIFICATIONS = """
window.__asked = 0; window.__notes = [];
function N(title, opts) { window.__notes.push([title, (opts || {}).body]); }
N.permission = 'default';
N.requestPermission = function () { window.__asked += 1; N.permission = 'granted'; return Promise.resolve('granted'); };
window.Notification = N;
"""


def flashing_cards(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('.alert-card.attn-flash')).map(c => JSON.parse(c.id).fp);")


def test_a_new_red_alert_sounds_flashes_and_counts_in_the_title(app_server, browser):
    base, client, _ = app_server
    client.delete(prefs_key("operator"))
    # I1 (red, people trapped in the old town) is open; I4 (red, levee breach) comes at 2 h, INJ-1 at 2 h 30
    ns = start_paused_at(client, "rule_zone_incident", "600", HOUR + 5 * 60_000)
    keys = Keys(ns)
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": NOTIFICATIONS})
    sign_in(browser, base, "operator")
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "exercise-banner"), "EXERCISE"))
    wait(browser, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".maplibregl-canvas")))
    assert browser.find_element(By.ID, "attn-sound").text == "🔔 Sound on"  # on by default, from red
    assert Select(browser.find_element(By.ID, "attn-level")).first_selected_option.get_attribute("value") == "red"
    wait(browser).until(lambda d: d.title == "(1) red · Flood command")
    # the alert already open when the page came flashes (unacknowledged) but does not sound
    wait(browser).until(lambda d: len(flashing_cards(d)) == 1)
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#attn-map-layer .attn-pulse[data-fp]"))
    assert browser.execute_script(
        "return getComputedStyle(document.querySelector('.alert-card.attn-flash')).animationName;") == "attn-flash"
    time.sleep(1.2)
    assert plays(browser) == 0

    # a new red alert: the sound starts, its card and its place flash, the title counts two
    run_until(client, ns, 2 * HOUR + 5 * 60_000)
    wait(browser).until(lambda d: plays(d) == 1)
    wait(browser).until(lambda d: d.title == "(2) red · Flood command")
    wait(browser).until(lambda d: len(flashing_cards(d)) == 2)
    pulses = browser.find_elements(By.CSS_SELECTOR, "#attn-map-layer .attn-pulse")
    assert {p.get_attribute("data-fp") for p in pulses} == set(flashing_cards(browser))

    # switched off: kept on the server for this user, and the next red alert is silent; desktop
    # notifications switched on: the browser is asked only then, and shows the next red alert
    assert browser.execute_script("return [window.__asked, window.__notes.length];") == [0, 0]
    click(browser, browser.find_element(By.ID, "attn-sound"))
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "attn-sound"), "Sound off"))
    assert preferences.load(client, "operator").sound is False
    click(browser, browser.find_element(By.ID, "attn-notify"))
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "attn-notify"), "Desktop alerts on"))
    assert browser.execute_script("return window.__asked;") == 1
    assert preferences.load(client, "operator").notify is True
    run_until(client, ns, 2 * HOUR + 35 * 60_000)
    wait(browser).until(lambda d: d.title == "(3) red · Flood command")
    wait(browser).until(lambda d: d.execute_script("return window.__notes.length;") == 1)
    assert "INJ-1" in browser.execute_script("return window.__notes[0][1];")
    time.sleep(1.2)
    assert plays(browser) == 1

    # acknowledging stops the flash and takes the alert out of the title's count
    fp = flashing_cards(browser)[0]
    alert_action(client, keys, fingerprint=fp, action="acknowledge", user="operator",
                 now=int(client.get(keys.clock)), comment="")
    wait(browser).until(lambda d: d.title == "(2) red · Flood command")
    wait(browser).until(lambda d: fp not in flashing_cards(d) and len(flashing_cards(d)) == 2)

    # the settings follow the user to another page load; on again, from orange
    click(browser, browser.find_element(By.ID, "attn-sound"))
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "attn-sound"), "Sound on"))
    Select(browser.find_element(By.ID, "attn-level")).select_by_value("orange")
    wait_until(lambda: preferences.load(client, "operator").level == "orange")
    browser.refresh()
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "attn-sound"), "Sound on"))
    assert Select(browser.find_element(By.ID, "attn-level")).first_selected_option.get_attribute("value") == "orange"
    assert "Desktop alerts on" in text_of(browser, "attn-notify")
    # in Chinese, the title says it in Chinese
    click(browser, browser.find_element(By.ID, "shell-lang"))
    wait(browser).until(lambda d: d.title == "(2) 红色 · 防汛指挥")
    assert "声音开" in text_of(browser, "attn-sound")
    assert severe_console_errors(browser) == []
    # another page has no alert count in its title
    browser.get(base + "/feeds")
    wait(browser).until(EC.presence_of_element_located((By.ID, "page")))
    wait(browser).until(lambda d: not d.title.startswith("("))
    drills.send(client, "stop", ns=ns, by="test")


def test_the_chosen_level_decides_what_sounds_and_flashes(app_server, browser):
    """From orange: the yellow alerts of a rising gauge stay quiet and still; its rise to orange sounds."""
    base, client, _ = app_server
    preferences.save(client, "operator", {"sound": True, "level": "orange", "notify": False})
    # rule_threshold: WL-A and WL-F yellow at 1 h, WL-A orange at 1 h 45; nothing open at 40 min
    ns = drills.start_drill(client, SCENARIOS / "rule_threshold", "600", by="test")
    wait_until(lambda: drills.drill_state(client, ns).get("clock") is not None, 60)
    drills.send(client, "pause", ns=ns, by="test")
    wait_until(lambda: drills.drill_state(client, ns).get("paused") == "1")
    st = drills.drill_state(client, ns)
    assert int(st["clock"]) - int(st["start"]) < HOUR, "the drill ran past its first alerts before the pause"
    sign_in(browser, base, "operator")
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "exercise-banner"), "EXERCISE"))
    assert Select(browser.find_element(By.ID, "attn-level")).first_selected_option.get_attribute("value") == "orange"
    wait(browser).until(lambda d: d.execute_script("return window.ecdAttention.ns !== null;"))

    run_until(client, ns, HOUR + 5 * 60_000)
    keys = Keys(ns)
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#map-queue .alert-card")) == 2)
    time.sleep(1.2)
    assert plays(browser) == 0 and flashing_cards(browser) == []  # yellow: below the chosen level

    run_until(client, ns, HOUR + 50 * 60_000)
    wait(browser).until(lambda d: plays(d) == 1)
    alerts = [orjson.loads(client.get(keys.alert(fp.decode())) or b"{}") for fp in client.zrange(keys.alerts_open, 0, -1)]
    orange = [a["fingerprint"] for a in alerts if a.get("level") == "orange"]
    assert len(orange) == 1 and len(alerts) == 2
    wait(browser).until(lambda d: flashing_cards(d) == orange)
    assert browser.title == "Flood command"  # no red alert: nothing to count
    assert severe_console_errors(browser) == []
    drills.send(client, "stop", ns=ns, by="test")
