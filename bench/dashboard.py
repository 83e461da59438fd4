"""Dashboard benchmark: the operator map callback and one-click dispatch, measured side by side in one run.

    .venv/bin/python bench/dashboard.py            # a readable table (progress on stderr)
    .venv/bin/python bench/dashboard.py --json     # one JSON object on stdout, nothing else
    .venv/bin/python bench/dashboard.py --quick    # smaller sizes, a smoke test
    .venv/bin/python bench/dashboard.py --profile  # also cProfile the slowest map case (stderr)

It uses ``REDIS_URL`` if set, else starts the project's embedded Redis in a temporary folder (and stops
it at the end). The data lives in a namespace of its own (``bench-dash-<id>``), deleted at the end.

The exercise: 10,000 water-level gauges with thresholds in the Jiangcheng bounding box (the sample's 6
zones, its rules and its rivers as base map), 500 resources, 20 incidents. Every gauge has a reading
(written with ``StreamWriter(record=True)``: ``latest``, series, change sequence), 200 gauges breach a
threshold for 30 minutes, and ``command.engine.consumer.Engine.drain()`` turns that into 200 open alerts, each
with a recommendation. ``meta.mode`` is ``exercise``; the ``DRILLS`` registry lists it as running.

(a) map: the map callback function ``layouts.map._update_map`` (``map_update`` plus the wire conversion)
    called directly inside a Flask request context of ``app.create_app(redis_url=...)`` signed in as the
    operator, N times per case: ``full`` (the whole map: first load, language or view change),
    ``full_cold`` (the same with the per-process station cache empty: a worker's first request),
    ``no_change``, ``alert_change`` (one new alert), ``alert_change_whole_layer`` (the baseline: the same
    change sent as before point-by-point patches, the whole station layer and every zone layer),
    ``station_changes`` (100 gauges report new values); ``build_figure`` alone too. CPU time of this
    process is given beside the wall-clock time. Server time = the call plus ``plotly.io.json.to_json_plotly`` of the
    response Dash sends (``{"multi": true, "response": {...}}``); payload = that JSON's bytes (no_update:
    Dash's empty answer, 28 bytes). The same cases through Dash itself (Flask test client,
    ``POST /_dash-update-component``), and over HTTP against the running app (gunicorn), are reported
    alongside. ``dispatch_recommended`` is also timed in-process on a few alerts (server side only).
(b) dispatch: ``python app.py --no-drill --port P`` on the same Redis, headless Chromium signs in as
    ``operator``, shows the namespace and, for 20 alerts, clicks the card's ``Dispatch`` button. A
    MutationObserver on ``#map-toast`` installed before the click records ``performance.now()`` when the
    toast's text changes, so selenium round trips are not counted; p50/p95 of click -> confirmation.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gzip
import io
import json
import os
import platform
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis
import yaml

ROOT = Path(__file__).resolve().parent.parent
# keep bench/ off the path: bench/feeds.py would hide the `feeds` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from command.config import SAMPLE_DATA, Settings  # noqa: E402
from command.keys import DRILLS, LIVE, Keys  # noqa: E402
from command.runtime.redis_server import EmbeddedRedis  # noqa: E402
from command.scenarios.namespaces import delete_namespace  # noqa: E402
from command.timeutil import now_ms, parse_time  # noqa: E402

TARGET_MAP_MS = 300.0
TARGET_PAYLOAD_BYTES = 3_000_000  # 3 MB (decimal)
TARGET_DISPATCH_MS = 300.0
TARGET_FULL_P95_MS = 150.0  # the whole map at 10,000 gauges, p95
TARGET_ALERT_BYTES = 50_000  # one alert change on the wire

TZ = "Asia/Shanghai"
START_MS = parse_time("2026-07-14T00:00:00+08:00")
MIN = 60_000
BBOX = (114.19, 114.46, 30.45, 30.70)  # lon min/max, lat min/max: the sample's Jiangcheng
OPERATOR = {"username": "operator", "password": "flood-demo"}
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

_quiet = False


def log(msg: str) -> None:
    if not _quiet:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Sizes:
    stations: int
    resources: int
    alerts: int
    incidents: int
    repeat: int  # samples per map case
    changes: int  # gauges with new values in `station_changes`
    server_dispatches: int  # dispatch_recommended timed in-process
    dispatches: int  # clicks in the browser
    http_repeat: int


FULL = Sizes(stations=10_000, resources=500, alerts=200, incidents=20, repeat=20, changes=100,
             server_dispatches=10, dispatches=20, http_repeat=10)
QUICK = Sizes(stations=2_000, resources=100, alerts=40, incidents=5, repeat=5, changes=100,
              server_dispatches=3, dispatches=5, http_repeat=3)


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


# ------------------------------------------------------------------------------------------------
# The synthetic exercise
# ------------------------------------------------------------------------------------------------
RESOURCE_MIX = [  # type, department, share
    ("pump", "water_authority", 0.30), ("sandbag_truck", "public_works", 0.16),
    ("rescue_crew", "fire_rescue", 0.14), ("rescue_boat", "fire_rescue", 0.12),
    ("ambulance", "medical", 0.14), ("patrol_car", "police", 0.14),
]


@dataclass
class Exercise:
    keys: Keys
    scenario: str
    stations: dict[str, Any]  # id -> Station
    normal: dict[str, float]
    breach: list[str]  # gauges with an open alert
    spare: list[str]  # gauges with no alert (for the change cases)
    clock: int


def make_exercise(r: redis.Redis, sizes: Sizes, seed: int = 7) -> Exercise:
    """Registry via `load_namespace`, readings via `StreamWriter(record=True)`, alerts via the engine."""
    import pandas as pd

    from command.engine.consumer import Engine
    from command.geo import ZoneLocator
    from command.models import Incident, Resource, ResourceStatus, Station
    from command.rules import parse_rules
    from command.scenarios.load import Scenario
    from command.scenarios.namespaces import load_namespace
    from command.scenarios.reference import load_zones
    from command.streams import StreamWriter

    keys = Keys(f"bench-dash-{uuid.uuid4().hex[:8]}")
    name = f"bench_dashboard_{keys.ns[-8:]}"
    rng = np.random.default_rng(seed)
    zones = load_zones(SAMPLE_DATA / "zones.geojson")
    locator = ZoneLocator(zones)
    lon0, lon1, lat0, lat1 = BBOX
    stations: dict[str, Station] = {}
    normal: dict[str, float] = {}
    for j in range(sizes.stations):
        sid = f"WL-D{j + 1:05d}"
        lon, lat = round(float(rng.uniform(lon0, lon1)), 5), round(float(rng.uniform(lat0, lat1)), 5)
        base = float(rng.uniform(18.0, 30.0))
        y = round(base + float(rng.uniform(0.8, 2.0)), 2)
        stations[sid] = Station(id=sid, name=f"Gauge {j + 1}", name_zh=f"水位站{j + 1}", kind="water_level",
                                lon=lon, lat=lat, zone=locator.zone_of(lon, lat), unit="m",
                                thresholds={"yellow": y, "orange": round(y + 0.6, 2), "red": round(y + 1.2, 2)})
        normal[sid] = round(base, 3)
    resources: list[Resource] = []
    counts = [max(1, round(sizes.resources * share)) for *_, share in RESOURCE_MIX]
    counts[0] += sizes.resources - sum(counts)
    for (rtype, dept, _), n in zip(RESOURCE_MIX, counts, strict=True):
        for i in range(n):
            status = ResourceStatus.out_of_service if rng.random() < 0.05 else ResourceStatus.available
            resources.append(Resource(id=f"{rtype.upper().replace('_', '-')}-{i + 1:03d}", department=dept,
                                      type=rtype, name=f"{rtype.replace('_', ' ').title()} {i + 1}",
                                      lat=round(float(rng.uniform(lat0, lat1)), 5),
                                      lon=round(float(rng.uniform(lon0, lon1)), 5), status=status,
                                      capacity=float(rng.choice([500, 1000, 3000])) if rtype == "pump" else None))
    rules_doc = yaml.safe_load((SAMPLE_DATA / "rules.yaml").read_text(encoding="utf-8"))
    sc = Scenario(folder=ROOT / "bench", name=name, description="bench/dashboard.py synthetic exercise",
                  start=START_MS, timezone=TZ, stations=stations, zones=zones, resources=resources,
                  ruleset=parse_rules(rules_doc, source="sample rules.yaml"), rules_doc=rules_doc,
                  readings=pd.DataFrame({"t": [], "station_id": [], "kind": [], "value": []}),
                  incidents=[], injects=[],
                  basemap=orjson.loads((SAMPLE_DATA / "rivers.geojson").read_bytes()))
    load_namespace(r, keys, sc, shards=1, mode="exercise")

    ids = list(stations)
    order = rng.permutation(len(ids))
    breach = [ids[i] for i in order[:sizes.alerts]]
    spare = [ids[i] for i in order[sizes.alerts:]]
    levels = ["red"] * (sizes.alerts // 4) + ["orange"] * (sizes.alerts * 35 // 100)
    levels += ["yellow"] * (sizes.alerts - len(levels))
    breach_value = {sid: round(stations[sid].thresholds[lv] + float(rng.uniform(0.05, 0.4)), 3)
                    for sid, lv in zip(breach, levels, strict=True)}
    w = StreamWriter(r, keys, 1, record=True)
    for sid in ids:  # every gauge reports at the start; a breaching one is already above its level
        w.reading(sid, "water_level", START_MS, breach_value.get(sid, normal[sid]))
    w.flush()
    for dt in (15 * MIN, 30 * MIN):  # ... and stays there for the rule's `for: 30m`
        for sid in breach:
            w.reading(sid, "water_level", START_MS + dt, breach_value[sid])
        w.flush()
    for k in range(sizes.incidents):  # on the map, but no category the incident rule acts on
        lon, lat = float(rng.uniform(lon0, lon1)), float(rng.uniform(lat0, lat1))
        w.incident(Incident(id=f"INC-{k + 1:03d}", time=START_MS + 20 * MIN, category="road_closure", lat=lat,
                            lon=lon, severity="yellow", description=f"Road {k + 1} closed by standing water",
                            zone=locator.zone_of(lon, lat)))
    w.flush()
    clock = START_MS + 30 * MIN
    r.set(keys.clock, clock)
    eng = Engine(r, keys, consumer=f"bench-{keys.ns}")
    eng.start()
    eng.drain()
    eng.release()
    n_open = r.zcard(keys.alerts_open)
    fps = [x.decode() for x in r.zrange(keys.alerts_open, 0, -1)]
    n_rec = sum(1 for x in r.mget([keys.recommendation(fp) for fp in fps]) if x) if fps else 0
    if n_open != sizes.alerts or n_rec != sizes.alerts:
        raise RuntimeError(f"expected {sizes.alerts} open alerts with recommendations, got {n_open} / {n_rec}")
    return Exercise(keys, name, stations, normal, breach, spare, clock)


def new_alert(r: redis.Redis, ex: Exercise) -> str:
    """One more gauge crosses yellow for 30 minutes: the engine opens one alert (one alert change)."""
    from command.engine.consumer import Engine
    from command.streams import StreamWriter

    sid = ex.spare.pop()
    y = ex.stations[sid].thresholds["yellow"]
    w = StreamWriter(r, ex.keys, 1, record=True)
    w.reading(sid, "water_level", ex.clock + 15 * MIN, y + 0.2)
    w.reading(sid, "water_level", ex.clock + 45 * MIN, y + 0.25)
    w.flush()
    eng = Engine(r, ex.keys, consumer=f"bench-{ex.keys.ns}")
    eng.start()
    eng.drain()
    eng.release()
    return sid


def station_changes(r: redis.Redis, ex: Exercise, n: int, t: int) -> list[str]:
    """`n` gauges without alerts report a new (normal) value: one recorder batch, as a feed writes it."""
    from command.engine.consumer import Engine
    from command.streams import StreamWriter

    sids = ex.spare[:n]
    w = StreamWriter(r, ex.keys, 1, record=True)
    for i, sid in enumerate(sids):
        w.reading(sid, "water_level", t, round(ex.normal[sid] + 0.01 * (1 + i % 7), 3))
    w.flush()
    eng = Engine(r, ex.keys, consumer=f"bench-{ex.keys.ns}")
    eng.start()
    eng.drain()
    eng.release()
    return sids


# ------------------------------------------------------------------------------------------------
# (a) the map callback, in-process
# ------------------------------------------------------------------------------------------------
def dash_response(out: tuple[Any, Any]) -> dict:
    """What Dash puts on the wire for the map callback's return value. Outputs that are no_update are
    left out; when both are, Dash still answers 200 with an empty response (28 bytes)."""
    from dash._no_update import NoUpdate

    fig, ver = out
    resp: dict[str, dict] = {}
    if not NoUpdate.is_no_update(fig):
        resp["map-graph"] = {"figure": fig}
    if not NoUpdate.is_no_update(ver):
        resp["map-version"] = {"data": ver}
    return {"multi": True, "response": resp}


def patch_ops(fig: Any) -> int | None:
    from dash import Patch

    if isinstance(fig, Patch):
        fig = fig.to_plotly_json()
    if isinstance(fig, dict) and "__dash_patch_update" in fig:
        return len(fig["operations"])
    return None


def map_request_body(ns: str, client: dict | None, n: int = 1) -> dict:
    """The body Dash's renderer posts for `_update_map` when /_changes says the map changed (`chg-map`)."""
    return {"output": "..map-graph.figure...map-version.data..",
            "outputs": [{"id": "map-graph", "property": "figure"}, {"id": "map-version", "property": "data"}],
            "inputs": [{"id": "chg-map", "property": "data", "value": f"t{n}"},
                       {"id": "map-poke", "property": "data", "value": 0}],
            "changedPropIds": ["chg-map.data"],
            "state": [{"id": "ns", "property": "data", "value": ns}, {"id": "lang", "property": "data", "value": "en"},
                      {"id": "map-version", "property": "data", "value": client}]}


