"""The dashboard in a real browser: map, live alert, one-click dispatch, department feedback, isolation."""

from __future__ import annotations

import time

import orjson
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from command.keys import Keys
from command.ops import drills

from ..conftest import SCENARIOS
from .conftest import click, map_drawn, severe_console_errors, sign_in, text_of, wait

pytestmark = pytest.mark.browser

CARD = "//div[contains(@class,'alert-card')][.//span[contains(., '({subject})')]]"


def figure_data(driver, trace: int, attr: str):
    return driver.execute_script(
        "const g = document.querySelector('#map-graph .js-plotly-plot');"
        f"return g && g.data && g.data[{trace}] ? g.data[{trace}]['{attr}'] : null;")


def start_paused_at(client, scenario: str, speed: str, until_ms_after_start: int) -> str:
    """Start a drill and pause it once its clock passes a point, so the page shows a stable state."""
    ns = drills.start_drill(client, SCENARIOS / scenario, speed, by="test")
    keys = Keys(ns)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        st = drills.drill_state(client, ns)
        if st.get("clock") and int(st["clock"]) - int(st["start"]) >= until_ms_after_start:
            drills.send(client, "pause", ns=ns, by="test")
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"drill {ns} did not reach the point: {drills.drill_state(client, ns)}")
    wait_until(lambda: drills.drill_state(client, ns).get("paused") == "1")
    assert client.zcard(keys.alerts_open) >= 1
    return ns


