"""Browser tests: the real app (`python app.py`: gunicorn, engine, drill runner, RQ worker) on the test
Redis, driven by a real headless Chromium (Debian's chromium + chromium-driver)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import httpx
import pytest
import redis
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from ..conftest import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
BROWSER_DB = 7  # a database of its own: the other tests flush database 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_server(redis_url, tmp_path_factory):
    """`python app.py` on its own port and data folder; yields (base URL, Redis client)."""
    if not os.path.exists(CHROMEDRIVER):
        pytest.fail("chromium-driver is not installed (scripts/test.sh installs it)")
    url = redis_url.rsplit("/", 1)[0] + f"/{BROWSER_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    port = _free_port()
    data = tmp_path_factory.mktemp("appdata")
    env = dict(os.environ, REDIS_URL=url, ECD_DATA_DIR=str(data), ECD_ACK_MINUTES="30", PYTHONUNBUFFERED="1")
    log = open(data / "app.out", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--no-drill", "--workers", "2"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"app.py exited: {(data / 'app.out').read_text()}")
        time.sleep(0.3)
    else:
        pytest.fail("app.py did not serve in 60 s")
    yield base, client, data
    proc.terminate()
    proc.wait(30)
    client.flushdb()


def make_driver() -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
                "--use-angle=swiftshader", "--window-size=1500,950", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


@pytest.fixture
def browser():
    d = make_driver()
    yield d
    d.quit()


@pytest.fixture
def second_browser():
    d = make_driver()
    yield d
    d.quit()


def sign_in(driver, base: str, user: str, password: str = "flood-demo", path: str = "/") -> None:
    driver.get(f"{base}/login?next={path}")
    driver.find_element(By.ID, "login-username").send_keys(user)
    driver.find_element(By.ID, "login-password").send_keys(password)
    driver.find_element(By.ID, "login-submit").click()
    WebDriverWait(driver, 20).until(EC.presence_of_element_located((By.ID, "page")))


def wait(driver, timeout: float = 20) -> WebDriverWait:
    return WebDriverWait(driver, timeout, poll_frequency=0.1)


def map_drawn(driver) -> bool:
    """Has the operator map finished drawing (plotly's figure laid out, the map's style and tiles
    loaded, no draw in progress)? A page redrawn while plotly.js is still drawing the map it replaces
    (a language switch at that instant) makes plotly.js log an error from the graph it was drawing
    ("reading '_rangeSliderData'"); a person switches once the map is there, and so do the tests."""
    return bool(driver.execute_script(
        "const g = document.querySelector('#map-graph .js-plotly-plot');"
        "const fl = g && g._fullLayout;"
        "const m = fl && fl.map && fl.map._subplot && fl.map._subplot.map;"
        "return !!m && m.loaded() && !(g._promises && g._promises.length);"))


def text_of(driver, element_id: str) -> str | None:
    """An element's text, found and read in one script (None when it is not on the page): a page drawn
    again between finding an element and reading it leaves Selenium a stale element."""
    return driver.execute_script("const e = document.getElementById(arguments[0]); return e ? e.innerText : null;",
                                 element_id)


def severe_console_errors(driver) -> list[dict]:
    """Console errors, less the software-WebGL performance notes headless Chromium prints."""
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def click(driver, element) -> None:
    """Scroll the element to the middle of its scroll box, then click it as a person would."""
    from selenium.common.exceptions import ElementClickInterceptedException

    driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", element)
    try:
        element.click()
    except ElementClickInterceptedException:
        time.sleep(0.3)  # a re-render or an animation was passing over it: once more, after it
        driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", element)
        try:
            element.click()
        except ElementClickInterceptedException:
            top = driver.execute_script(
                "const r = arguments[0].getBoundingClientRect();"
                "const e = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);"
                "const se = document.scrollingElement;"
                "return [r.x, r.y, window.innerHeight, se.scrollTop, se.scrollHeight, getComputedStyle(document.body).overflow,"
                " e && e.outerHTML.slice(0, 300)];", element)
            driver.save_screenshot("/tmp/intercepted.png")
            raise AssertionError(f"click on {element.text!r} lands on: {top}") from None