def time_case(fn, repeat: int, before=None) -> dict[str, Any]:
    """Run fn() `repeat` times: compute time, to_json_plotly time, payload of the last one."""
    from plotly.io.json import to_json_plotly

    compute, encode, total, cpu = [], [], [], []
    payload, gz, ops, out = 0, 0, None, None
    for _ in range(repeat):
        if before:
            before()
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = fn()
        t1 = time.perf_counter()
        js = to_json_plotly(dash_response(out))
        t2 = time.perf_counter()
        cpu.append((time.process_time() - c0) * 1000)  # this process's CPU: less moved by other load
        compute.append((t1 - t0) * 1000)
        encode.append((t2 - t1) * 1000)
        total.append((t2 - t0) * 1000)
        payload = len(js.encode())
    if out is not None:
        gz = len(gzip.compress(to_json_plotly(dash_response(out)).encode(), 6))
        ops = patch_ops(out[0])
    return {"p50_ms": pct(total, 50), "p95_ms": pct(total, 95), "max_ms": max(total),
            "cpu_p50_ms": pct(cpu, 50), "cpu_p95_ms": pct(cpu, 95),
            "compute_p50_ms": pct(compute, 50), "encode_p50_ms": pct(encode, 50),
            "payload_bytes": payload, "payload_gzip_bytes": gz, "patch_ops": ops, "samples": len(total),
            "_out": out}