def wait_until(cond, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_operator_dispatches_and_departments_answer(app_server, browser, second_browser, tmp_path):
    base, client, data = app_server
    ns = start_paused_at(client, "rule_zone_incident", "3600", 2 * 3_600_000 + 5 * 60_000)
    keys = Keys(ns)

    # the operator's map, on the drill, with its banner, markers and the live alert queue
    sign_in(browser, base, "operator")
    wait(browser, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".maplibregl-canvas")))
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "exercise-banner"), "EXERCISE"))
    wait(browser).until(lambda d: (figure_data(d, 0, "lon") or []) and len(figure_data(d, 0, "lon")) == 3)
    wait(browser).until(lambda d: len(figure_data(d, 2, "lon") or []) == 8)  # resources
    card = CARD.format(subject="I4")
    wait(browser).until(EC.presence_of_element_located((By.XPATH, card)))
    text = browser.find_element(By.XPATH, card).text
    # both red incidents ask for the one ambulance: I1, open an hour longer, keeps it; I4 gets Boat 1
    assert "Incident in a risk zone" in text and "Boat 1" in text and "Only 0 of 1 ambulance available" in text
    # each recommended unit's trip: when it must leave, when it is working, its margin and route
    trip = browser.find_element(By.XPATH, card + "//div[contains(@class,'trip')]").text
    assert "leave by" in trip and "working by" in trip and "response deadline" in trip and " km" in trip
    browser.save_screenshot(str(tmp_path / "map.png"))

    # one click dispatches the recommendation; a double click on another alert dispatches once
    click(browser, browser.find_element(By.XPATH, card + "//button[normalize-space()='Dispatch']"))
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "map-toast"), "Dispatched 1 resource to I4"))
    assert client.zcard(keys.dispatches_index) == 1
    # the map shows the resources dispatched at once
    wait(browser).until(lambda d: sum(1 for c in figure_data(d, 2, "customdata") if c[4] == "dispatched") >= 2)
    wait(browser).until(EC.text_to_be_present_in_element((By.XPATH, card), "Dispatched by operator"))
    i1 = CARD.format(subject="I1")
    button = browser.find_element(By.XPATH, i1 + "//button[normalize-space()='Dispatch']")
    # two clicks as fast as the page can take them: an impatient double click
    browser.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'}); arguments[0].click(); arguments[0].click();",
                           button)
    try:
        wait_until(lambda: client.zcard(keys.dispatches_index) == 2)
    except AssertionError:
        raise AssertionError(f"no second dispatch; the page says: {browser.find_element(By.ID, 'map-toast').text!r}") from None
    time.sleep(1.5)
    assert client.zcard(keys.dispatches_index) == 2  # not 3
    wait(browser).until(EC.text_to_be_present_in_element((By.XPATH, i1), "Dispatched by operator"))
    # Boat 1 went to I4, so I1 got the next boat and the ambulance
    i1_dispatch = orjson.loads(client.get(keys.dispatch(ns_dispatch_id(client, keys, "I1"))))
    assert i1_dispatch["resource_ids"] == ["B2", "A1"]

    # fire & rescue sees its task on its phone-sized page and answers
    second_browser.set_window_size(420, 900)
    sign_in(second_browser, base, "fire", path="/department")
    wait(second_browser).until(EC.text_to_be_present_in_element((By.ID, "exercise-banner"), "EXERCISE"))
    wait(second_browser).until(EC.text_to_be_present_in_element((By.ID, "dept-tasks"), "I4"))
    task_id = f"{ns_dispatch_id(client, keys, 'I4')}-fire_rescue"
    form = "//div[contains(@class,'task-card')][.//b[contains(., 'I4')]]"
    second_browser.find_element(By.XPATH, form + "//textarea").send_keys("Boat 1 launching from the old town quay")
    click(second_browser, second_browser.find_element(By.XPATH, form + "//button[normalize-space()='Send update']"))
    wait(second_browser).until(EC.text_to_be_present_in_element((By.ID, "dept-msg"), "is now acknowledged"))
    task = orjson.loads(client.get(keys.task(task_id)))
    assert task["status"] == "acknowledged" and task["history"][0]["by"] == "fire"

    # the operator's dispatch timeline shows it without a reload
    wait(browser, 5).until(EC.text_to_be_present_in_element((By.ID, "map-dispatches"), "acknowledged"))
    assert "Boat 1 launching" in text_of(browser, "map-dispatches")

    # another department sees none of it
    second_browser.get("about:blank")  # leave the polling page first (see sign_in_zh)
    second_browser.get(base + "/logout")
    sign_in(second_browser, base, "police", path="/department")
    wait(second_browser).until(EC.presence_of_element_located((By.ID, "dept-empty")))
    tasks = text_of(second_browser, "dept-tasks")  # (the page may be drawn a second time meanwhile)
    assert tasks is not None and "I4" not in tasks

    # clicking a station shows its recent trend with its thresholds as lines
    browser.execute_script(
        "const g = document.querySelector('#map-graph .js-plotly-plot');"
        "const i = g.data[0].customdata.findIndex(c => c[0] === 'WL-A');"
        "g.emit('plotly_click', {points: [{curveNumber: 0, pointNumber: i, pointIndex: i, customdata: g.data[0].customdata[i]}]});")
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#map-station-trend .js-plotly-plot")))
    trend = browser.execute_script("const g = document.querySelector('#map-station-trend .js-plotly-plot');"
                                   "return [g.data[0].y.length, g.layout.shapes.length, g.layout.title.text];")
    assert trend[0] >= 2 and trend[1] == 3 and "WL-A" in trend[2]

    # every command is in the audit trail, and the chain holds
    from command.trust.audit import KeyStore, entries, verify

    actions = [e["action"] for e in entries(client, keys)]
    assert actions.count("dispatch") == 2 and "task_status" in actions
    assert verify(client, keys, store=KeyStore(data)).ok  # sealed with the app's key, in its data folder
    assert severe_console_errors(browser) == []
    assert severe_console_errors(second_browser) == []


def ns_dispatch_id(client, keys, subject):
    for d in client.zrange(keys.dispatches_index, 0, -1):
        rec = orjson.loads(client.get(keys.dispatch(d.decode())))
        if rec["subject"] == subject:
            return rec["id"]
    raise AssertionError(f"no dispatch for {subject}")


