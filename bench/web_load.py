"""Web load benchmark: many signed-in clients polling the real dashboard, as the pages do.

    .venv/bin/python bench/web_load.py                  # 10, 50, 100, 200, 500 clients, 30 s each: a table
    .venv/bin/python bench/web_load.py --json           # {"runs": [{"clients", "p50_ms", ...}], ...} only
    .venv/bin/python bench/web_load.py --quick          # 10 and 50 clients, 8 s each (a smoke test)
    .venv/bin/python bench/web_load.py --clients 100,300 --seconds 20
    .venv/bin/python bench/web_load.py --record         # record the pages' requests again (headless Chromium)
    .venv/bin/python bench/web_load.py --clients 200 --exports 4   # and 4 planners exporting reports meanwhile

**The stack** is the real one: ``python app.py --no-drill --port P`` (supervisor, embedded Redis, engine,
drill runner, RQ worker, gunicorn with its default workers) in a temporary data folder, as
``tests/faults`` starts it. An exercise of the sample scenario (``jiangcheng_flood``) is started and
paused once alerts are open, so every page has alerts, recommendations and tasks to show.

**The requests** are not guessed: they are the requests a real page sent, recorded from headless
Chromium (``--record``: a wrapper around the page's ``fetch``, installed through the DevTools protocol
before any page script, keeps every ``GET /_changes`` address and every ``POST /_dash-update-component``
body; saved in ``bench/recorded/``, see its README). Each simulated client has a session of its own
(signed in through ``/login`` like a browser; the session cookie, and ``Origin`` as the app's cross-site
check requires) and does what its page does (assets/changes.js, layouts/changes.py): every second it
asks ``/_changes`` whether what the page shows changed; when the page's token changed it sends the
callbacks the page runs then (the map, its queue and attention strip; a department's tasks), when the
top bar's token changed the top bar's, each with the values the server last answered for the stores
it reads back (as the browser's store would hold them). Of N clients, 2 are operators (as in a command
centre), the rest department phones, spread over the six demo departments (each signed in as its
department's demo user, on its own department's tasks: a department without one is given one by a
dispatch before the run); ``--one-department`` puts every phone on the recorded department's tasks
instead (a hot department: one phone's report redraws every phone). Each phone sends a status update
on its department's task every 300 s (``--status-every``), each operator a dispatch every 60 s (the
recorded clicks, the recorded task ids replaced by the department's; a repeated dispatch is answered
"already dispatched"), the first ones spread evenly over the first period so the rate is steady from
the start.

**Long work beside it** (``--exports K``): K planners each fetch the drill's after-action report
(``/exercise/report/<ns>``, a long route: layouts/admission.py) again as soon as the last one came,
for the whole run; their fetches are counted apart (``exports``, ``export_p50_ms``), not in the
figures above, which say what the exports did to everyone else.

**Two processes.** The 2 operators' consoles run in a process of their own (forked), the phones in
this one: they are other machines, and with hundreds of phones in one event loop that loop's lateness
would count in the duty officer's figures. Each process reports its loop's lateness
(``bench_loop_lag_p95_ms``, ``consoles_loop_lag_p95_ms``); both share the machine with the stack.

**Measured** per request: the time from sending to the whole answer. p50/p95/p99 and errors (an HTTP
status >= 400 or a transport error or timeout: 204, Dash's "nothing to update", is a success) over every
request of a run; the operators' requests apart (their ``/_changes`` questions and their map
callbacks: how late the duty officer learns of a change and sees it), and the server's side of
them from each answer's ``Server-Timing`` (layouts/admission.py): the worker's own time (``*_app_p95_ms``)
and, within it, the wait for its turn (``*_queue_p95_ms``). While a run lasts, each process of
the stack (and this benchmark itself: it shares the machine) is sampled with psutil; the busiest
process and the machine's total CPU say where it saturates. The clients of a run all start within the
first second (spread evenly). Not counted: the run's first 3 s, and each client's first drawing of its
page (its first ``/_changes`` answer and the callbacks it runs, as a browser's page load does); every
request after that is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import multiprocessing
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RECORDED = ROOT / "bench" / "recorded"
SCENARIO = ROOT / "sample_data" / "scenarios" / "jiangcheng_flood"
LEVELS = (10, 50, 100, 200, 500)
OPERATORS = 2
WARMUP_S = 3.0
# a phone reports on its task at each change of status (acknowledged, en route, on scene, ...): a handful
# per task, minutes apart; every 5 minutes from every phone is already a busy night (--status-every)
STATUS_EVERY_S = 300.0
DISPATCH_EVERY_S = 60.0
TIMEOUT_S = 30.0
ERROR_KINDS: dict[str, int] = {}  # transport errors by exception class, over a run
PASSWORD = "flood-demo"  # the sample's demo accounts (sample_data/users.yaml)
DEPARTMENT_USERS = {"fire_rescue": "fire", "water_authority": "water", "police": "police", "medical": "medical",
                    "public_works": "works", "meteorology": "meteo"}
GATE_EVERY_S = 1.0  # assets/changes.js asks /_changes once a second
PAGE_STORES, SHELL_STORE = ("chg-map.data", "chg-dept.data"), "chg-shell.data"  # the stores it sets on a change


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


# ---- the stack -------------------------------------------------------------------------------------------
@dataclass
class Stack:
    base: str
    data: Path
    proc: subprocess.Popen
    redis_url: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_stack(data: Path, workers: int | None = None) -> Stack:
    """`python app.py --no-drill` on the embedded Redis in `data`, as tests/faults starts it."""
    env = dict(os.environ)
    env.pop("REDIS_URL", None)
    # every simulated phone shares one of six demo accounts: the per-user submission limits
    # (docs/operations.md, back-pressure) would refuse what real phones, each its own user, would not
    env.update(ECD_DATA_DIR=str(data), PYTHONUNBUFFERED="1", ECD_SUBMIT_USER_BURST="1000000",
               ECD_SUBMIT_USER_PER_MINUTE="1000000", ECD_SUBMIT_DEPARTMENT_BURST="1000000",
               ECD_SUBMIT_DEPARTMENT_PER_MINUTE="1000000")
    port = _free_port()
    argv = [sys.executable, "app.py", "--port", str(port), "--no-drill"]
    if workers:
        argv += ["--workers", str(workers)]
    out = open(data.parent / "app.out", "w")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited: {(data.parent / 'app.out').read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                break
        time.sleep(0.3)
    else:
        raise SystemExit("app.py did not serve within 90 s")
    info = json.loads((data / "app.json").read_text())
    return Stack(base, data, proc, info["redis"])


def stop_stack(stack: Stack) -> None:
    if stack.proc.poll() is None:
        stack.proc.send_signal(signal.SIGTERM)
        try:
            stack.proc.wait(60)
        except subprocess.TimeoutExpired:
            stack.proc.kill()


def processes(stack: Stack) -> dict[str, psutil.Process]:
    """The stack's processes by role (from the supervisor's app.json), gunicorn workers included."""
    info = json.loads((stack.data / "app.json").read_text())
    out: dict[str, psutil.Process] = {"supervisor": psutil.Process(stack.proc.pid)}
    for name, p in info["processes"].items():
        if not p.get("pid"):
            continue
        try:
            proc = psutil.Process(p["pid"])
        except psutil.NoSuchProcess:
            continue
        out[name if name != "web" else "web-master"] = proc
        if name == "web":
            for i, ch in enumerate(sorted(proc.children(), key=lambda c: c.pid)):
                out[f"web-worker-{i + 1}"] = ch
    return out


def start_paused_drill(redis_url: str, min_open: int = 8, within: float = 120.0) -> str:
    """The sample exercise, paused once `min_open` alerts are open (so pages have something to show)."""
    import redis

    from command.keys import Keys
    from command.ops import drills

    r = redis.Redis.from_url(redis_url)
    ns = drills.start_drill(r, SCENARIO, "2000", by="bench")
    keys = Keys(ns)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if r.zcard(keys.alerts_open) >= min_open:
            break
        time.sleep(0.1)
    drills.send(r, "pause", ns=ns, by="bench")
    while drills.drill_state(r, ns).get("paused") != "1" and time.monotonic() < deadline:
        time.sleep(0.05)
    log(f"drill {ns}: {r.zcard(keys.alerts_open)} open alerts, paused")
    r.close()
    return ns


RECORDER_JS = """
(() => {
  const orig = window.fetch;
  window.__dashBodies = [];
  window.fetch = function (input, init) {
    try {
      const url = typeof input === 'string' ? input : input.url;
      if (url.includes('_dash-update-component') && init && typeof init.body === 'string') {
        window.__dashBodies.push(init.body);
      } else if (url.includes('/_changes')) {
        window.__dashBodies.push(JSON.stringify({gate: url}));
      }
    } catch (e) { /* never in the page's way */ }
    return orig.apply(this, arguments);
  };
})();
"""


# ---- recording -----------------------------------------------------------------------------------------
def record(out: Path) -> None:
    """Sign in with headless Chromium as the operator and as a department, let each page poll, click
    Dispatch and Send update, and save every /_changes address and /_dash-update-component body the
    pages sent."""
    import redis
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from command.keys import Keys

    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    chromedriver = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
    tmp = Path(tempfile.mkdtemp(prefix="web-load-rec-"))
    data = tmp / "var"
    data.mkdir()
    stack = start_stack(data)
    try:
        ns = start_paused_drill(stack.redis_url)

        def driver(width: int, height: int) -> webdriver.Chrome:
            opts = webdriver.ChromeOptions()
            opts.binary_location = chromium
            for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
                        "--use-angle=swiftshader", f"--window-size={width},{height}", "--disable-dev-shm-usage",
                        "--no-first-run", "--disable-background-networking"):
                opts.add_argument(arg)
            d = webdriver.Chrome(service=Service(chromedriver), options=opts)
            # before any page script: keep the body of every callback request Dash sends (it uses fetch)
            d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORDER_JS})
            return d

        def sign_in(d: webdriver.Chrome, user: str, path: str) -> None:
            d.get(f"{stack.base}/login?next={path}")
            d.find_element(By.ID, "login-username").send_keys(user)
            d.find_element(By.ID, "login-password").send_keys(PASSWORD)
            d.find_element(By.ID, "login-submit").click()
            WebDriverWait(d, 30).until(EC.presence_of_element_located((By.ID, "page")))

        def bodies(d: webdriver.Chrome) -> list[dict[str, Any]]:
            """The callback bodies the page sent since the last call (the fetch wrapper's list)."""
            raw = d.execute_script("const r = window.__dashBodies || []; window.__dashBodies = []; return r;")
            return [json.loads(x) for x in raw]

        def click(d: webdriver.Chrome, xpath: str) -> None:
            el = WebDriverWait(d, 30).until(EC.presence_of_element_located((By.XPATH, xpath)))
            d.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();", el)

        op = driver(1500, 950)
        try:
            sign_in(op, "operator", "/")
            try:
                WebDriverWait(op, 60).until(EC.presence_of_element_located(
                    (By.XPATH, "//div[contains(@class,'alert-card')]//button[normalize-space()='Dispatch']")))
            except Exception:
                op.save_screenshot(str(tmp / "operator.png"))
                log(f"no Dispatch button; the page says: {op.find_element(By.TAG_NAME, 'body').text[:1500]!r} "
                    f"(screenshot {tmp / 'operator.png'})")
                raise
            time.sleep(6)
            operator_polls = bodies(op)
            log(f"operator page: {len(operator_polls)} requests: "
                f"{sorted({b.get('output', b.get('gate', ''))[:60] for b in operator_polls})}")
            click(op, "//div[contains(@class,'alert-card')]//button[normalize-space()='Dispatch']")
            time.sleep(3)
            operator_clicks = bodies(op)
        finally:
            op.quit()
        r = redis.Redis.from_url(stack.redis_url)
        keys = Keys(ns)
        departments = []
        for did in r.zrange(keys.dispatches_index, 0, -1):
            departments += [t.rsplit("-", 1)[-1] for t in json.loads(r.get(keys.dispatch(did.decode())))["task_ids"]]
        dept = next((d for d in departments if d in DEPARTMENT_USERS), None)
        if dept is None:
            raise SystemExit(f"the dispatch made no task for a demo department: {departments}")
        user = DEPARTMENT_USERS[dept]
        ph = driver(420, 900)
        try:
            sign_in(ph, user, "/department")
            card = "//div[contains(@class,'task-card')]"
            WebDriverWait(ph, 30).until(EC.presence_of_element_located((By.XPATH, card)))
            time.sleep(6)
            dept_polls = bodies(ph)
            log(f"department page: {len(dept_polls)} requests: "
                f"{sorted({b.get('output', b.get('gate', ''))[:60] for b in dept_polls})}")
            ph.find_element(By.XPATH, card + "//textarea").send_keys("on our way")
            click(ph, card + "//button[normalize-space()='Send update']")
            time.sleep(3)
            dept_clicks = bodies(ph)
        finally:
            ph.quit()
    finally:
        stop_stack(stack)

    def clicked(items: list[dict[str, Any]], output_part: str) -> dict[str, Any]:
        for b in items:  # a button's own click, or one relayed through a store (map-click: assets/clicks.js)
            if output_part in b.get("output", "") and any(str(c).endswith(("n_clicks", "-click.data"))
                                                          for c in b.get("changedPropIds", [])):
                return b
        raise SystemExit(f"no click request for {output_part} was recorded: {[b.get('output') for b in items]}")

    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "how": "bench/web_load.py --record: headless Chromium, a fetch wrapper (CDP addScriptToEvaluateOnNewDocument) on "
               "python app.py --no-drill with the sample exercise paused at its first open alerts",
        "namespace": ns,
        "operator": {"user": "operator", "polls": operator_polls,
                     "dispatch": clicked(operator_clicks, "map-toast")},
        "department": {"user": user, "department": dept, "polls": dept_polls,
                       "status": clicked(dept_clicks, "dept-msg")},
    }
    (out / "requests.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False))
    log(f"recorded {len(operator_polls)} operator and {len(dept_polls)} department requests "
        f"(+ a dispatch and a status update) into {out / 'requests.json'}")


def give_every_department_a_task(redis_url: str, ns: str, keep: set[str]) -> dict[str, list[str]]:
    """Each demo department's task ids in `ns` (newest first, as its page lists them): a department
    without one gets a dispatch of an open alert to one of its available units, so every phone has a
    task to show and to report on. The alerts in `keep` (the recorded dispatch's) are left alone."""
    import redis

    from command.errors import CommandError
    from command.keys import Keys
    from command.ops.dispatch import AlreadyDispatched, dispatch

    r = redis.Redis.from_url(redis_url)
    keys = Keys(ns)
    now = int(r.get(keys.clock))
    open_alerts = [json.loads(r.get(keys.alert(fp.decode()))) for fp in r.zrange(keys.alerts_open, 0, -1)]
    free = [a for a in open_alerts if a["fingerprint"] not in keep]
    units = [json.loads(v) for v in r.hvals(keys.resources)]
    out = {}
    for dept in DEPARTMENT_USERS:
        if not r.zcard(keys.department_tasks(dept)):
            unit = next((u for u in units if u["department"] == dept and u.get("status", "available") == "available"),
                        None)
            while unit is not None and free:
                a = free.pop(0)
                try:
                    done = dispatch(r, keys, fingerprint=a["fingerprint"], level=a["level"], resource_ids=[unit["id"]],
                                    operator="bench", now=now)
                except CommandError:
                    continue
                if not isinstance(done, AlreadyDispatched):
                    break
        out[dept] = [t.decode() for t in r.zrevrange(keys.department_tasks(dept), 0, -1)]
    r.close()
    return {d: ids for d, ids in out.items() if ids}


def _pattern_ids(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The pattern-matching ids (dicts) a callback body names, in order."""
    found: list[dict[str, Any]] = []

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            if isinstance(x.get("id"), dict):
                found.append(x["id"])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(body)
    return found


def status_body_for(recorded: dict[str, Any], recorded_ids: list[str], ids: list[str]) -> dict[str, Any]:
    """The recorded status update as another department's page would send it: the recorded
    department's task ids (in the order its page listed them) replaced by this one's."""
    text = json.dumps(recorded)
    for i, old in enumerate(recorded_ids):
        text = text.replace(old, f"\0{i}\0")
    for i in range(len(recorded_ids)):
        text = text.replace(f"\0{i}\0", ids[i % len(ids)])
    return json.loads(text)


# ---- replaying -----------------------------------------------------------------------------------------
@dataclass
class Page:
    user: str
    gate: str  # the /_changes address the page asks every second (path and query)
    on_page: list[dict[str, Any]]  # the callbacks the page runs when its token changes (chg-map, chg-dept)
    on_shell: list[dict[str, Any]]  # ... when the top bar's token changes (chg-shell)
    action: dict[str, Any]  # the click (dispatch or status update)
    action_every: float

    @property
    def polls(self) -> list[dict[str, Any]]:
        return [*self.on_page, *self.on_shell]


def load_recording(path: Path, ns: str, status_every: float = STATUS_EVERY_S) -> tuple[Page, Page, str]:
    """The operator's and a department's pages, their recorded namespace replaced by `ns`."""
    doc = json.loads(path.read_text())
    text = json.dumps(doc).replace(doc["namespace"], ns)
    doc = json.loads(text)

    def page(part: dict[str, Any], every: float) -> Page:
        gates = [b["gate"] for b in part["polls"] if "gate" in b]
        if not gates:
            raise SystemExit(f"{path}: the {part['user']} page asked /_changes nothing: record again (--record)")
        gate = gates[-1]
        gate = gate[gate.index("/_changes"):]  # path and query, whatever origin the browser had
        on_page: dict[str, dict[str, Any]] = {}
        on_shell: dict[str, dict[str, Any]] = {}
        for b in part["polls"]:
            changed = b.get("changedPropIds", [])
            if any(store in changed for store in PAGE_STORES):
                on_page[b["output"]] = b  # the newest of each callback
            elif SHELL_STORE in changed:
                on_shell[b["output"]] = b
        return Page(part["user"], gate, list(on_page.values()), list(on_shell.values()),
                    part["dispatch" if "dispatch" in part else "status"], every)

    return (page(doc["operator"], DISPATCH_EVERY_S), page(doc["department"], status_every),
            doc["department"]["department"])


@dataclass
class Sample:
    t: float
    ms: float
    ok: bool
    operator: bool
    is_map: bool
    status: int
    is_gate: bool = False
    steady: bool = True  # sent after the client's page had drawn itself once (its first answer's callbacks)
    app_ms: float | None = None  # the server's own time on it, and the part it waited for its turn
    queue_ms: float | None = None  # (its `Server-Timing` header: layouts/admission.py)


def _server_timing(resp: httpx.Response) -> tuple[float | None, float | None]:
    got: dict[str, float] = {}
    for part in resp.headers.get("server-timing", "").split(","):
        name, _, dur = part.strip().partition(";dur=")
        try:
            got[name] = float(dur)
        except ValueError:
            continue
    return got.get("app"), got.get("queue")


@dataclass
class Client:
    http: httpx.AsyncClient
    page: Page
    operator: bool
    stores: dict[tuple[str, str], Any] = field(default_factory=dict)
    tokens: dict[str, Any] = field(default_factory=dict)  # the last /_changes answer's "p" and "s"
    steady: bool = False  # the page has drawn itself once: what it sends from now on is counted


def _fill(body: dict[str, Any], stores: dict[tuple[str, str], Any]) -> dict[str, Any]:
    """The body with the values the client's stores hold now (what the server last answered for them)."""
    if not stores:
        return body
    out = dict(body)
    for part in ("inputs", "state"):
        items = body.get(part)
        if not items:
            continue
        new = []
        for it in items:
            if isinstance(it, dict) and isinstance(it.get("id"), str) and (it["id"], it.get("property")) in stores:
                it = {**it, "value": stores[(it["id"], it["property"])]}
            new.append(it)
        out[part] = new
    return out


def _remember(c: Client, answer: dict[str, Any], wanted: set[tuple[str, str]]) -> None:
    for cid, props in (answer.get("response") or {}).items():
        for prop, value in props.items():
            if (cid, prop) in wanted:
                c.stores[(cid, prop)] = value


async def _send(c: Client, base: str, body: dict[str, Any], wanted: set[tuple[str, str]],
                samples: list[Sample], t0: float) -> None:
    start = time.perf_counter()
    status, timing = 0, (None, None)
    try:
        resp = await c.http.post(base + "/_dash-update-component", json=_fill(body, c.stores))
        status, timing = resp.status_code, _server_timing(resp)
        if status == 200 and wanted:
            _remember(c, resp.json(), wanted)
        ok = status < 400
    except (httpx.HTTPError, ValueError) as exc:
        ok = False
        ERROR_KINDS[type(exc).__name__] = ERROR_KINDS.get(type(exc).__name__, 0) + 1
    end = time.perf_counter()
    samples.append(Sample(end - t0, (end - start) * 1000, ok, c.operator, "map-graph" in body.get("output", ""),
                          status, steady=c.steady, app_ms=timing[0], queue_ms=timing[1]))


async def _ask(c: Client, base: str, samples: list[Sample], t0: float) -> dict[str, Any] | None:
    """GET /_changes as assets/changes.js does; its answer, or None."""
    start = time.perf_counter()
    status, answer, timing = 0, None, (None, None)
    try:
        try:
            resp = await c.http.get(base + c.page.gate, headers={"Accept": "application/json"})
        except httpx.RemoteProtocolError:
            # a kept-alive connection the server closed as the question went out: a browser sends a
            # GET again on a new one (the time counts from the first try)
            resp = await c.http.get(base + c.page.gate, headers={"Accept": "application/json"})
        status, timing = resp.status_code, _server_timing(resp)
        if status == 200:
            answer = resp.json()
    except (httpx.HTTPError, ValueError) as exc:
        ERROR_KINDS[type(exc).__name__] = ERROR_KINDS.get(type(exc).__name__, 0) + 1
    end = time.perf_counter()
    samples.append(Sample(end - t0, (end - start) * 1000, 0 < status < 400, c.operator, False, status, True,
                          c.steady, timing[0], timing[1]))
    return answer


def _with_token(body: dict[str, Any], stores: tuple[str, ...], token: Any) -> dict[str, Any]:
    """The body with the new token as the value of its store's input (as set_props sets it)."""
    return {**body, "inputs": [{**it, "value": token} if f"{it.get('id')}.{it.get('property')}" in stores else it
                               for it in body.get("inputs", [])]}


async def _client_loop(c: Client, base: str, samples: list[Sample], t0: float, stop_at: float,
                       wanted: set[tuple[str, str]], offset: float, rng: random.Random) -> None:
    await asyncio.sleep(offset)
    start = time.perf_counter()
    ask_at = start
    # the clicks of all clients spread evenly over the period from the start: a steady rate of
    # (clients / period) per second throughout the run, however short the run
    action_at = start + rng.uniform(0.0, 1.0) * c.page.action_every
    while True:
        now = time.perf_counter()
        if now >= stop_at:
            return
        if ask_at <= now:
            answer = await _ask(c, base, samples, t0)
            if answer is not None:
                # a changed token runs the callbacks that take its store, together, as the browser sends them
                due = []
                for key, stores, bodies in (("s", (SHELL_STORE,), c.page.on_shell), ("p", PAGE_STORES, c.page.on_page)):
                    if answer.get(key) is not None and answer.get(key) != c.tokens.get(key):
                        c.tokens[key] = answer[key]
                        due += [_with_token(b, stores, answer[key]) for b in bodies]
                await asyncio.gather(*(_send(c, base, b, wanted, samples, t0) for b in due))
                c.steady = True  # the page's first drawing (as at page load) is done: count from here
            # the script asks again a second after the answer (setTimeout), so a slow answer delays it
            ask_at = time.perf_counter() + GATE_EVERY_S
        if time.perf_counter() >= action_at:
            await _send(c, base, c.page.action, wanted, samples, t0)
            action_at += c.page.action_every
        wake = min(ask_at, action_at, stop_at)
        await asyncio.sleep(max(0.0, wake - time.perf_counter()))


def sign_in_sessions(base: str, users: list[str]) -> list[dict[str, str]]:
    """One session per client: /login as a browser does (cookies kept)."""
    async def one(user: str, sem: asyncio.Semaphore) -> dict[str, str]:
        async with sem, httpx.AsyncClient(base_url=base, timeout=60) as h:
            resp = await h.post("/login", data={"username": user, "password": PASSWORD},
                                headers={"Origin": base})
            if resp.status_code not in (302, 303):
                raise SystemExit(f"sign-in as {user} answered {resp.status_code}: {resp.text[:300]}")
            return dict(h.cookies)

    async def all_() -> list[dict[str, str]]:
        sem = asyncio.Semaphore(4)
        return list(await asyncio.gather(*(one(u, sem) for u in users)))

    return asyncio.run(all_())


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def _clients(base: str, specs: list[tuple[Page, dict[str, str], bool]]) -> list[Client]:
    """A client per (page, session cookies, operator?), built before the run's clock starts (an
    httpx client takes milliseconds to build: 500 of them would eat the first seconds of a run)."""
    # idle connections dropped before gunicorn closes them (its keep-alive is 2 s), as a browser
    # resends a request that met a connection closed under it
    limits = httpx.Limits(max_connections=6, max_keepalive_connections=6, keepalive_expiry=1.5)
    headers = {"Origin": base, "Content-Type": "application/json", "Sec-Fetch-Site": "same-origin"}
    return [Client(httpx.AsyncClient(cookies=cookies, headers=headers, limits=limits, timeout=TIMEOUT_S), page, op)
            for page, cookies, op in specs]


async def _drive(base: str, clients: list[Client], t0: float, stop_at: float, wanted: set[tuple[str, str]],
                 n: int, first: int, seed: int) -> tuple[list[Sample], list[float]]:
    """Run `clients` from `t0` until `stop_at`: their samples, and how late this process's event loop
    woke (ms, every 50 ms after the warm-up)."""
    samples: list[Sample] = []
    lags: list[float] = []
    rng = random.Random(seed + first)

    async def lag_probe() -> None:
        # a request's time includes this loop's lateness (the clients share it): a busy benchmark
        # would inflate every figure
        while time.perf_counter() < stop_at:
            before = time.perf_counter()
            await asyncio.sleep(0.05)
            if before - t0 >= WARMUP_S:
                lags.append((time.perf_counter() - before - 0.05) * 1000)

    await asyncio.sleep(max(0.0, t0 - time.perf_counter()))
    # the clients of a run start spread evenly over its first second, in one order across both processes
    tasks = [_client_loop(c, base, samples, t0, stop_at, wanted, ((first + i) % n) / n, rng)
             for i, c in enumerate(clients)]
    await asyncio.gather(lag_probe(), *tasks)
    for c in clients:
        await c.http.aclose()
    return samples, lags


def _consoles_process(base: str, specs: list[tuple[Page, dict[str, str], bool]], t0: float, stop_at: float,
                      wanted: set[tuple[str, str]], n: int, seed: int, send: Any) -> None:
    """The operators' consoles, in a forked process (time.perf_counter is the same clock in both)."""
    ERROR_KINDS.clear()
    samples, lags = asyncio.run(_drive(base, _clients(base, specs), t0, stop_at, wanted, n, 0, seed))
    send.send(([dataclasses.astuple(x) for x in samples], lags, dict(ERROR_KINDS)))
    send.close()


def _server_side(counted: list[Sample]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, pick in (("operator_map", lambda s: s.operator and s.is_map), ("operator_gate", lambda s: s.operator and s.is_gate),
                       ("department", lambda s: not s.operator)):
        chosen = [s for s in counted if pick(s) and s.app_ms is not None]
        for what in ("app", "queue"):
            vals = [getattr(s, f"{what}_ms") for s in chosen]
            out[f"{name}_{what}_p95_ms"] = round(_pct(vals, 95), 1) if vals else None
    return out


async def _export_loop(base: str, path: str, cookies: dict[str, str], t0: float, stop_at: float,
                       took: list[float], failed: list[int]) -> None:
    """A planner fetching `path` (the after-action report) again as soon as the last one came."""
    async with httpx.AsyncClient(base_url=base, cookies=cookies, timeout=TIMEOUT_S * 4) as h:
        await asyncio.sleep(max(0.0, t0 - time.perf_counter()))
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            try:
                ok = (await h.get(path)).status_code == 200
            except httpx.HTTPError:
                ok = False
            if start - t0 >= WARMUP_S:
                took.append((time.perf_counter() - start) * 1000)
                failed[0] += not ok


def run_level(base: str, op_page: Page, dept_pages: list[Page], op_sessions: list[dict[str, str]],
              dept_sessions: list[dict[str, str]], n: int, seconds: float, procs: dict[str, psutil.Process],
              seed: int = 1, exports: list[dict[str, str]] | None = None, export_path: str = "") -> dict[str, Any]:
    n_ops = min(OPERATORS, n)
    wanted = {(it["id"], it["property"]) for page in (op_page, *dept_pages) for b in page.polls
              for part in ("inputs", "state") for it in b.get(part) or []
              if isinstance(it, dict) and isinstance(it.get("id"), str) and it.get("property") == "data"}
    cpu: dict[str, list[float]] = {k: [] for k in procs}
    machine: list[float] = []
    me = psutil.Process()
    own: list[float] = []
    # phone j signed in as dept_pages[j % k]'s user (sign_in_sessions kept that order)
    phones = [(dept_pages[j % len(dept_pages)], dept_sessions[j % len(dept_sessions)], False) for j in range(n - n_ops)]
    consoles = [(op_page, op_sessions[i % len(op_sessions)], True) for i in range(n_ops)]
    phone_clients = _clients(base, phones)
    t0 = time.perf_counter() + 0.3  # time for the consoles' process to start and build its 2 clients
    stop_at = t0 + seconds
    # The operators' consoles run in a process of their own, as they are other machines than the phones:
    # with hundreds of phones in this one's event loop, its lateness would count in the duty officer's
    # figures (each process reports its loop's lateness; both share the machine's cores with the stack).
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_consoles_process, args=(base, consoles, t0, stop_at, wanted, n, seed, send))
    child.start()
    child_ps = psutil.Process(child.pid)

    async def main() -> tuple[list[Sample], list[float]]:
        for p in (*procs.values(), me, child_ps):
            with contextlib.suppress(psutil.Error):
                p.cpu_percent(None)
        psutil.cpu_percent(None)

        async def sampler() -> None:
            while time.perf_counter() < stop_at:
                await asyncio.sleep(1.0)
                warm = time.perf_counter() - t0 >= WARMUP_S
                for k, p in procs.items():
                    with contextlib.suppress(psutil.Error):
                        v = p.cpu_percent(None)
                        if warm:
                            cpu[k].append(v)
                mine = me.cpu_percent(None)
                with contextlib.suppress(psutil.Error):
                    mine += child_ps.cpu_percent(None)
                total = psutil.cpu_percent(None)
                if warm:
                    own.append(mine)
                    machine.append(total)

        driven, *_ = await asyncio.gather(_drive(base, phone_clients, t0, stop_at, wanted, n, n_ops, seed), sampler(),
                                          *(_export_loop(base, export_path, c, t0, stop_at, export_ms, export_failed)
                                            for c in exports or []))
        return driven

    export_ms: list[float] = []
    export_failed = [0]
    ERROR_KINDS.clear()
    samples, lags = asyncio.run(main())
    if not receive.poll(60):
        child.kill()
        raise SystemExit(f"the operators' consoles' process gave no result (exit code {child.exitcode})")
    op_samples, op_lags, op_errors = receive.recv()
    child.join(30)
    samples += [Sample(*x) for x in op_samples]
    for k, v in op_errors.items():
        ERROR_KINDS[k] = ERROR_KINDS.get(k, 0) + v
    counted = [s for s in samples if s.t >= WARMUP_S and s.steady]
    ms = [s.ms for s in counted]
    op_map = [s.ms for s in counted if s.operator and s.is_map]
    op_gate = [s.ms for s in counted if s.operator and s.is_gate]
    gate = [s.ms for s in counted if s.is_gate]
    dept = [s.ms for s in counted if not s.operator]
    errors = sum(1 for s in counted if not s.ok)
    by_proc = {k: round(statistics.fmean(v), 1) for k, v in cpu.items() if v}
    busiest = max(by_proc, key=by_proc.get) if by_proc else None
    return {
        "clients": n, "operators": n_ops, "seconds": seconds,
        "requests": len(counted), "errors": errors,
        "gate_requests": len(gate), "callbacks": len(counted) - len(gate),
        "gate_p95_ms": round(_pct(gate, 95), 1) if gate else None,
        "p50_ms": round(_pct(ms, 50), 1), "p95_ms": round(_pct(ms, 95), 1), "p99_ms": round(_pct(ms, 99), 1),
        "max_ms": round(max(ms), 1) if ms else None,
        "requests_per_s": round(len(counted) / max(seconds - WARMUP_S, 1e-9), 1),
        "operator_map_p95_ms": round(_pct(op_map, 95), 1) if op_map else None,
        "operator_map_requests": len(op_map),
        "operator_gate_p95_ms": round(_pct(op_gate, 95), 1) if op_gate else None,
        "department_p95_ms": round(_pct(dept, 95), 1) if dept else None,
        # the server's side of the same requests (Server-Timing): the worker's own time and, within it,
        # the wait for its turn; the rest of a request's time is the way in (the worker's thread pool,
        # the network) and out (this benchmark's own loop)
        **_server_side(counted),
        "transport_errors": dict(ERROR_KINDS),
        "statuses": {str(k): sum(1 for s in counted if s.status == k) for k in sorted({s.status for s in counted})},
        "cpu_percent": by_proc, "busiest_process": busiest,
        "machine_cpu_percent": round(statistics.fmean(machine), 1) if machine else None,
        "bench_cpu_percent": round(statistics.fmean(own), 1) if own else None,
        "bench_loop_lag_p95_ms": round(_pct(lags, 95), 1) if lags else None,
        "consoles_loop_lag_p95_ms": round(_pct(op_lags, 95), 1) if op_lags else None,
        "exporters": len(exports or []), "exports": len(export_ms), "export_errors": export_failed[0],
        "export_p50_ms": round(_pct(export_ms, 50), 1) if export_ms else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    ap.add_argument("--quick", action="store_true", help="10 and 50 clients, 8 s each")
    ap.add_argument("--clients", help="comma-separated client counts (default 10,50,100,200,500)")
    ap.add_argument("--seconds", type=float, help="seconds per level (default 30)")
    ap.add_argument("--workers", type=int, help="gunicorn workers (default: app.py's own)")
    ap.add_argument("--record", action="store_true", help="record the pages' requests again (headless Chromium)")
    ap.add_argument("--recording", type=Path, default=RECORDED / "requests.json")
    ap.add_argument("--one-department", action="store_true",
                    help="every phone of the recorded department, on the same tasks (a hot department), instead "
                         "of phones spread over the demo departments")
    ap.add_argument("--status-every", type=float, default=STATUS_EVERY_S,
                    help=f"seconds between a phone's status updates (default {STATUS_EVERY_S:g})")
    ap.add_argument("--exports", type=int, default=0,
                    help="planners fetching the drill's after-action report back to back meanwhile (default 0)")
    args = ap.parse_args(argv)
    if args.record:
        record(args.recording.parent)
        if not args.json and not args.clients and not args.quick:
            return 0
    levels = [int(x) for x in args.clients.split(",")] if args.clients else ([10, 50] if args.quick else list(LEVELS))
    seconds = args.seconds or (8.0 if args.quick else 30.0)
    tmp = Path(tempfile.mkdtemp(prefix="web-load-"))
    data = tmp / "var"
    data.mkdir()
    log(f"starting the stack in {data} ...")
    stack = start_stack(data, args.workers)
    runs = []
    try:
        ns = start_paused_drill(stack.redis_url)
        op_page, dept_page, dept = load_recording(args.recording, ns, args.status_every)
        dept_pages = [dept_page]
        if not args.one_department:
            # phones of every department, each on its own department's tasks (as in a command centre)
            keep = {str(b.get("fp")) for b in _pattern_ids(op_page.action)}
            tasks = give_every_department_a_task(stack.redis_url, ns, keep)
            recorded_ids = [str(b["task"]) for b in _pattern_ids(dept_page.action) if "task" in b]
            recorded_ids = list(dict.fromkeys(recorded_ids))
            dept_pages = [dept_page] + [
                Page(DEPARTMENT_USERS[d], dept_page.gate, dept_page.on_page, dept_page.on_shell,
                     status_body_for(dept_page.action, recorded_ids, ids), dept_page.action_every)
                for d, ids in tasks.items() if d != dept]
            log(f"department phones spread over {len(dept_pages)} departments: "
                f"{', '.join(p.user for p in dept_pages)}")
        n_max = max(levels)
        n_phones = max(1, n_max - OPERATORS)
        log(f"signing in {min(OPERATORS, n_max)} operator and {n_phones} department sessions ...")
        op_sessions = sign_in_sessions(stack.base, [op_page.user] * min(OPERATORS, n_max))
        dept_sessions = sign_in_sessions(stack.base, [dept_pages[i % len(dept_pages)].user for i in range(n_phones)])
        exporters = sign_in_sessions(stack.base, ["planner"] * args.exports) if args.exports else []
        procs = processes(stack)
        for n in levels:
            log(f"{n} clients for {seconds:g} s" + (f" and {args.exports} exporting planners" if exporters else "") + " ...")
            res = run_level(stack.base, op_page, dept_pages, op_sessions, dept_sessions, n, seconds, procs,
                            exports=exporters, export_path=f"/exercise/report/{ns}")
            runs.append(res)
            log(f"  p50 {res['p50_ms']} ms, p95 {res['p95_ms']} ms, p99 {res['p99_ms']} ms, errors {res['errors']} "
                f"of {res['requests']} ({res['callbacks']} callbacks), operator map p95 {res['operator_map_p95_ms']} ms "
                f"({res['operator_map_requests']}), operators' /_changes p95 {res['operator_gate_p95_ms']} ms, "
                f"busiest {res['busiest_process']} {res['cpu_percent'].get(res['busiest_process'])} %, "
                f"statuses {res['statuses']}"
                + (f", {res['exports']} exports (p50 {res['export_p50_ms']} ms, {res['export_errors']} failed)"
                   if exporters else ""))
            time.sleep(2)
    finally:
        stop_stack(stack)
    out = {"runs": runs, "recording": str(args.recording.relative_to(ROOT)) if args.recording.is_relative_to(ROOT)
           else str(args.recording), "department": dept, "status_every_s": args.status_every,
           "departments": [p.user for p in dept_pages],
           "callbacks_per_change": {"operator": {"page": len(op_page.on_page), "shell": len(op_page.on_shell)},
                                    "department": {"page": len(dept_page.on_page),
                                                   "shell": len(dept_page.on_shell)}},
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "loadavg_1m": os.getloadavg()[0]}}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{'clients':>7} {'requests':>9} {'callbacks':>9} {'req/s':>7} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'p99 ms':>8} {'op map p95':>10} {'op ask p95':>10} {'machine %':>9}  busiest process (CPU %)")
    for x in runs:
        print(f"{x['clients']:>7} {x['requests']:>9} {x['callbacks']:>9} {x['requests_per_s']:>7} {x['errors']:>6} "
              f"{x['p50_ms']:>8} "
              f"{x['p95_ms']:>8} {x['p99_ms']:>8} {str(x['operator_map_p95_ms']):>10} {str(x['operator_gate_p95_ms']):>10} "
              f"{str(x['machine_cpu_percent']):>9}  {x['busiest_process']} ({x['cpu_percent'].get(x['busiest_process'])}),"
              f" bench itself {x['bench_cpu_percent']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