def bench_map(url: str, ex: Exercise, sizes: Sizes, data_dir: Path, profile: bool) -> dict[str, Any]:
    """The map callback as the web worker runs it: `layouts.map._update_map` (a thin wrapper around
    `map_update`), in a request context signed in as the operator, plus Dash's JSON encoding."""
    import flask

    from app import create_app
    from command.publish import views
    from layouts.common import rds
    from layouts.operator.callbacks import _settings, _update_map
    from layouts.operator.figure import build_figure

    app = create_app(Settings(data_dir=data_dir), redis_url=url)
    keys, n = ex.keys, sizes.repeat
    ns = keys.ns
    cases: dict[str, dict[str, Any]] = {}
    with app.server.test_request_context("/"):
        flask.session["user"] = {"username": "operator", "name": "Operator", "department": "emergency_management",
                                 "role": "operator"}
        r = rds()
        base = _settings()

        def cb(client):
            return lambda: _update_map(1, 0, ns, "en", client)

        log(f"(a) map: full figure x{n} ({sizes.stations:,} gauges, {sizes.alerts} alerts)")
        cases["full_cold"] = time_case(cb(None), max(3, n // 4), before=lambda: views._STATIONS.pop(ns, None))
        cases["full"] = time_case(cb(None), n)
        v0 = cases["full"]["_out"][1]
        log(f"(a) map: no change x{n}")
        cases["no_change"] = time_case(cb(v0), n)
        sid = new_alert(r, ex)
        log(f"(a) map: one alert change (a new alert on {sid}) x{n}")
        cases["alert_change"] = time_case(cb(v0), n)
        # the baseline: the same change sent as before, the whole station layer and every zone layer
        cases["alert_change_whole_layer"] = time_case(lambda: (whole_layer_patch(r, keys), v0), n)
        v1 = cases["alert_change"]["_out"][1]
        changed = station_changes(r, ex, sizes.changes, ex.clock + 50 * MIN)
        log(f"(a) map: {len(changed)} gauges with new values x{n}")
        cases["station_changes"] = time_case(cb(v1), n)
        # build_figure alone, as the module names it (the full map above is build_figure + the wrapper)
        cases["build_figure"] = time_case(lambda: build_figure(r, keys, "en", base), n)
        prof_text = None
        if profile:
            worst = max(("full", "alert_change", "station_changes"), key=lambda c: cases[c]["p50_ms"])
            client = {"full": None, "alert_change": v0, "station_changes": v1}[worst]
            prof_text = profile_case(cb(client), worst)
    # the same through Dash itself (routing, validation, to_json), without a network
    dash = bench_dash_client(app, ex, n, v0)
    for c in cases.values():
        c.pop("_out", None)
    return {"cases": cases, "dash": dash, "profile": prof_text, "app": app}


def whole_layer_patch(r: redis.Redis, keys: Keys) -> dict:
    """What the map callback sent for an alert change before it patched point by point (the baseline):
    every station's colour, size and hover, and every zone layer with its polygon."""
    from dash import Patch

    from command.publish import views

    idx = views.station_index(r, keys)
    rank = views.level_rank(r, keys)
    alerts = views.open_alerts(r, keys, rank)
    m = views.station_layer(idx, views.latest_values(r, keys), views.station_levels(alerts, rank))
    patch = Patch()
    patch["data"][0]["marker"]["color"] = m.color
    patch["data"][0]["marker"]["size"] = m.size
    patch["data"][0]["customdata"] = m.custom
    patch["layout"]["map"]["layers"] = views.zone_layers(views.zones(r, keys), alerts, rank)
    return patch.to_plotly_json()


def profile_case(fn, name: str, repeat: int = 5, top: int = 25) -> str:
    from plotly.io.json import to_json_plotly

    prof = cProfile.Profile()
    prof.enable()
    for _ in range(repeat):
        to_json_plotly(dash_response(fn()))
    prof.disable()
    buf = io.StringIO()
    buf.write(f"cProfile of map case {name!r} (call + to_json_plotly), {repeat} runs\n")
    st = pstats.Stats(prof, stream=buf).strip_dirs()
    st.sort_stats("cumulative").print_stats(top)
    st.sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def bench_dash_client(app, ex: Exercise, n: int, v0: dict) -> dict[str, Any]:
    """POST /_dash-update-component through the Flask test client, signed in as the operator."""
    client = app.server.test_client()
    resp = client.post("/login", data=OPERATOR)
    if resp.status_code != 302:
        raise RuntimeError(f"sign-in through the test client failed: {resp.status_code}")
    out: dict[str, Any] = {}
    stale = dict(v0)  # older than the current state: the alert and station changes are pending
    for case, state in (("full", None), ("no_change", "current"), ("changes_pending", stale)):
        if state == "current":
            body = map_request_body(ex.keys.ns, None)
            state = orjson.loads(client.post("/_dash-update-component", json=body).data)["response"][
                "map-version"]["data"]
        times, size, status = [], 0, 0
        for i in range(n):
            t0 = time.perf_counter()
            resp = client.post("/_dash-update-component", json=map_request_body(ex.keys.ns, state, i + 1))
            times.append((time.perf_counter() - t0) * 1000)
            size, status = len(resp.data), resp.status_code
        out[case] = {"p50_ms": pct(times, 50), "p95_ms": pct(times, 95), "payload_bytes": size, "status": status}
    return out


def bench_server_dispatch(app, ex: Exercise, r: redis.Redis, count: int) -> dict[str, Any]:
    """`layouts.map.dispatch_recommended` (what the one-click callback runs), on the least severe alerts."""
    from command.publish import views
    from layouts.operator.actions import dispatch_recommended

    queue = [a for a in views.alert_queue(r, ex.keys) if (a.get("recommendation") or {}).get("items")]
    user = {"username": "operator", "name": "Operator", "department": "emergency_management", "role": "operator"}
    times, texts = [], []
    with app.server.test_request_context("/"):
        for a in queue[-count:]:
            t0 = time.perf_counter()
            msg = dispatch_recommended(r, ex.keys, a["fingerprint"], a["level"], user, "en")
            times.append((time.perf_counter() - t0) * 1000)
            texts.append(str(msg.children))
    ok = sum(1 for t in texts if t.startswith("Dispatched"))
    return {"p50_ms": pct(times, 50), "p95_ms": pct(times, 95), "max_ms": max(times) if times else None,
            "count": len(times), "ok": ok}


# ------------------------------------------------------------------------------------------------
# (b) the running app: HTTP round trips and the browser
# ------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningApp:
    """`python app.py --no-drill --port P` on our Redis and a data folder of its own."""

    def __init__(self, url: str, data_dir: Path) -> None:
        self.url, self.data_dir = url, data_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir / "app.out"

    def start(self, timeout: float = 90) -> None:
        import httpx

        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, REDIS_URL=self.url, ECD_DATA_DIR=str(self.data_dir), PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "w")  # noqa: SIM115 - the child writes it
        self.proc = subprocess.Popen([sys.executable, "app.py", "--no-drill", "--port", str(self.port),
                                      "--workers", "2"], cwd=ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited ({self.proc.returncode}): {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"app.py did not serve in {timeout:.0f} s: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        with contextlib.suppress(Exception):
            self._log.close()


def register_drill(r: redis.Redis, ex: Exercise) -> None:
    """List the namespace in the view menu as a running exercise (the shape `drills.start_drill` writes)."""
    r.hset(DRILLS, ex.keys.ns, orjson.dumps({"namespace": ex.keys.ns, "scenario": ex.scenario,
                                             "folder": str(ROOT / "bench"), "speed": "1", "by": "bench",
                                             "status": "running", "created": now_ms()}))


def keep_registered(r: redis.Redis, ex: Exercise, seconds: float = 2.0) -> None:
    """The drill runner marks drills it finds `running` at its start as `interrupted`: re-register if so."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        raw = r.hget(DRILLS, ex.keys.ns)
        if raw is None or orjson.loads(raw).get("status") != "running":
            register_drill(r, ex)
        time.sleep(0.25)


def bench_http(app: RunningApp, ex: Exercise, r: redis.Redis, n: int) -> dict[str, Any]:
    """The map callback's real HTTP round trip (gunicorn, 2 workers x 4 threads), signed in."""
    import httpx

    from command.ops.dispatch import alert_action

    out: dict[str, Any] = {}
    with httpx.Client(base_url=app.base, timeout=60) as c:
        resp = c.post("/login", data=OPERATOR)
        if resp.status_code != 302:
            raise RuntimeError(f"sign-in failed: {resp.status_code}")

        def post(state, i):
            t0 = time.perf_counter()
            resp = c.post("/_dash-update-component", json=map_request_body(ex.keys.ns, state, i))
            dt = (time.perf_counter() - t0) * 1000
            if resp.status_code not in (200, 204):
                raise RuntimeError(f"map callback over HTTP: {resp.status_code} {resp.text[:300]}")
            return dt, resp

        first = [post(None, 1)[0] for _ in range(2)]  # each worker's first full map may be cold
        times, size, state = [], 0, None
        for i in range(n):
            dt, resp = post(None, i + 1)
            times.append(dt)
            size = len(resp.content)
            state = resp.json()["response"]["map-version"]["data"]
        out["full"] = {"p50_ms": pct(times, 50), "p95_ms": pct(times, 95), "first_ms": first,
                       "payload_bytes": size}
        times = []
        for i in range(n):
            dt, resp = post(state, i + 1)
            times.append(dt)
        out["no_change"] = {"p50_ms": pct(times, 50), "p95_ms": pct(times, 95), "payload_bytes": len(resp.content)}
        # one alert change (an operator acknowledges an alert: the alerts stream moves)
        fp = r.zrange(ex.keys.alerts_open, 0, 0)[0].decode()
        alert_action(r, ex.keys, fingerprint=fp, action="acknowledge", user="bench", now=ex.clock)
        times = []
        for i in range(n):
            dt, resp = post(state, i + 1)
            times.append(dt)
            size = len(resp.content)
        out["alert_change"] = {"p50_ms": pct(times, 50), "p95_ms": pct(times, 95), "payload_bytes": size}
    return out


def make_driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
                "--use-angle=swiftshader", "--window-size=1500,950", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


JS_FIGURE_POINTS = ("const g = document.querySelector('#map-graph .js-plotly-plot');"
                    "return g && g.data && g.data[0] && g.data[0].lon ? g.data[0].lon.length : 0;")

# Wraps window.fetch once: records when the one-click dispatch's request leaves and its answer arrives.
JS_FETCH_HOOK = """
if (!window.__benchFetch) {
  window.__benchFetch = true; window.__reqs = [];
  const orig = window.fetch;
  window.fetch = function (input, init) {
    const body = init && init.body;
    if (typeof body === 'string' && body.indexOf('map-toast.children') >= 0) {
      const rec = {start: performance.now(), end: null};
      window.__reqs.push(rec);
      return orig.apply(this, arguments).then(function (resp) { rec.end = performance.now(); return resp; });
    }
    return orig.apply(this, arguments);
  };
}
return true;"""

JS_LONGTASKS = """
window.__lt = []; window.__lt0 = performance.now();
new PerformanceObserver(function (l) { for (const e of l.getEntries()) window.__lt.push([e.startTime, e.duration]); })
  .observe({type: 'longtask'});
return true;"""

# the part of [t0, t0 + ms] that long tasks took
JS_BUSY = """
const t0 = window.__lt0, t1 = t0 + arguments[0];
return window.__lt.reduce((a, x) => a + Math.max(0, Math.min(t1, x[0] + x[1]) - Math.max(t0, x[0])), 0);"""

JS_FIND_BUTTON = """
const fp = arguments[0];
return [...document.querySelectorAll('div.alert-card button')].find(
  b => b.id.indexOf(fp) >= 0 && b.textContent.trim() === 'Dispatch') || null;"""

# Observer first, then the click, all in the page: the time is the page's own clock.
JS_CLICK = """
const btn = arguments[0];
const toast = document.getElementById('map-toast');
const before = toast.textContent;
const st = window.__bench = {t0: 0, t1: null, t2: null, text: null};
window.__reqs.length = 0;
const obs = new MutationObserver(function () {
  const txt = toast.textContent;
  if (st.t1 === null && txt && txt !== before) {
    st.t1 = performance.now(); st.text = txt; obs.disconnect();
    requestAnimationFrame(function () { st.t2 = performance.now(); });
  }
});
obs.observe(toast, {childList: true, subtree: true, characterData: true});
st.t0 = performance.now();
btn.click();
return true;"""

JS_RESULT = "const s = window.__bench; return s && s.t1 !== null && s.t2 !== null ? [s, window.__reqs] : null;"


def wait_for(cond, timeout: float, poll: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(poll)
    raise RuntimeError(f"timed out waiting for {what}")


def bench_browser(app: RunningApp, ex: Exercise, r: redis.Redis, sizes: Sizes) -> dict[str, Any]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys as K

    from command.publish import views

    driver = make_driver()
    try:
        t_login = time.perf_counter()
        driver.get(f"{app.base}/login?next=/")
        driver.find_element(By.ID, "login-username").send_keys(OPERATOR["username"])
        driver.find_element(By.ID, "login-password").send_keys(OPERATOR["password"])
        driver.find_element(By.ID, "login-submit").click()
        wait_for(lambda: driver.find_elements(By.ID, "shell-ns"), 30, what="the page")

        def banner_ok():
            els = driver.find_elements(By.ID, "exercise-banner")
            return els and ex.scenario in els[0].text

        try:
            wait_for(banner_ok, 8, what="the exercise banner")
        except RuntimeError:  # another exercise was chosen: pick ours in the view menu
            box = driver.find_element(By.CSS_SELECTOR, "#shell-ns input")
            box.send_keys(ex.keys.ns[-8:])
            box.send_keys(K.ENTER)
            wait_for(banner_ok, 20, what="the exercise banner after choosing the namespace")
        wait_for(lambda: driver.execute_script(JS_FIGURE_POINTS) == sizes.stations, 60, what="the map's gauges")
        map_s = time.perf_counter() - t_login
        # the queue draws this many cards; the rest are counted
        from layouts.operator.queue import QUEUE_SHOWN

        wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, "div.alert-card")) >= min(sizes.alerts, QUEUE_SHOWN),
                 60, what="the alert cards")
        cards_s = time.perf_counter() - t_login
        driver.execute_script(JS_FETCH_HOOK)
        # how busy the page's main thread is with nothing changing (long tasks over 50 ms, 5 s)
        driver.execute_script(JS_LONGTASKS)
        time.sleep(5.0)
        idle_busy = driver.execute_script(JS_BUSY, 5000) / 5000 * 100
        log(f"(b) page idle: long tasks take {idle_busy:.0f}% of the main thread")
        # the most severe alerts first, as an operator would take them; skip ones already dispatched
        queue = [a for a in views.alert_queue(r, ex.keys)
                 if not a.get("claim") and (a.get("recommendation") or {}).get("items")]
        samples = []
        for a in queue[:sizes.dispatches]:
            fp, subject = a["fingerprint"], a["subject"]
            btn = driver.execute_script(JS_FIND_BUTTON, fp)
            if btn is None:
                log(f"(b) no Dispatch button for {subject}; skipped")
                continue
            driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", btn)
            time.sleep(0.2)
            driver.execute_script(JS_CLICK, btn)
            try:
                st, reqs = wait_for(lambda: driver.execute_script(JS_RESULT), 30, 0.05, f"the toast for {subject}")
            except RuntimeError:  # counted as a failure, and the run goes on
                samples.append({"subject": subject, "ms": None, "ok": False, "text": "(no toast in 30 s)"})
                log(f"(b) dispatch {len(samples)}: {subject}: no toast in 30 s")
                continue
            req = reqs[0] if reqs else {}
            s = {"subject": subject, "ms": st["t1"] - st["t0"], "frame_ms": st["t2"] - st["t0"],
                 "ok": f"to {subject}:" in (st["text"] or ""), "text": (st["text"] or "")[:120]}
            if req.get("start") is not None and req.get("end") is not None:
                s.update(to_request_ms=req["start"] - st["t0"], request_ms=req["end"] - req["start"],
                         to_dom_ms=st["t1"] - req["end"])
            samples.append(s)
            t_toast = time.perf_counter()
            try:
                wait_for(lambda fp=fp: driver.execute_script(
                    "const fp = arguments[0]; return [...document.querySelectorAll('div.alert-card')].some("
                    "c => c.id.indexOf(fp) >= 0 && c.textContent.indexOf('Dispatched by') >= 0);", fp), 60, 0.1,
                    f"the card of {subject} to show the dispatch")
                # approximate (selenium polling, 0.1 s): toast -> the queue's card says "Dispatched by"
                s["card_after_toast_s"] = time.perf_counter() - t_toast
            except RuntimeError:
                s["card_timeout"] = True
            card = f"{s['card_after_toast_s']:.1f} s later" if "card_after_toast_s" in s else "not within 60 s"
            log(f"(b) dispatch {len(samples)}: {subject} {s['ms']:.0f} ms, card updated {card}  {s['text'][:60]!r}")
            time.sleep(0.5)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()
    ms = [s["ms"] for s in samples if s["ok"]]
    failed = len(samples) - len(ms)  # no toast, or a toast that is not this alert's confirmation

    def med(k):
        v = [s[k] for s in samples if k in s]
        return pct(v, 50)

    return {"dispatch_p50_ms": pct(ms, 50), "dispatch_p95_ms": pct(ms, 95), "dispatch_max_ms": max(ms) if ms else None,
            "dispatch_frame_p95_ms": pct([s["frame_ms"] for s in samples if s["ok"]], 95),
            "dispatch_clicks": len(samples), "dispatch_ok": len(ms), "dispatch_failed": failed,
            "card_timeouts": sum(1 for s in samples if s.get("card_timeout")),
            "dispatch_to_request_p50_ms": med("to_request_ms"), "dispatch_request_p50_ms": med("request_ms"),
            "dispatch_request_p95_ms": pct([s["request_ms"] for s in samples if "request_ms" in s], 95),
            "dispatch_to_dom_p50_ms": med("to_dom_ms"), "card_after_toast_p50_s": med("card_after_toast_s"),
            "page_idle_busy_pct": idle_busy,
            "page_map_seconds": map_s, "page_cards_seconds": cards_s, "browser_severe_errors": len(errors),
            "dispatch_samples": samples}


def cleanup_rq(r: redis.Redis, ns: str) -> int:
    """Delete the acknowledgement-timer jobs our dispatches scheduled (they name the namespace)."""
    from rq import Queue
    from rq.job import Job

    from command.keys import RQ_QUEUE

    q = Queue(RQ_QUEUE, connection=r)
    ids = set(q.job_ids)
    for reg in (q.scheduled_job_registry, q.started_job_registry, q.finished_job_registry, q.failed_job_registry,
                q.deferred_job_registry, q.canceled_job_registry):
        with contextlib.suppress(Exception):
            ids.update(reg.get_job_ids())
    n = 0
    for jid in ids:
        with contextlib.suppress(Exception):
            job = Job.fetch(jid, connection=r)
            if job.args and job.args[0] == ns:
                job.delete()
                n += 1
    return n


# ------------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    chromium = ""
    with contextlib.suppress(Exception):
        chromium = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=20).stdout.strip()
    import dash
    import plotly
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "dash": dash.__version__,
            "plotly": plotly.__version__, "chromium": chromium}


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    if args.dispatches is not None:
        sizes.dispatches = args.dispatches
    if args.repeat is not None:
        sizes.repeat = args.repeat
    result: dict[str, Any] = {"quick": args.quick, "sizes": sizes.__dict__.copy(), "machine": machine(),
                              "loadavg_1m_before": os.getloadavg()[0]}
    tmp = Path(tempfile.mkdtemp(prefix="bench-dash-"))
    server = None
    url = os.environ.get("REDIS_URL")
    r = None
    ex = None
    running: RunningApp | None = None
    live_existed = True
    try:
        if not url:
            server = EmbeddedRedis(tmp / "redis")
            url = server.start()
        result["redis"] = "REDIS_URL" if server is None else "embedded (temporary folder)"
        r = redis.Redis.from_url(url)
        result["redis_version"] = r.info("server").get("redis_version")
        live_existed = bool(r.exists(Keys(LIVE).rules))
        log(f"generating the exercise: {sizes.stations:,} gauges, {sizes.resources} resources, "
            f"{sizes.alerts} alerts")
        t0 = time.perf_counter()
        ex = make_exercise(r, sizes)
        log(f"exercise {ex.keys.ns} ready in {time.perf_counter() - t0:.1f} s")
        result["namespace"] = ex.keys.ns

        m = bench_map(url, ex, sizes, tmp / "inproc", args.profile)
        result["map_cases"] = m["cases"]
        result["dash_test_client"] = m["dash"]
        if m["profile"]:
            print(m["profile"], file=sys.stderr)
        log(f"(a) dispatch_recommended in-process x{sizes.server_dispatches}")
        result["server_dispatch"] = bench_server_dispatch(m["app"], ex, r, sizes.server_dispatches)

        if not args.no_browser:
            running = RunningApp(url, tmp / "appdata")
            log(f"(b) starting python app.py --no-drill --port {running.port}")
            running.start()
            register_drill(r, ex)
            keep_registered(r, ex)
            log(f"(a) map callback over HTTP x{sizes.http_repeat}")
            result["http"] = bench_http(running, ex, r, sizes.http_repeat)
            log(f"(b) browser: {sizes.dispatches} one-click dispatches")
            result["browser"] = bench_browser(running, ex, r, sizes)
    finally:
        if running is not None:
            running.stop()
        if r is not None and ex is not None:
            with contextlib.suppress(Exception):
                result["rq_jobs_deleted"] = cleanup_rq(r, ex.keys.ns)
            delete_namespace(r, ex.keys)
            r.hdel(DRILLS, ex.keys.ns)
            if server is None and not live_existed and running is not None:
                delete_namespace(r, Keys(LIVE))  # app.py bootstrapped it on an external Redis: undo
        if r is not None:
            r.close()
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    result["loadavg_1m_after"] = os.getloadavg()[0]
    return summarize(result)


