"""Signed in from the Chinese sign-in page, every page of every role is in Chinese: the test walks them
in a real browser (the operator map, the department page, the exercise page and its after-action report,
feeds, the audit trail, the data catalogue, the accounts page) and finds no English word left on screen,
in a placeholder or in a tooltip, names aside. Refusals too: a dispatch conflict on the map (a chosen unit
went out of service before the operator confirmed) and a drill command the drill cannot take.

"Names aside" is an allowlist built from the data the pages show (every string of the scenario's files and
of the demo accounts: station, zone, resource and incident ids and names, rule ids, descriptions as they
were reported), the namespace and scenario names, the units and standards that are written the same in
Chinese (m, mm, km, h, UTC, CAP, GeoJSON, CSV ...), ISO times and time zones, text an element marks as
English on purpose (`lang="en"`: the catalogue gives each dataset's title in the other language too) or as
no language at all (`lang="zxx"`, `translate="no"`: a record as received, an id, a command), and the
audit trail's records as recorded (user, department and action ids, details, entry and key ids: what an
auditor searches by).
"""

from __future__ import annotations

import csv
import re
import time
from pathlib import Path

import orjson
import pytest
import yaml
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from command.config import SAMPLE_DATA
from command.keys import Keys
from command.trust.auth import load_users

from ..conftest import SCENARIOS
from .conftest import click, severe_console_errors, wait
from .test_dashboard import start_paused_at

pytestmark = pytest.mark.browser

SCENARIO = "rule_zone_incident"
I4 = "//div[contains(@class,'alert-card')][.//span[contains(., '(I4)')]]"
# written alike in Chinese text: units, standards and formats, the product's own abbreviations
WORDS = {"m", "mm", "km", "h", "min", "s", "ms", "x", "UTC", "CAP", "GeoJSON", "JSON", "CSV", "Atom", "API",
         "ID", "HTTP", "URL", "TOTP", "QGIS", "MBTiles", "PMTiles", "OpenStreetMap", "OSM", "English",
         "m³", "mm/h", "m/h", "Redis", "YAML", "ZIP", "zip", "Plotly", "MapLibre", "km/h", "kB", "MB", "PNG",
         "SHA-256", "Plotly.js", "USGS", "Open-Meteo", "NWS"}  # and the agencies' and products' own names
# ISO dates and times, time zones (Area/City), namespaces and file names
# code quoted in a sentence (`at`), date formats, hexadecimal ids (a drill's short id), paths
PATTERNS = [r"\d{4}-\d{2}-\d{2}T[\d:.+Z-]+", r"(?:/?[\w.<>-]+/)+[\w.<>-]+", r"\b(?:drill|record|test)-[\w.-]+",
            r"\b[\w-]+\.(?:csv|yaml|geojson|json|xml|atom|zip|html)\b", r"`[^`]*`", r"YYYY-MM-DD(?: HH:MM)?",
            r"\b[0-9a-f]{8,}\b"]

VISIBLE_TEXT = """
const NOT_WORDS = '[lang="en"], [lang="zxx"], [translate="no"], .ag-cell[col-id="who"], .ag-cell[col-id="department"],'
  + ' .ag-cell[col-id="action"], .ag-cell[col-id="details"], .ag-cell[col-id="id"], .ag-cell[col-id="kid"]';
// what an element marks as English or as no language is no finding: hidden while the text is read
const marked = Array.from(document.querySelectorAll(NOT_WORDS));
const before = marked.map(e => e.style.display);
marked.forEach(e => { e.style.display = 'none'; });
const out = [document.body.innerText];
marked.forEach((e, i) => { e.style.display = before[i]; });
document.querySelectorAll('[placeholder], [title], [aria-label]').forEach(e => {
  if (e.closest(NOT_WORDS) || e.closest('[hidden]')) return;
  for (const a of ['placeholder', 'title', 'aria-label']) { if (e.getAttribute(a)) out.push(e.getAttribute(a)); }
});
return out.join('\\n');
"""


# the drill list's "resume" button, clicked at once (no round trip between finding and clicking it)
RESUME_CLICK = """
const b = Array.from(document.querySelectorAll('#ex-drills button')).find(e => e.innerText.trim() === '继续');
if (b) { b.click(); return true; }
return false;
"""
PAUSE_BUTTON = "//div[@id='ex-drills']//button[normalize-space()='暂停']"


def _strings(value, out: set[str]) -> None:
    if isinstance(value, str):
        out.add(value.strip())
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)


NAME_FIELDS = ("id", "name", "description", "subject")  # a column or property that names, as the data has it


