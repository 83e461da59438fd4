"""Take the README's screenshots of the operations map on the sample exercise, in English and Chinese.

    .venv/bin/python scripts/screenshots.py            # writes docs/screenshot-map-en.png and -zh.png

It starts the embedded Redis and `python app.py --no-drill` in a temporary folder, starts the sample
drill (jiangcheng_flood) and pauses it 20 h in, dispatches the most severe alert's recommendation (so a
route is on the map), then signs in as `operator` in headless Chromium at 1600x1000 and takes both
pictures. Chinese text needs a CJK font on the machine (Debian: `apt-get install fonts-wqy-zenhei`);
without one the script says so and stops.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import redis
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from command.keys import Keys  # noqa: E402
from command.ops import drills  # noqa: E402
from command.ops.dispatch import dispatch  # noqa: E402
from command.publish import views  # noqa: E402
from command.runtime.redis_server import EmbeddedRedis  # noqa: E402

HOURS_IN = 20
SIZE = (1600, 1000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def paused_drill(r: redis.Redis) -> str:
    ns = drills.start_drill(r, ROOT / "sample_data/scenarios/jiangcheng_flood", "3600", by="screenshots")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        st = drills.drill_state(r, ns)
        if st.get("clock") and int(st["clock"]) - int(st["start"]) >= HOURS_IN * 3_600_000:
            drills.send(r, "pause", ns=ns, by="screenshots")
            return ns
        time.sleep(0.1)
    raise SystemExit(f"the drill did not reach {HOURS_IN} h: {drills.drill_state(r, ns)}")


def dispatch_one(r: redis.Redis, keys: Keys) -> None:
    for a in views.alert_queue(r, keys):
        items = (a.get("recommendation") or {}).get("items") or []
        if items and not a.get("claim") and a.get("lat") is not None:
            dispatch(r, keys, fingerprint=a["fingerprint"], level=a["level"], operator="operator",
                     resource_ids=[i["resource_id"] for i in items], now=int(r.get(keys.clock)))
            return


def driver() -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
                "--use-angle=swiftshader", f"--window-size={SIZE[0]},{SIZE[1]}", "--hide-scrollbars",
                "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)


def shoot(d: webdriver.Chrome, path: Path, lang: str) -> None:
    wait = WebDriverWait(d, 40)
    if lang == "zh":
        d.find_element(By.ID, "shell-lang").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "map-legend"), "图例"))
    wait.until(lambda x: x.execute_script(
        "const l = document.querySelectorAll('.map-label-district'); return l.length > 0 && "
        "Array.from(l).every(n => /[\\u4e00-\\u9fff]/.test(n.textContent) === (arguments[0] === 'zh'));", lang))
    time.sleep(1.5)  # the map's tiles of vector layers settle
    d.save_screenshot(str(path))
    print(f"wrote {path.relative_to(ROOT)}")


def main() -> int:
    if lang_font_missing():
        print("no CJK font: the Chinese screenshot would show boxes (apt-get install fonts-wqy-zenhei)",
              file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="screenshots-"))
    server = EmbeddedRedis(tmp / "redis")
    url = server.start()
    app = None
    try:
        r = redis.Redis.from_url(url)
        port = free_port()
        env = dict(os.environ, REDIS_URL=url, ECD_DATA_DIR=str(tmp / "var"), ECD_ACK_MINUTES="600")
        app = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--no-drill", "--workers", "2"],
                               cwd=ROOT, env=env, stdout=open(tmp / "app.out", "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        ns = paused_drill(r)
        dispatch_one(r, Keys(ns))
        d = driver()
        try:
            d.get(f"{base}/login?next=/")
            d.find_element(By.ID, "login-username").send_keys("operator")
            d.find_element(By.ID, "login-password").send_keys("flood-demo")
            d.find_element(By.ID, "login-submit").click()
            WebDriverWait(d, 40).until(EC.text_to_be_present_in_element((By.ID, "exercise-banner"), "EXERCISE"))
            WebDriverWait(d, 40).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".alert-card")))
            shoot(d, ROOT / "docs/screenshot-map-en.png", "en")
            shoot(d, ROOT / "docs/screenshot-map-zh.png", "zh")
        finally:
            d.quit()
        print(orjson.dumps({"namespace": ns}).decode())
    finally:
        if app is not None:
            app.terminate()
            app.wait(30)
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def lang_font_missing() -> bool:
    out = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True)
    return out.returncode != 0 or not out.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