def summarize(res: dict[str, Any]) -> dict[str, Any]:
    cases = res["map_cases"]
    worst = max(("full", "no_change", "alert_change", "station_changes"), key=lambda c: cases[c]["p50_ms"])
    res["map_callback_ms"] = cases[worst]["p50_ms"]
    res["map_callback_case"] = worst
    res["payload_bytes"] = max(c["payload_bytes"] for k, c in cases.items() if k != "alert_change_whole_layer")
    for c in ("full", "full_cold", "no_change", "alert_change", "station_changes", "alert_change_whole_layer"):
        res[f"map_{c}_ms"] = cases[c]["p50_ms"]
        res[f"payload_{c}_bytes"] = cases[c]["payload_bytes"]
    res["map_full_p95_ms"] = cases["full"]["p95_ms"]
    b = res.get("browser") or {}
    for k, v in b.items():
        if k != "dispatch_samples":
            res[k] = v
    res.setdefault("dispatch_p95_ms", None)
    checks = [res["map_callback_ms"] < TARGET_MAP_MS, res["payload_bytes"] < TARGET_PAYLOAD_BYTES,
              res["map_full_p95_ms"] < TARGET_FULL_P95_MS, res["payload_alert_change_bytes"] < TARGET_ALERT_BYTES]
    if res.get("browser"):
        checks.append(res["dispatch_p95_ms"] is not None and res["dispatch_p95_ms"] < TARGET_DISPATCH_MS
                      and not res.get("dispatch_failed"))
    res["pass"] = all(checks)
    return res