def test_language_switch_and_exercise_controls(app_server, browser):
    base, client, _ = app_server
    before = {d["namespace"] for d in drills.list_drills(client)}
    sign_in(browser, base, "planner", path="/exercise")
    wait(browser).until(EC.presence_of_element_located((By.ID, "ex-start")))
    time.sleep(2)
    assert {d["namespace"] for d in drills.list_drills(client)} == before  # opening the page starts nothing
    click(browser, browser.find_element(By.ID, "ex-start"))
    wait(browser).until(EC.presence_of_element_located((By.ID, "ex-started")))
    new = [d["namespace"] for d in drills.list_drills(client) if d["namespace"] not in before]
    assert len(new) == 1
    ns = new[0]
    wait_until(lambda: drills.drill_state(client, ns).get("status") == "running")
    assert drills.drill_state(client, ns)["speed"] == "60"
    row = f"//div[contains(@class,'drill-row')][.//span[contains(., '{ns}')]]"

    def press(label):
        from selenium.common.exceptions import StaleElementReferenceException

        for _ in range(5):  # the list is drawn again when a drill changes: find the button afresh
            try:
                return click(browser, wait(browser).until(
                    EC.element_to_be_clickable((By.XPATH, f"{row}//button[normalize-space()='{label}']"))))
            except StaleElementReferenceException:
                continue
        raise AssertionError(f"could not press {label}")

    press("600x")
    wait_until(lambda: drills.drill_state(client, ns).get("speed") == "600")
    press("Pause")
    wait_until(lambda: drills.drill_state(client, ns).get("paused") == "1")
    clock = drills.drill_state(client, ns)["clock"]
    time.sleep(1.0)
    assert drills.drill_state(client, ns)["clock"] == clock  # paused means paused
    press("Resume")
    wait_until(lambda: drills.drill_state(client, ns).get("clock") != clock)
    # the list says when and by whom each drill was started
    wait(browser).until(EC.text_to_be_present_in_element((By.XPATH, row), "by planner"))
    assert "Started " in browser.find_element(By.XPATH, row).text
    # while only its progress moves, the row's buttons stay the same elements: a redraw would make
    # the browser drop the answer to a click in flight (a Stop that never asks)
    stop = wait(browser).until(lambda d: d.find_element(By.XPATH, f"{row}//button[normalize-space()='Pause']")
                               and d.find_element(By.XPATH, f"{row}//button[normalize-space()='Stop']"))  # resumed
    progress = f"{row}//div[contains(@id,'ex-progress')]"
    shown = browser.find_element(By.XPATH, progress).text
    wait(browser).until(lambda d: d.find_element(By.XPATH, progress).text != shown)
    assert stop.is_enabled()  # StaleElementReferenceException if the list was drawn again
    # stopping asks first: dismissed, the drill runs on; confirmed, it stops
    press("Stop")
    confirm = wait(browser).until(EC.alert_is_present())
    assert "Stop drill" in confirm.text and ns in confirm.text
    confirm.dismiss()
    time.sleep(1.0)
    assert drills.drill_state(client, ns).get("status") == "running"
    press("Stop")
    wait(browser).until(EC.alert_is_present()).accept()
    wait_until(lambda: drills.drill_state(client, ns).get("status") == "stopped")
    # stopped, the row is drawn again without its controls
    wait(browser).until(lambda d: not d.find_elements(By.XPATH, f"{row}//button[normalize-space()='Stop']"))
    # the inject controls stand on rows of their own: no button over the next field's label
    press("Show")
    # measured in one script: the page may be drawn again (the view changes) between two calls
    gap = wait(browser).until(lambda d: d.execute_script(
        "const b = document.getElementById('ex-inject-levee');"
        "const l = document.querySelector('#ex-inject-breakdown-row label');"
        "return b && l ? [l.getBoundingClientRect().top - b.getBoundingClientRect().bottom] : null;"))
    assert gap[0] >= 0, gap
    # the unit picker takes the row's width beside its button (not a 49-pixel stub)
    widths = browser.execute_script(
        "const r = document.querySelector('#ex-inject-breakdown-row .inject-fields').getBoundingClientRect();"
        "const p = document.getElementById('ex-resource').getBoundingClientRect();"
        "return [p.width, r.width];")
    assert widths[0] > widths[1] / 2, widths
    # the planner's page says it in Chinese after one click
    click(browser, browser.find_element(By.ID, "shell-lang"))
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "shell-nav"), "演练"))
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "page"), "开始演练"))
    assert severe_console_errors(browser) == []


def test_feeds_page_shows_health_and_dead_letters(app_server, browser):
    base, client, _ = app_server
    ns = drills.start_drill(client, SCENARIOS / "rule_threshold", "max", by="test")
    wait_until(lambda: drills.drill_state(client, ns).get("status") in ("finished", "running"), 30)
    sign_in(browser, base, "operator", path="/feeds")
    wait(browser).until(EC.presence_of_element_located((By.ID, "feeds-body")))
    # show that drill in the view menu: its scenario's bad rows are its dead letters
    choose_namespace(browser, ns)
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "feeds-deadletters"), "unknown unit 'furlong'"))
    assert "No live source has reported yet" in text_of(browser, "feeds-body")
    assert severe_console_errors(browser) == []


