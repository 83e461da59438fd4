"""The department page on a phone (390×844, as an iPhone 12-15 shows a page): a compact header that still
carries the EXERCISE banner, the department's tasks first and starting in the top quarter of the screen,
touch targets at least 44 px, a hint on the incident form's category; a screenshot for the README."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from command.clock import command_time
from command.keys import Keys
from command.ops.dispatch import dispatch
from command.publish import views

from ..conftest import ROOT
from .conftest import severe_console_errors, sign_in, wait
from .test_dashboard import start_paused_at

pytestmark = pytest.mark.browser

WIDTH, HEIGHT = 390, 844
SCREENSHOT = ROOT / "docs" / "screenshot-phone.png"

# every control a thumb presses on the page, with its height and width (what is on screen only)
TARGETS = """
const out = [];
const sel = '#page button, #page input, #page textarea, #page .Select-control, #page select, #page a.btn,'
  + ' header button, header a, header .Select-control';
document.querySelectorAll(sel).forEach(e => {
  const r = e.getBoundingClientRect();
  const s = getComputedStyle(e);
  if (r.width === 0 || r.height === 0 || s.visibility === 'hidden') return;
  out.push([e.id || e.className || e.tagName, Math.round(r.height), Math.round(r.width)]);
});
return out;
"""


def phone(driver) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": True})


def test_the_department_page_on_a_phone(app_server, browser):
    base, client, _ = app_server
    ns = start_paused_at(client, "rule_zone_incident", "600", 3_600_000 + 5 * 60_000)
    keys = Keys(ns)
    # the operator sends I1's recommendation: a task for fire and rescue (the boat)
    alert = next(a for a in views.open_alerts(client, keys) if a["subject"] == "I1")
    rec = views.current_recommendations(client, keys, [alert])[alert["fingerprint"]]
    dispatch(client, keys, fingerprint=alert["fingerprint"], level=alert["level"],
             resource_ids=[i["resource_id"] for i in rec["items"]], operator="operator",
             now=command_time(client, keys))

    phone(browser)
    sign_in(browser, base, "fire", path="/department")
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "exercise-banner"), "EXERCISE"))
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#dept-tasks .task-card")))
    assert browser.execute_script("return [window.innerWidth, window.innerHeight];") == [WIDTH, HEIGHT]

    # the tasks come first, starting within the top quarter of the screen
    top = browser.execute_script(
        "return document.querySelector('#dept-tasks .task-card').getBoundingClientRect().top + window.scrollY;")
    print(f"first task at {top:.0f} px of {HEIGHT}")
    assert top <= HEIGHT / 4, f"the first task starts {top} px down"
    form = browser.execute_script(
        "return document.querySelector('.report-form').getBoundingClientRect().top + window.scrollY;")
    assert form > top  # the incident report comes after them

    # the EXERCISE banner stays unmistakable: on top, full width, white on red, readable
    banner = browser.execute_script(
        "const b = document.getElementById('exercise-banner'); const r = b.getBoundingClientRect();"
        "const s = getComputedStyle(b);"
        "return [r.top, r.width, r.height, parseFloat(s.fontSize), s.color, s.backgroundImage];")
    assert banner[0] == 0 and banner[1] == WIDTH and banner[2] >= 24 and banner[3] >= 14
    assert banner[4] == "rgb(255, 255, 255)" and "176, 0, 32" in banner[5]

    # nothing wider than the screen, and every control big enough for a thumb
    assert browser.execute_script("return document.documentElement.scrollWidth;") <= WIDTH
    targets = browser.execute_script(TARGETS)
    assert len(targets) >= 10
    small = [t for t in targets if t[1] < 44 or t[2] < 44]
    assert small == [], small

    # the incident form says what to choose; severity has a default
    category = browser.find_element(By.ID, "dept-inc-category").text
    assert "Choose" in category, category
    assert "orange" in browser.find_element(By.ID, "dept-inc-severity").text

    SCREENSHOT.parent.mkdir(exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))
    assert severe_console_errors(browser) == []