def data_names(folder: Path) -> set[str]:
    """The names in the scenario's files and the files they name (ids, names, descriptions as reported, rule
    ids), the scenario folders, and the demo accounts' user names and names."""
    out: set[str] = {p.name for p in folder.parent.iterdir()}
    for f in set(folder.iterdir()) | set((folder.parent / "tiny_common").iterdir()):
        if f.suffix == ".csv":
            with f.open() as fh:
                for row in csv.DictReader(fh):
                    out.update(v.strip() for k, v in row.items() if k and any(n in k for n in NAME_FIELDS) and v)
        elif f.suffix == ".geojson":
            for feat in yaml.safe_load(f.read_text()).get("features", []):
                out.update(str(v) for k, v in (feat.get("properties") or {}).items() if k in ("id", "name") and v)
        elif f.name == "rules.yaml":
            out.update(rule["id"] for rule in yaml.safe_load(f.read_text()).get("rules", []))
        elif f.name == "scenario.yaml":
            out.add(yaml.safe_load(f.read_text())["name"])
    for u in yaml.safe_load((SAMPLE_DATA / "users.yaml").read_text())["users"]:
        out.update((u["username"], u["name"]))
    return {s for s in out if s and re.search(r"[A-Za-z]", s)}


def english_left(text: str, names: set[str]) -> list[str]:
    """The Latin-letter words in `text` that are not names or allowed words."""
    for p in PATTERNS:
        text = re.sub(p, " ", text)
    for name in sorted(names, key=len, reverse=True):  # whole words only: "m" is no name in "map"
        text = re.sub(rf"(?<![A-Za-z]){re.escape(name)}(?![A-Za-z])", " ", text)
    found = []
    for word in re.findall(r"[A-Za-z][A-Za-z'’³/-]*", text):
        w = word.strip("-/'’")
        if not w or w in WORDS or re.fullmatch(r"[A-Z]{1,3}\d*|[A-Z]+-[A-Z0-9]+|[a-z]", w):
            continue  # ids such as I4, B1, WL-A; a unit letter
        found.append(w)
    return found


def collect(driver, names: set[str]) -> list[str]:
    return english_left(driver.execute_script(VISIBLE_TEXT), names)


def sign_in_zh(driver, base: str, user: str, path: str) -> None:
    # leave the page first: a poll of its /_changes racing the sign-out would be answered 401 (as it
    # should, and the page would go to sign-in) and logged by the browser as a console error
    driver.get("about:blank")
    driver.get(f"{base}/logout")
    driver.get(f"{base}/login?lang=zh&next={path}")
    driver.find_element(By.ID, "login-username").send_keys(user)
    driver.find_element(By.ID, "login-password").send_keys("flood-demo")
    driver.find_element(By.ID, "login-submit").click()


def settle(driver, seconds: float = 2.5) -> None:
    """Let the page's callbacks draw (each tick redraws at most what changed)."""
    time.sleep(seconds)