def choose_namespace(driver, ns: str) -> None:
    """Pick a namespace in the view menu as a person would: open it, click the option."""
    box = driver.find_element(By.ID, "shell-ns")
    click(driver, box)
    option = wait(driver).until(EC.element_to_be_clickable((By.XPATH, f"//*[contains(text(), '{ns[-8:]}')]")))
    click(driver, option)
    wait(driver).until(EC.text_to_be_present_in_element((By.ID, "shell-ns"), ns[-8:]))


def test_sign_in_is_required_and_wrong_password_refused(app_server, browser):
    import httpx

    base, _, _ = app_server
    assert httpx.get(base + "/", follow_redirects=False).status_code == 302
    assert httpx.post(base + "/_dash-update-component", json={}).status_code == 401
    browser.get(base + "/login")
    browser.find_element(By.ID, "login-username").send_keys("operator")
    browser.find_element(By.ID, "login-password").send_keys("wrong")
    browser.find_element(By.ID, "login-submit").click()
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".err")))
    assert "Wrong user name or password" in browser.find_element(By.CSS_SELECTOR, ".err").text


def test_two_factor_sign_in_then_the_map_loads(app_server, browser, redis_url):
    """A TOTP operator made with the CLI against the running app signs in with a code from pyotp; the
    map page then loads under the Content-Security-Policy with no console error."""
    import os
    import re
    import subprocess
    import sys
    from urllib.parse import parse_qs, urlsplit

    import pyotp

    from ..conftest import ROOT
    from .conftest import BROWSER_DB

    base, _, data = app_server
    env = dict(os.environ, REDIS_URL=redis_url.rsplit("/", 1)[0] + f"/{BROWSER_DB}", ECD_DATA_DIR=str(data),
               PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "command", "users", "add", "duty2fa", "--department",
                           "emergency_management", "--role", "operator", "--totp"], input="browser-pass-1\n",
                          text=True, capture_output=True, cwd=ROOT, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    uri = re.search(r"otpauth://totp/\S+", proc.stdout).group(0)
    secret = parse_qs(urlsplit(uri).query)["secret"][0]

    def submit(code: str) -> None:
        browser.get(base + "/login")
        browser.find_element(By.ID, "login-username").send_keys("duty2fa")
        browser.find_element(By.ID, "login-password").send_keys("browser-pass-1")
        browser.find_element(By.ID, "login-code").send_keys(code)
        browser.find_element(By.ID, "login-submit").click()

    submit("")  # the password alone is not enough
    wait(browser).until(EC.presence_of_element_located((By.ID, "login-error")))
    browser.get_log("browser")  # drains the log: the refused sign-in's 401 is expected
    submit(pyotp.TOTP(secret).now())
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "shell-user"), "duty2fa"))
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#map-graph .js-plotly-plot")))
    assert browser.get_cookie("ecd_session")["httpOnly"]
    assert severe_console_errors(browser) == []


