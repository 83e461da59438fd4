"""Feed adapter benchmark: parse rate of each source's recorded payload, beside a plain parse of the
same bytes (``orjson.loads`` and ``json.loads`` for JSON, ``lxml.etree.fromstring`` for CAP), in one run.

    .venv/bin/python bench/feeds.py            # a table
    .venv/bin/python bench/feeds.py --json     # one JSON object on stdout
    .venv/bin/python bench/feeds.py --seconds 0.2   # shorter runs (smoke test)

The recorded payloads (tests/fixtures/) are small, so each one is also scaled up to a realistic
size the same way the service would send it (more series, stations, readings, features or CAP
alerts) by repeating its records with distinct ids and times. Rates are records per second, where
a record is one reading, forecast value, warning or rejected record in the adapter's output.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from lxml import etree

ROOT = Path(__file__).resolve().parent.parent
# this file is bench/feeds.py: keep its folder off the path, or it would hide the `feeds` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from feeds import cap_feed, ea, nws, open_meteo, usgs  # noqa: E402

FIX = ROOT / "tests" / "fixtures"


def _usgs(n_series: int, n_values: int) -> bytes:
    doc = json.loads((FIX / "usgs_iv.json").read_bytes())
    base = doc["value"]["timeSeries"]
    series = []
    for i in range(n_series):
        ts = copy.deepcopy(base[i % len(base)])
        site = f"{1_000_000 + i:08d}"
        ts["sourceInfo"]["siteCode"][0]["value"] = site
        ts["name"] = f"USGS:{site}:{ts['variable']['variableCode'][0]['value']}:00000"
        ts["values"][0]["value"] = [{"value": f"{4 + (j % 50) / 100:.2f}", "qualifiers": ["P"],
                                     "dateTime": f"2020-02-{1 + j // 96:02d}T{(j % 96) // 4:02d}:{15 * (j % 4):02d}:00.000-05:00"}
                                    for j in range(n_values)]
        series.append(ts)
    doc["value"]["timeSeries"] = series
    return json.dumps(doc).encode()


def _ea_readings(n: int) -> bytes:
    doc = json.loads((FIX / "ea_readings.json").read_bytes())
    item = doc["items"][0]
    items = []
    for i in range(n):
        x = dict(item)
        x["measure"] = item["measure"].replace("690140", f"{600000 + i % 2000}")
        x["dateTime"] = f"2015-12-{1 + (i // 2000) // 96:02d}T{((i // 2000) % 96) // 4:02d}:{15 * ((i // 2000) % 4):02d}:00Z"
        x["value"] = 0.5 + (i % 100) / 1000
        items.append(x)
    doc["items"] = items
    return json.dumps(doc).encode()


def _open_meteo(hours: int) -> bytes:
    doc = json.loads((FIX / "open_meteo.json").read_bytes())
    h = doc["hourly"]
    base = [f"2024-08-{1 + d:02d}T{hh:02d}:00" for d in range(hours // 24 + 1) for hh in range(24)][:hours]
    doc["hourly"] = {"time": base, **{k: (v * (hours // len(v) + 1))[:hours] for k, v in h.items() if k != "time"}}
    return json.dumps(doc).encode()


def _nws(n: int) -> bytes:
    doc = json.loads((FIX / "nws_alerts_point_2024.geojson").read_bytes())
    feats = []
    for i in range(n):
        f = copy.deepcopy(doc["features"][i % len(doc["features"])])
        f["properties"]["id"] = f"urn:oid:bench.{i}"
        feats.append(f)
    doc["features"] = feats
    return json.dumps(doc).encode()


def _cap_atom(n: int) -> bytes:
    alert = (FIX / "cap_nws_hurricane_warning_2020.xml").read_bytes().split(b"?>", 1)[1]
    entries = b"".join(
        b"<entry><id>urn:b:%d</id><title>t</title><updated>2020-08-26T09:14:00Z</updated>"
        b'<content type="application/cap+xml">%s</content></entry>'
        % (i, alert.replace(b"NWS-IDP-PROD-4412298-3677414", b"BENCH-%d" % i)) for i in range(n))
    return (b'<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom"><id>b</id>'
            b"<title>b</title><updated>2020-08-26T09:14:00Z</updated>" + entries + b"</feed>")


def cases() -> list[tuple[str, str, bytes, Callable[[bytes], object], str]]:
    """(name, what, payload, adapter parse, baseline kind)."""
    return [
        ("usgs (recorded)", "usgs_iv.json", (FIX / "usgs_iv.json").read_bytes(), usgs.parse, "json"),
        ("usgs", "500 series x 96 values", _usgs(500, 96), usgs.parse, "json"),
        ("ea stations (recorded)", "ea_station_1491TH.json", (FIX / "ea_station_1491TH.json").read_bytes(), ea.parse, "json"),
        ("ea readings", "20,000 readings", _ea_readings(20_000), ea.parse, "json"),
        ("ea floods (recorded)", "ea_floods.json", (FIX / "ea_floods.json").read_bytes(), ea.parse, "json"),
        ("open-meteo (recorded)", "open_meteo.json", (FIX / "open_meteo.json").read_bytes(), open_meteo.parse, "json"),
        ("open-meteo", "384 hours (16 days)", _open_meteo(384), open_meteo.parse, "json"),
        ("nws (recorded)", "nws_alerts.geojson", (FIX / "nws_alerts.geojson").read_bytes(), nws.parse, "json"),
        ("nws", "500 alerts", _nws(500), nws.parse, "json"),
        ("cap (recorded)", "cap_nws_hurricane_warning_2020.xml",
         (FIX / "cap_nws_hurricane_warning_2020.xml").read_bytes(), cap_feed.parse, "xml"),
        ("cap atom", "200 embedded alerts", _cap_atom(200), cap_feed.parse, "xml"),
    ]


def rate(fn: Callable[[], object], seconds: float) -> tuple[float, int]:
    """Calls per second of fn over about `seconds` (after one warm-up call)."""
    fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt, n


def run(seconds: float) -> dict:
    rows = []
    for name, what, payload, parse, base in cases():
        res = parse(payload)
        records = len(res.readings) + len(res.forecasts) + len(res.warnings) + len(res.rejected)
        calls, _ = rate(lambda p=payload, f=parse: f(p), seconds)
        if base == "json":
            b1, _ = rate(lambda p=payload: orjson.loads(p), seconds)
            b2, _ = rate(lambda p=payload: json.loads(p), seconds)
        else:
            b1, _ = rate(lambda p=payload: etree.fromstring(p.removeprefix(b"\xef\xbb\xbf")), seconds)
            b2 = None
        rows.append({"source": name, "payload": what, "bytes": len(payload), "records": records,
                     "parse_per_s": calls, "records_per_s": calls * records,
                     "baseline": "orjson.loads" if base == "json" else "lxml fromstring",
                     "baseline_per_s": b1, "json_loads_per_s": b2,
                     "ratio": calls / b1, "mb_per_s": calls * len(payload) / 1e6})
    return {"python": platform.python_version(), "machine": platform.machine(), "seconds_per_measure": seconds,
            "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement (default 1 s)")
    args = ap.parse_args(argv)
    out = run(args.seconds)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"feed adapters, Python {out['python']} on {out['machine']}, {args.seconds:g} s per measurement")
    print(f"{'source':24} {'payload':36} {'KB':>7} {'records':>8} {'records/s':>11} {'parses/s':>9} "
          f"{'baseline/s':>10} {'json.loads/s':>12} {'adapter/baseline':>16}")
    for r in out["rows"]:
        jl = f"{r['json_loads_per_s']:12.0f}" if r["json_loads_per_s"] is not None else f"{'-':>12}"
        print(f"{r['source']:24} {r['payload'][:36]:36} {r['bytes'] / 1024:7.1f} {r['records']:8d} "
              f"{r['records_per_s']:11.0f} {r['parse_per_s']:9.1f} {r['baseline_per_s']:10.1f} {jl} "
              f"{r['ratio']:16.3f}")
    print("baseline: orjson.loads for JSON, lxml.etree.fromstring for CAP XML, on the same bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