def fmt_ms(v) -> str:
    return "-" if v is None else f"{v:,.1f} ms"


def fmt_b(v) -> str:
    return "-" if v is None else (f"{v / 1e6:,.2f} MB" if v >= 100_000 else f"{v:,} B")


def table(res: dict[str, Any]) -> str:
    c = res["map_cases"]
    rows: list[tuple[str, str, str, str]] = []

    def row(name, value, target="", ok=None):
        rows.append((name, value, target, "" if ok is None else ("pass" if ok else "FAIL")))

    row(f"map callback, worst case ({res['map_callback_case']}), p50", fmt_ms(res["map_callback_ms"]),
        f"< {TARGET_MAP_MS:.0f} ms", res["map_callback_ms"] < TARGET_MAP_MS)
    row("full map callback, p95", fmt_ms(res["map_full_p95_ms"]), f"< {TARGET_FULL_P95_MS:.0f} ms",
        res["map_full_p95_ms"] < TARGET_FULL_P95_MS)
    row("one alert change on the wire", fmt_b(res["payload_alert_change_bytes"]),
        f"< {TARGET_ALERT_BYTES / 1000:.0f} KB", res["payload_alert_change_bytes"] < TARGET_ALERT_BYTES)
    for k, label in (("full", "full map"), ("full_cold", "full map, cold station cache"),
                     ("no_change", "no change"), ("alert_change", "one alert change"),
                     ("alert_change_whole_layer", "one alert change, whole layer (before)"),
                     ("station_changes", f"{res['sizes']['changes']} gauge values"), ("build_figure", "build_figure")):
        x = c[k]
        ops = f", {x['patch_ops']} patch ops" if x.get("patch_ops") is not None else ""
        row(f"  {label}: p50 (call + encode) / p95", f"{fmt_ms(x['p50_ms'])} "
            f"({x['compute_p50_ms']:.1f} + {x['encode_p50_ms']:.1f}) / {fmt_ms(x['p95_ms'])}")
        row(f"  {label}: CPU p50 / p95", f"{fmt_ms(x['cpu_p50_ms'])} / {fmt_ms(x['cpu_p95_ms'])}")
        row(f"  {label}: payload (gzip){ops}", f"{fmt_b(x['payload_bytes'])} ({fmt_b(x['payload_gzip_bytes'])})",
            f"< {TARGET_PAYLOAD_BYTES / 1e6:.0f} MB", x["payload_bytes"] < TARGET_PAYLOAD_BYTES)
    for k, x in res.get("dash_test_client", {}).items():
        row(f"  through Dash (test client), {k}: p50 / p95", f"{fmt_ms(x['p50_ms'])} / {fmt_ms(x['p95_ms'])}"
            f"  [{x['status']}, {fmt_b(x['payload_bytes'])}]")
    for k, x in (res.get("http") or {}).items():
        first = f", first {', '.join(f'{v:.0f}' for v in x['first_ms'])} ms" if x.get("first_ms") else ""
        row(f"  over HTTP (gunicorn), {k}: p50 / p95", f"{fmt_ms(x['p50_ms'])} / {fmt_ms(x['p95_ms'])}{first}")
    sd = res.get("server_dispatch") or {}
    if sd:
        row("dispatch_recommended in-process: p50 / p95", f"{fmt_ms(sd['p50_ms'])} / {fmt_ms(sd['p95_ms'])}"
            f"  ({sd['ok']}/{sd['count']} ok)")
    if res.get("dispatch_p95_ms") is not None or res.get("browser"):
        row("click -> confirmation, p95", fmt_ms(res.get("dispatch_p95_ms")), f"< {TARGET_DISPATCH_MS:.0f} ms",
            None if res.get("dispatch_p95_ms") is None else res["dispatch_p95_ms"] < TARGET_DISPATCH_MS)
        row("  p50 / max", f"{fmt_ms(res.get('dispatch_p50_ms'))} / {fmt_ms(res.get('dispatch_max_ms'))}  "
            f"({res.get('dispatch_ok')}/{res.get('dispatch_clicks')} confirmed)",
            ok=None if not res.get("dispatch_clicks") else not res.get("dispatch_failed"))
        row("  p50: click -> request / request / response -> toast",
            f"{fmt_ms(res.get('dispatch_to_request_p50_ms'))} / {fmt_ms(res.get('dispatch_request_p50_ms'))} / "
            f"{fmt_ms(res.get('dispatch_to_dom_p50_ms'))}")
        row("  toast -> card shows the dispatch (approx.), p50", f"{res.get('card_after_toast_p50_s') or 0:.1f} s"
            + (f" ({res['card_timeouts']} not within 60 s)" if res.get("card_timeouts") else ""))
        row("  page main thread busy while idle (long tasks)", f"{res.get('page_idle_busy_pct') or 0:.0f} %")
        row("  sign-in -> map drawn / alert cards shown", f"{res.get('page_map_seconds', 0):.1f} s / "
            f"{res.get('page_cards_seconds', 0):.1f} s")
    w = [max(len(x[i]) for x in rows + [("figure", "value", "target", "result")]) for i in range(4)]
    lines = [" | ".join(h.ljust(w[i]) for i, h in enumerate(("figure", "value", "target", "result"))),
             "-+-".join("-" * n for n in w)]
    lines += [" | ".join(x[i].ljust(w[i]) for i in range(4)) for x in rows]
    m = res["machine"]
    lines.append(f"\n{res['sizes']['stations']:,} gauges, {res['sizes']['resources']} resources, "
                 f"{res['sizes']['alerts']} alerts; {m['cpus']} CPUs ({m['cpu']}), Python {m['python']}, "
                 f"Dash {m['dash']}, plotly {m['plotly']}, {m['chromium']}; Redis {res.get('redis_version')} "
                 f"({res.get('redis')}); load {res['loadavg_1m_before']:.2f} -> {res['loadavg_1m_after']:.2f}")
    lines.append("overall: " + ("PASS" if res["pass"] else "FAIL (a target is missed)"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    global _quiet
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="one JSON object on stdout, nothing else")
    p.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test)")
    p.add_argument("--profile", action="store_true", help="cProfile the slowest map case (stderr)")
    p.add_argument("--no-browser", action="store_true", help="skip the running app and the browser (part b)")
    p.add_argument("--dispatches", type=int, default=None, help="one-click dispatches in the browser")
    p.add_argument("--repeat", type=int, default=None, help="samples per map case")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = p.parse_args(argv)
    _quiet = args.quiet

    def on_term(*_):  # clean up (app, browser, namespace, Redis) on SIGTERM as on Ctrl-C
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)
    res = run(args)
    if args.json:
        print(json.dumps(res, default=str))
    else:
        print(table(res))
    return 1 if args.strict and not res["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