def test_a_department_sees_a_masked_phone_where_the_operator_sees_it_whole(app_server, browser, second_browser):
    """Data classification end to end: a caller's name and phone come in over the HTTP intake, a rescued
    person's with the water crew's status report; `water` (cleared internal) sees both masked on its
    department page, the duty officer (`operator`, cleared secret) sees them whole on the dispatch board
    and the alert card, and that secret read is on the audit trail."""
    import httpx

    from command.ops.dispatch import dispatch, update_task
    from command.timeutil import to_iso
    from command.trust import audit

    base, client, data = app_server
    ns = start_paused_at(client, "rule_zone_incident", "3600", 2 * 3_600_000 + 5 * 60_000)
    keys = Keys(ns)
    i4 = next(a for a in (orjson.loads(client.get(keys.alert(fp.decode()))) for fp in client.zrange(keys.alerts_open, 0, -1))
              if a["subject"] == "I4")
    body = {"id": "I4", "time": to_iso(i4["opened_at"]), "category": "levee_breach", "lat": 30.09, "lon": 114.09,
            "severity": "red", "description": "Levee seeping at the north embankment",
            "reporter": {"name": "王小明", "phone": "138 1234 8000"}}
    resp = httpx.post(f"{base}/api/{ns}/incidents", json=body, auth=("operator", "flood-demo"), timeout=10)
    assert resp.status_code == 201, resp.text
    audit.configure(data)  # commands made here are sealed with the app's key
    now = int(client.get(keys.clock))
    d = dispatch(client, keys, fingerprint=i4["fingerprint"], level=i4["level"], resource_ids=["P1"],
                 operator="operator", now=now)
    update_task(client, keys, task_id=d.task_ids[0], department="water_authority", user="water", status="on_scene",
                now=now + 60_000, people=[{"name": "李四", "phone": "139 1234 5678"}])

    # the water desk (internal): masked on its own task
    sign_in(browser, base, "water", path="/department")
    choose_namespace(browser, ns)
    card = "//div[contains(@class,'task-card')][.//b[contains(., 'I4')]]"
    wait(browser).until(EC.presence_of_element_located((By.XPATH, card)))
    wait(browser).until(EC.text_to_be_present_in_element((By.XPATH, card), "138****8000"))
    text = browser.find_element(By.XPATH, card).text
    assert "Reported by 王* 138****8000" in text and "李* 139****5678" in text
    assert "13812348000" not in browser.page_source and "王小明" not in browser.page_source
    assert "13912345678" not in browser.page_source

    # the duty officer (secret): whole, on the dispatch board and the alert card
    sign_in(second_browser, base, "operator")
    choose_namespace(second_browser, ns)
    wait(second_browser).until(EC.text_to_be_present_in_element((By.ID, "map-dispatches"), "13812348000"))
    board = text_of(second_browser, "map-dispatches")
    assert "Reported by 王小明 13812348000" in board and "李四 13912345678" in board
    wait(second_browser).until(EC.text_to_be_present_in_element((By.XPATH, CARD.format(subject="I4")),
                                                                "王小明 13812348000"))
    reads = [e for e in audit.entries(client, keys, count=10_000) if e["action"] == audit.READ_ACTION]
    assert {e["who"] for e in reads} == {"operator"}
    assert {"alert_queue", "dispatch_board"} <= {e["details"]["view"] for e in reads}
    assert all("13812348000" not in str(e) for e in reads)
    assert severe_console_errors(browser) == []
    assert severe_console_errors(second_browser) == []


def test_the_sign_in_page_language_carries_into_the_dashboard(app_server, browser):
    """Signed in from the Chinese sign-in page, the dashboard is in Chinese; the switch still works and
    the browser keeps its choice over the session's."""
    base, _, _ = app_server
    browser.get(f"{base}/login?lang=zh")
    assert "登录" in browser.find_element(By.ID, "login-submit").text
    browser.find_element(By.ID, "login-username").send_keys("operator")
    browser.find_element(By.ID, "login-password").send_keys("flood-demo")
    browser.find_element(By.ID, "login-submit").click()
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "shell-logout"), "退出"))
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "shell-nav"), "指挥地图"))
    click(browser, browser.find_element(By.ID, "shell-lang"))
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "shell-logout"), "Sign out"))
    browser.refresh()
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "shell-nav"), "Operations map"))
    assert "退出" not in text_of(browser, "shell-logout")
    assert severe_console_errors(browser) == []


def test_the_map_legend_explains_levels_and_resource_statuses(app_server, browser):
    """The operator map's legend names each level, zone risk, incident state and resource status, in the
    page's language, and folds away."""
    base, _, _ = app_server
    sign_in(browser, base, "operator")
    wait(browser).until(EC.presence_of_element_located((By.ID, "map-legend")))
    wait(browser, 30).until(map_drawn)
    text = text_of(browser, "map-legend")
    for word in ("normal", "yellow", "orange", "red", "no data", "high risk", "available", "dispatched",
                 "on scene", "out of service", "Incidents", "Rivers"):
        assert word in text, word
    click(browser, browser.find_element(By.ID, "shell-lang"))
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "map-legend"), "图例"))
    text = text_of(browser, "map-legend")
    for word in ("正常", "黄色", "橙色", "红色", "无数据", "高风险", "可用", "已调派", "在现场", "停用", "事件"):
        assert word in text, word
    click(browser, browser.find_element(By.CSS_SELECTOR, "#map-legend summary"))
    wait(browser).until(lambda d: not d.find_element(By.XPATH, "//*[@id='map-legend']//div[contains(@class,'legend-row')]").is_displayed())
    assert severe_console_errors(browser) == []