def test_every_page_in_chinese_has_no_english_left(app_server, browser):
    base, client, data = app_server
    ns = start_paused_at(client, SCENARIO, "600", 2 * 3_600_000 + 5 * 60_000)
    names = data_names(SCENARIOS / SCENARIO) | {ns, SCENARIO, "test"}  # "test": who started the drill
    findings: dict[str, list[str]] = {}

    def visit(label: str, ready) -> None:
        wait(browser, 30).until(ready)
        settle(browser)
        left = collect(browser, names)
        if left:
            findings[label] = sorted(set(left))

    def shell_ready(d):
        return "退出" in d.find_element(By.ID, "shell-logout").text

    # the operator: the map, the department page, the exercise page, feeds, the catalogue
    sign_in_zh(browser, base, "operator", "/")
    wait(browser, 30).until(lambda d: shell_ready(d) and d.find_elements(By.XPATH, I4 + "//button[normalize-space()='一键调派']"))
    # a refusal first: the dialog's resources are chosen, then one of them goes out of service before the
    # operator confirms (a dispatch conflict); the toast says so in Chinese
    click(browser, browser.find_element(By.XPATH, I4 + "//button[normalize-space()='调整…']"))
    chosen = wait(browser, 30).until(lambda d: [e.get_attribute("value") for e in
                                                d.find_elements(By.CSS_SELECTOR, "#map-modal-resources input:checked")])
    keys = Keys(ns)
    saved = client.hget(keys.resources, chosen[0])
    client.hset(keys.resources, chosen[0], orjson.dumps({**orjson.loads(saved), "status": "out_of_service"}))
    click(browser, browser.find_element(By.ID, "map-modal-confirm"))
    visit("/ dispatch refused (operator)", lambda d: "已不可用" in d.find_element(By.ID, "map-toast").text)
    client.hset(keys.resources, chosen[0], saved)
    # a dispatch, so the map's dispatch board, the department's tasks and the audit trail have something
    click(browser, wait(browser, 30).until(EC.element_to_be_clickable((By.XPATH, I4 + "//button[normalize-space()='一键调派']"))))
    visit("/ (operator)", lambda d: d.find_elements(By.CSS_SELECTOR, "#map-dispatches .dispatch")
          and "调派" in d.find_element(By.ID, "map-toast").text)
    for path, ready in (("/department", (By.ID, "dept-title")), ("/exercise", (By.CSS_SELECTOR, "#ex-drills .drill-row")),
                        ("/feeds", (By.ID, "page"))):
        click(browser, browser.find_element(By.ID, f"shell-nav-{path[1:]}"))
        visit(f"{path} (operator)", EC.presence_of_element_located(ready))
    click(browser, browser.find_element(By.ID, "shell-nav-catalog"))
    visit("/catalog (operator)", EC.presence_of_element_located((By.TAG_NAME, "table")))

    # a department on its own page
    sign_in_zh(browser, base, "fire", "/department")
    visit("/department (fire)", lambda d: shell_ready(d) and d.find_elements(By.CSS_SELECTOR, "#dept-tasks .task-card"))
    # a status update with a position out of range, and an empty incident report: what to correct, in Chinese too
    task = "//div[contains(@class,'task-card')]"
    browser.find_element(By.XPATH, task + "//input[contains(@id, 'dept-lat')]").send_keys("95")
    browser.find_element(By.XPATH, task + "//input[contains(@id, 'dept-lon')]").send_keys("114")
    click(browser, browser.find_element(By.XPATH, task + "//button[normalize-space()='提交']"))
    visit("/department status errors (fire)", lambda d: d.find_element(By.XPATH, task + "//div[contains(@class,"
                                                                        "'field-error')][normalize-space()]"))
    # an empty incident report: what to correct, in Chinese too
    click(browser, browser.find_element(By.ID, "dept-inc-submit"))
    visit("/department form errors (fire)", lambda d: d.find_element(By.ID, "dept-inc-err-category").text
          and d.find_element(By.ID, "dept-inc-err-description").text)

    # the planner: the exercise page
    sign_in_zh(browser, base, "planner", "/exercise")
    visit("/exercise (planner)", lambda d: shell_ready(d) and d.find_elements(By.CSS_SELECTOR, "#ex-drills .drill-row"))
    # a drill command the drill cannot take: the page still offers "resume" while the drill already runs
    # (as after a click elsewhere); refused in Chinese, nothing sent. The list is redrawn every second, so
    # the state is changed right before the click, and again if a redraw came in between.
    control = keys.replay_control
    for _ in range(5):
        client.hset(control, mapping={"paused": "1", "status": "paused"})  # as the paused drill really is
        wait(browser, 30).until(lambda d: d.find_elements(By.XPATH, "//div[@id='ex-drills']//button[normalize-space()='继续']"))
        client.hset(control, mapping={"paused": "0", "status": "running"})
        if browser.execute_script(RESUME_CLICK) and wait(browser, 10).until(
                lambda d: d.find_elements(By.ID, "ex-refused") or d.find_elements(By.XPATH, PAUSE_BUTTON)):
            if browser.find_elements(By.ID, "ex-refused"):
                break
    client.hset(control, mapping={"paused": "1", "status": "paused"})
    visit("/exercise drill command refused (planner)", lambda d: "已在进行中" in d.find_element(By.ID, "ex-refused").text)

    # the auditor and the admin
    sign_in_zh(browser, base, "auditor", "/audit")
    visit("/audit (auditor)", lambda d: shell_ready(d) and d.find_elements(By.ID, "page"))
    sign_in_zh(browser, base, "admin", "/admin")
    # its table lists the accounts: their names are data, like the scenario's (another test may have
    # added one to this app before, e.g. test_dashboard's "duty2fa")
    names |= {s for u in load_users(data / "users.yaml").values() for s in (u.username, u.name) if s}
    visit("/admin (admin)", EC.presence_of_element_located((By.TAG_NAME, "table")))

    assert findings == {}, "\n".join(f"{page}: {', '.join(words)}" for page, words in findings.items())
    assert severe_console_errors(browser) == []
