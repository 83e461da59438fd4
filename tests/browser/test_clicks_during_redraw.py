"""A click on a button of a list the server draws again keeps its answer when the list is redrawn while
that answer is on its way: a drill's row on the exercise page (the drill changed in the same moment:
another planner sped it up), an alert card's Dispatch on the operator's map (another alert changed).

The browser's `fetch` is wrapped to hold, until the test lets them through, the answers that redraw
the list and the answer to the click. The test holds a redraw, clicks, lets the redraw through, sees
the button replaced, then lets the click's answer through. Before the rows' clicks went through a
relay outside the list (assets/clicks.js), Dash asked again for the new set of buttons and dropped the
first answer: a Stop never asked its question, a Show never switched the view, a dispatch said nothing."""

from __future__ import annotations

import orjson
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from command.keys import Keys
from command.ops import drills
from command.ops.dispatch import dispatch

from ..conftest import SCENARIOS
from .conftest import click, severe_console_errors, sign_in, wait
from .test_dashboard import CARD, choose_namespace, start_paused_at, wait_until

pytestmark = pytest.mark.browser

# Hold each named kind of answer until window.__holds[name].release: an answer to a callback request
# whose body has `inRequest`, and (when `inAnswer` is set) whose answer has `inAnswer`; `held` counts them.
HOLD = """
window.__holds = {};
arguments[0].forEach(([name, inRequest, inAnswer]) => {
  window.__holds[name] = {inRequest: inRequest, inAnswer: inAnswer, held: 0, release: false};
});
if (!window.__realFetch) { window.__realFetch = window.fetch; }
window.fetch = function (url, init) {
  const body = init && typeof init.body === 'string' ? init.body : '';
  const answer = window.__realFetch.apply(this, arguments);
  const rules = Object.values(window.__holds).filter(h => body.indexOf(h.inRequest) >= 0);
  if (String(url).indexOf('_dash-update-component') < 0 || !rules.length) { return answer; }
  return answer.then(r => r.clone().text().then(text => {
    const rule = rules.find(h => !h.inAnswer || text.indexOf(h.inAnswer) >= 0);
    if (!rule) { return r; }
    rule.held += 1;
    return new Promise(done => {
      const poll = () => rule.release ? done(r) : setTimeout(poll, 20);
      poll();
    });
  }));
};
"""


def _held(browser, name: str) -> int:
    return browser.execute_script("return window.__holds[arguments[0]].held", name)


def _release(browser, name: str) -> None:
    browser.execute_script("window.__holds[arguments[0]].release = true;", name)


def press(browser, xpath: str) -> None:
    """Click the button at `xpath`, found afresh if the page was drawn again (the view just changed)."""
    for _ in range(5):
        try:
            return click(browser, wait(browser).until(EC.element_to_be_clickable((By.XPATH, xpath))))
        except StaleElementReferenceException:
            continue
    raise AssertionError(f"could not press {xpath}")


def click_as_redrawn(browser, button_xpath: str, redraw: tuple[str, str], answer: str, change) -> None:
    """Click the button just as a redraw of its list arrives (`change()` makes one; `redraw` says how
    its request and answer look), and let the click's answer (`answer` in its request) arrive after."""
    button = wait(browser).until(EC.element_to_be_clickable((By.XPATH, button_xpath)))
    browser.execute_script(HOLD, [["redraw", *redraw], ["answer", answer, None]])
    change()
    wait(browser).until(lambda d: _held(d, "redraw") >= 1)
    click(browser, button)
    _release(browser, "redraw")
    wait(browser).until(EC.staleness_of(button))  # the list was drawn again: the button replaced
    _release(browser, "answer")


def _row(ns: str) -> str:
    return f"//div[contains(@class,'drill-row')][.//span[contains(., '{ns}')]]"


def test_a_drill_rows_click_keeps_its_answer_when_the_list_is_drawn_again(app_server, browser):
    base, client, _ = app_server
    ns = drills.start_drill(client, SCENARIOS / "jiangcheng_flood", "1", by="test")
    wait_until(lambda: drills.drill_state(client, ns).get("status") == "running", 30)
    sign_in(browser, base, "planner", path="/exercise")
    row = _row(ns)
    wait(browser).until(EC.presence_of_element_located((By.XPATH, f"{row}//button[normalize-space()='Stop']")))
    drill_list = ('"..ex-drills.children...', '"ex-drills"')  # its request; an answer that draws it

    def speed_up(speed):
        return lambda: drills.send(client, "speed", ns=ns, speed=speed, by="another-planner")

    # Stop asks first, even when the list is drawn again as it is clicked
    click_as_redrawn(browser, f"{row}//button[normalize-space()='Stop']", drill_list, "ex-stop-confirm.displayed",
                     speed_up("10"))
    confirm = wait(browser, 10).until(EC.alert_is_present())
    assert "Stop drill" in confirm.text and ns in confirm.text
    confirm.dismiss()
    assert drills.drill_state(client, ns).get("status") == "running"

    # Show switches the view, even when the list is drawn again as it is clicked
    click_as_redrawn(browser, f"{row}//button[normalize-space()='Show']", drill_list, "shell-ns.value",
                     speed_up("60"))
    wait(browser, 10).until(EC.text_to_be_present_in_element((By.ID, "shell-ns"), ns[-8:]))

    # a button clicked twice is two clicks: the second Stop asks again, and confirmed, it stops
    browser.execute_script("window.fetch = window.__realFetch;")
    press(browser, f"{row}//button[normalize-space()='Stop']")
    wait(browser).until(EC.alert_is_present()).dismiss()
    press(browser, f"{row}//button[normalize-space()='Stop']")
    wait(browser).until(EC.alert_is_present()).accept()
    wait_until(lambda: drills.drill_state(client, ns).get("status") == "stopped")
    assert severe_console_errors(browser) == []


def test_a_dispatch_keeps_its_answer_when_the_alert_queue_is_drawn_again(app_server, browser):
    base, client, _ = app_server
    ns = start_paused_at(client, "rule_zone_incident", "3600", 2 * 3_600_000 + 5 * 60_000)
    keys = Keys(ns)
    sign_in(browser, base, "operator")
    choose_namespace(browser, ns)
    i4, i1 = CARD.format(subject="I4"), CARD.format(subject="I1")
    wait(browser).until(EC.presence_of_element_located((By.XPATH, i1)))

    def another_operator_dispatches_i1():  # changes I1's card: the queue is drawn again
        open_alerts = [orjson.loads(client.get(keys.alert(f.decode()))) for f in client.zrange(keys.alerts_open, 0, -1)]
        a = next(a for a in open_alerts if a["subject"] == "I1")
        dispatch(client, keys, fingerprint=a["fingerprint"], level=a["level"], resource_ids=["B2"], operator="duty2",
                 now=int(drills.drill_state(client, ns)["clock"]))

    click_as_redrawn(browser, i4 + "//button[normalize-space()='Dispatch']",
                     ("..map-queue.children...", '"map-queue"'), "..map-toast.children...", another_operator_dispatches_i1)
    wait(browser, 10).until(EC.text_to_be_present_in_element((By.ID, "map-toast"), "Dispatched 1 resource to I4"))
    wait(browser).until(EC.text_to_be_present_in_element((By.XPATH, i1), "Dispatched by duty2"))
    assert client.zcard(keys.dispatches_index) == 2
    assert severe_console_errors(browser) == []

