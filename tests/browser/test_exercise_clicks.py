"""A click on a drill's row keeps its answer when the drill list is drawn again while that answer is
on its way (the drill changed in the same moment: another planner sped it up, it finished).

The browser's `fetch` is wrapped so the answer to the click is held until the test has made the list
redraw; then it is let through. Before the buttons' clicks went through a relay outside the list, Dash
dropped that answer: a Stop never asked its question, a Show never switched the view."""

from __future__ import annotations

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from command.ops import drills

from ..conftest import SCENARIOS
from .conftest import click, severe_console_errors, sign_in, wait
from .test_dashboard import wait_until

pytestmark = pytest.mark.browser

# Hold the answer of every callback request whose body names a held marker until the test lets it through;
# window.__holds[marker] counts such requests and says whether to let them through.
HOLD = """
window.__holds = {};
arguments[0].forEach(m => { window.__holds[m] = {held: 0, release: false}; });
if (!window.__realFetch) { window.__realFetch = window.fetch; }
window.fetch = function (url, init) {
  const body = init && typeof init.body === 'string' ? init.body : '';
  const answer = window.__realFetch.apply(this, arguments);
  const marker = Object.keys(window.__holds).find(m => body.indexOf(m) >= 0);
  if (String(url).indexOf('_dash-update-component') < 0 || !marker) { return answer; }
  const hold = window.__holds[marker];
  hold.held += 1;
  return answer.then(r => new Promise(done => {
    const poll = () => hold.release ? done(r) : setTimeout(poll, 20);
    poll();
  }));
};
"""
LIST = '"..ex-drills.children...'  # the drill list's callback (its output names begin its request)


def _row(ns: str) -> str:
    return f"//div[contains(@class,'drill-row')][.//span[contains(., '{ns}')]]"


def _held(browser, marker: str) -> int:
    return browser.execute_script("return window.__holds[arguments[0]].held", marker)


def press(browser, xpath: str) -> None:
    """Click the button at `xpath`, found afresh if the page was drawn again (the view just changed)."""
    for _ in range(5):
        try:
            return click(browser, wait(browser).until(EC.element_to_be_clickable((By.XPATH, xpath))))
        except StaleElementReferenceException:
            continue
    raise AssertionError(f"could not press {xpath}")


def _click_as_the_list_is_redrawn(browser, client, ns: str, label: str, answer: str, speed: str) -> None:
    """Click `label` on the drill's row just as a redraw of the list (the drill's speed changed
    elsewhere) arrives, and let the click's answer (`answer` in its request) arrive after it."""
    row = _row(ns)
    button = browser.find_element(By.XPATH, f"{row}//button[normalize-space()='{label}']")
    drills.send(client, "speed", ns=ns, speed=speed, by="another-planner")
    wait_until(lambda: drills.drill_state(client, ns).get("speed") == speed)
    browser.execute_script(HOLD, [LIST, answer])  # the next list request is asked after the change: a redraw
    wait(browser).until(lambda d: _held(d, LIST) >= 1)
    click(browser, button)
    browser.execute_script("window.__holds[arguments[0]].release = true;", LIST)
    wait(browser).until(EC.staleness_of(button))  # the row's buttons were replaced
    browser.execute_script("window.__holds[arguments[0]].release = true;", answer)


def test_a_click_keeps_its_answer_when_the_list_is_drawn_again(app_server, browser):
    base, client, _ = app_server
    ns = drills.start_drill(client, SCENARIOS / "jiangcheng_flood", "1", by="test")
    wait_until(lambda: drills.drill_state(client, ns).get("status") == "running", 30)
    sign_in(browser, base, "planner", path="/exercise")
    row = _row(ns)
    wait(browser).until(EC.presence_of_element_located((By.XPATH, f"{row}//button[normalize-space()='Stop']")))

    # Stop asks first, even when the list is drawn again as it is clicked
    _click_as_the_list_is_redrawn(browser, client, ns, "Stop", "ex-stop-confirm.displayed", "10")
    confirm = wait(browser, 10).until(EC.alert_is_present())
    assert "Stop drill" in confirm.text and ns in confirm.text
    confirm.dismiss()
    assert drills.drill_state(client, ns).get("status") == "running"

    # Show switches the view, even when the list is drawn again as it is clicked
    _click_as_the_list_is_redrawn(browser, client, ns, "Show", "shell-ns.value", "60")
    wait(browser, 10).until(EC.text_to_be_present_in_element((By.ID, "shell-ns"), ns[-8:]))

    # a button clicked twice is two clicks: the second Stop asks again, and confirmed, it stops
    browser.execute_script("window.fetch = window.__realFetch;")
    press(browser, f"{row}//button[normalize-space()='Stop']")
    wait(browser).until(EC.alert_is_present()).dismiss()
    press(browser, f"{row}//button[normalize-space()='Stop']")
    wait(browser).until(EC.alert_is_present()).accept()
    wait_until(lambda: drills.drill_state(client, ns).get("status") == "stopped")
    assert severe_console_errors(browser) == []
