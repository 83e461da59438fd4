"""`python -m command backtest`: replay one scenario through several rule sets and score each against
the same truth (docs/drills.md).

The scenario's own rule set (named ``scenario``) and each ``--rules`` file (named by the file's
stem) are replayed, one after the other, each into a namespace of its own that is deleted
afterwards, with the same feed and engine as `python -m command replay`. The alert events of each
replay give the warning periods of every station (`command.scoring.warning_periods`); the truth is
the scenario's ``truth.csv`` when it has one, else derived from each station's thresholds and
observed values (`command.scoring.truth`); `command.scoring.score` counts hits, misses, false alarms
and lead times. Outputs: ``backtest.json`` (the figures) and ``backtest.html`` (the rule sets side by
side, and a chart per station), self-contained (plotly's JavaScript inline: no network needed).

Everything that can be wrong with the input (the scenario, a rules file, truth.csv) is found before
Redis is touched, and stops with a `ScenarioError` naming the file and line (exit 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

import numpy as np
import orjson
import pandas as pd
import redis

from command.config import DEFAULT_ENGINE_BATCH, Settings
from command.errors import CommandError
from command.keys import Keys
from command.publish.backtest_html import duration_label, fmt_figure, render_html, station_charts
from command.scenarios.load import Scenario, load_scenario
from command.scenarios.reference import ScenarioError, load_rules
from command.scoring import (
    TruthError,
    derive_truth,
    parse_truth,
    score_rule_set,
    warning_periods,
)
from command.scoring.runs import RuleSetRun, RuleSetSpec
from command.scoring.truth import Truth
from command.timeutil import parse_duration
from command.units import UnitError, factor_for
from command.values import clean_number

SCENARIO_RULES = "scenario"  # the name of the scenario's own rule set
DEFAULT_LEAD_WINDOW = "6h"
TRUTH_FILE = "truth.csv"


class BacktestError(CommandError):
    """A backtest that could not be scored (not bad input): exit 1."""

    exit_code = 1
    status = 500
    code = "backtest_failed"


class Progress(Protocol):
    """What a backtest reports its progress to: the command line's bar (`BacktestProgress`), or a
    background job's meta (command/ops/jobs.py `JobProgress`)."""

    def update(self, index: int, count: int, name: str, fraction: float) -> None: ...
    def message(self, text: str) -> None: ...
    def done(self) -> None: ...


@dataclass
class BacktestResult:
    report: dict[str, Any]
    runs: list[RuleSetRun]
    seconds: float
    timings: dict[str, float]
    out: Path | None


# ------------------------------------------------------------------------------------------------
# Input: rule sets, truth, observed values. No Redis here.
# ------------------------------------------------------------------------------------------------
def rule_sets(sc: Scenario, files: Sequence[str | Path] = ()) -> list[RuleSetSpec]:
    """The scenario's own rule set, then one per rules file (named by its stem; a name already taken
    gets ``-2``, ``-3`` ...). A rules file must use the scenario's levels: they are scored alike."""
    specs = [RuleSetSpec(SCENARIO_RULES, _scenario_rules_path(sc), sc.ruleset, sc.rules_doc)]
    taken = {SCENARIO_RULES}
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise ScenarioError(f"{path}: file not found (a rules file, see docs/rules.md)")
        ruleset, doc = load_rules(path)
        if tuple(ruleset.levels) != tuple(sc.ruleset.levels):
            raise ScenarioError(f"{path}: levels {list(ruleset.levels)} differ from the scenario's "
                                f"{list(sc.ruleset.levels)}: both must be scored against the same truth")
        name, n = path.stem, 1
        while name in taken:
            n += 1
            name = f"{path.stem}-{n}"
        taken.add(name)
        specs.append(RuleSetSpec(name, str(path), ruleset, doc))
    return specs


def _scenario_rules_path(sc: Scenario) -> str:
    """Where the scenario's rules came from, for the report (the `rules:` line of scenario.yaml, else the
    folder's rules.yaml, else the sample's: docs/scenarios.md). Only a label: the rules are `sc`'s."""
    import yaml

    from command.config import SAMPLE_DATA

    try:
        doc = yaml.safe_load((sc.folder / "scenario.yaml").read_text(encoding="utf-8-sig")) or {}
    except (OSError, yaml.YAMLError):
        doc = {}
    if isinstance(doc, dict) and doc.get("rules"):
        return str(Path(sc.folder / str(doc["rules"])).resolve())
    own = sc.folder / "rules.yaml"
    return str(own if own.exists() else SAMPLE_DATA / "rules.yaml")


def observed_series(sc: Scenario) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each station's own kind of readings (SI, time order), with the scenario's ``reading`` injects."""
    rd = sc.readings
    own = rd["station_id"].map({sid: s.kind for sid, s in sc.stations.items()})
    df = rd.loc[rd["kind"] == own, ["t", "station_id", "value"]]
    extra = []
    for inj in sc.injects:
        if inj.type != "reading":
            continue
        d = inj.data
        st = sc.stations.get(str(d.get("station_id")))
        if st is None or d.get("kind") != st.kind:
            continue
        try:  # as the replay feed takes it; a bad inject is quarantined there, and left out here
            value = clean_number(d["value"]) * factor_for(str(d["unit"]), st.kind)[0]
        except (ValueError, UnitError):
            continue
        extra.append({"t": inj.at, "station_id": st.id, "value": value})
    if extra:
        df = pd.concat([df, pd.DataFrame(extra)], ignore_index=True).sort_values("t", kind="stable")
    return {str(sid): (g["t"].to_numpy(dtype=np.int64), g["value"].to_numpy(dtype=np.float64))
            for sid, g in df.groupby("station_id", sort=True)}


def load_truth(sc: Scenario, series: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[Truth, str]:
    """The truth and where it came from: ``truth.csv`` (every station scored) or ``thresholds`` (every
    station with thresholds scored). A truth.csv that cannot be used raises ScenarioError."""
    levels = list(sc.ruleset.levels)
    path = sc.folder / TRUTH_FILE
    if path.exists():
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ScenarioError(f"{path}: not UTF-8 text: {exc}") from None
        try:
            return parse_truth(text, str(path), sc.stations.keys(), levels, sc.end), TRUTH_FILE
        except TruthError as exc:
            raise ScenarioError(exc.message) from None
    thresholds = {sid: s.thresholds for sid, s in sc.stations.items() if s.thresholds}
    return derive_truth(series, thresholds, levels, sc.end), "thresholds"


# ------------------------------------------------------------------------------------------------
# The replays: one namespace per rule set, deleted afterwards
# ------------------------------------------------------------------------------------------------
def replay_alert_events(r: redis.Redis, sc: Scenario, spec: RuleSetSpec, *, batch: int = DEFAULT_ENGINE_BATCH,
                        on_progress: Callable[[float], None] | None = None) -> tuple[str, int, list]:
    """Replay the scenario with `spec`'s rules in a new namespace (deleted afterwards): the namespace's
    name, the number of alerts and every alert event ``(event, alert snapshot)`` in stream order."""
    from command.engine.consumer import Engine
    from command.scenarios.clock import ReplayClock
    from command.scenarios.feed import ReplayFeed
    from command.scenarios.namespaces import delete_namespace, load_namespace, new_namespace
    from command.streams import read_stream

    scn = dataclasses.replace(sc, ruleset=spec.ruleset, rules_doc=spec.rules_doc)
    keys = Keys(new_namespace(sc.name))
    try:
        load_namespace(r, keys, scn, shards=1, mode="exercise")
        engine = Engine(r, keys, batch=batch, consumer=f"backtest-{keys.ns}")
        engine.start()
        try:
            feed = ReplayFeed(r, keys, scn, shards=1, before_inject=engine.drain)

            def progress(f: ReplayFeed) -> None:
                if on_progress is not None:
                    on_progress(f.published / max(f.total, 1))

            feed.run(ReplayClock(sc.start, None), on_progress=progress, after_publish=engine.drain)
            engine.drain()
        finally:
            engine.release()
        alerts = r.zcard(keys.alerts_index)
        events = [(f[b"event"].decode(), orjson.loads(f[b"alert"])) for _, f in read_stream(r, keys.alerts_stream)]
    finally:
        delete_namespace(r, keys)
    opened = sum(1 for e, _ in events if e == "open")
    if opened != alerts:
        raise BacktestError(f"rule set {spec.name!r}: the alert stream holds {opened} openings of {alerts} alerts "
                            "(too many alert events to keep): cannot score it")
    return keys.ns, alerts, events


@dataclass
class BacktestInput:
    """Everything a backtest reads from files, checked: the scenario, the rule sets, the observed
    series and the truth."""

    scenario: Scenario
    specs: list[RuleSetSpec]
    series: dict[str, tuple[np.ndarray, np.ndarray]]
    truth: Truth
    truth_source: str
    seconds: float


def prepare(scenario_dir: str | Path, rules_files: Sequence[str | Path] = ()) -> BacktestInput:
    """Load and check the scenario, the rules files and the truth (ScenarioError when one is wrong)."""
    t0 = time.perf_counter()
    sc = load_scenario(scenario_dir)
    specs = rule_sets(sc, rules_files)
    series = observed_series(sc)
    truth, source = load_truth(sc, series)
    return BacktestInput(sc, specs, series, truth, source, time.perf_counter() - t0)


def run_backtest(r: redis.Redis, scenario: str | Path | BacktestInput, rules_files: Sequence[str | Path] = (), *,
                 lead_window_ms: int | None = None, out: Path | None = None, batch: int = DEFAULT_ENGINE_BATCH,
                 progress: Progress | None = None) -> BacktestResult:
    """Backtest a scenario (a folder, or a `prepare`d one, whose rule sets it already holds): every rule
    set replayed and scored against the same truth; with `out`, write backtest.json and backtest.html
    there. Bad input raises ScenarioError before Redis is used."""
    lead_ms = parse_duration(DEFAULT_LEAD_WINDOW) if lead_window_ms is None else lead_window_ms
    inp = scenario if isinstance(scenario, BacktestInput) else prepare(scenario, rules_files)
    t0 = time.perf_counter()
    sc, specs, truth = inp.scenario, inp.specs, inp.truth
    levels = list(sc.ruleset.levels)
    zones = {sid: s.zone for sid, s in sc.stations.items()}
    timings = {"load": inp.seconds}
    runs: list[RuleSetRun] = []
    for i, spec in enumerate(specs):
        t1 = time.perf_counter()

        def step(frac: float, i: int = i, spec: RuleSetSpec = spec) -> None:
            if progress is not None:
                progress.update(i, len(specs), spec.name, frac)

        step(0.0)
        ns, n_alerts, events = replay_alert_events(r, sc, spec, batch=batch, on_progress=step)
        warnings = warning_periods(events, zones, levels, sc.end)
        score = score_rule_set(truth, warnings, levels, lead_ms)
        runs.append(RuleSetRun(spec, ns, n_alerts, len(events), time.perf_counter() - t1, warnings, score))
        step(1.0)
    timings["replay_and_score"] = time.perf_counter() - t0
    report = backtest_report(sc, inp.truth_source, truth, lead_ms, runs)
    if out is not None:
        t2 = time.perf_counter()
        if progress is not None:
            progress.message(f"writing {out}/backtest.json, backtest.html")
        write_outputs(out, report, render_html(report, station_charts(sc, inp.series, truth, runs)))
        timings["write"] = time.perf_counter() - t2
    if progress is not None:
        progress.done()
    return BacktestResult(report, runs, time.perf_counter() - t0 + inp.seconds, timings, out)


# ------------------------------------------------------------------------------------------------
# Outputs
# ------------------------------------------------------------------------------------------------
def backtest_report(sc: Scenario, truth_source: str, truth: Truth, lead_ms: int,
                    runs: Sequence[RuleSetRun]) -> dict[str, Any]:
    """backtest.json: the figures of every rule set, over all scored stations and per station."""
    scored = sorted(truth)
    return {
        "scenario": sc.name,
        "truth": truth_source,
        "lead_window_min": lead_ms / 60_000,
        "levels": list(sc.ruleset.levels),
        "timezone": sc.timezone,
        "scored_stations": scored,
        "unscored_stations": sorted(set(sc.stations) - set(truth)),
        "events": {lv: sum(len(truth[s].get(lv, ())) for s in scored) for lv in sc.ruleset.levels},
        "rule_sets": [{"name": run.spec.name, "rules": run.spec.source, "alerts": run.alerts,
                       "levels": run.score.levels, "stations": run.score.stations} for run in runs],
    }


def write_outputs(out: Path, report: dict[str, Any], html: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "backtest.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    (out / "backtest.html").write_text(html, encoding="utf-8")


# ------------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------------
class BacktestProgress:
    """A progress bar on standard error: the rule set being replayed and the share of the whole run.
    Rewritten in place on a terminal; otherwise a line every 10 %."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 28) -> None:
        self.stream, self.width = stream, width
        self.tty = stream.isatty()
        self._last_t = 0.0
        self._last_pct = -100.0
        self._key: tuple[int, str] | None = None

    def update(self, index: int, count: int, name: str, fraction: float) -> None:
        pct = 100 * (index + min(max(fraction, 0.0), 1.0)) / max(count, 1)
        now = time.monotonic()
        key = (index, name)
        if key == self._key and pct == self._last_pct:
            return
        if key == self._key and fraction < 1.0:
            if self.tty and now - self._last_t < 0.2:
                return
            if not self.tty and pct - self._last_pct < 10:
                return
        self._key, self._last_t, self._last_pct = key, now, pct
        filled = round(self.width * pct / 100)
        line = (f"backtest [{'#' * filled}{'-' * (self.width - filled)}] {pct:5.1f}%  "
                f"rule set {index + 1}/{count} {name} {100 * fraction:3.0f}%")
        self._write(line)

    def message(self, text: str) -> None:
        self._write(f"backtest {text}")

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def _write(self, line: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _duration(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:
    """`python -m command backtest SCENARIO [--rules FILE ...] [--lead-window 6h] --out DIR`."""
    bp = sub.add_parser("backtest", help="score a scenario's rule set, and other rule sets, against what really "
                                         "happened (docs/drills.md)")
    bp.add_argument("scenario", type=Path, help="scenario folder (see docs/scenarios.md); truth.csv if it has one")
    bp.add_argument("--rules", type=Path, nargs="+", action="extend", default=[], metavar="FILE",
                    help="another rule set to compare (rules.yaml format), named by the file's stem; repeatable")
    bp.add_argument("--lead-window", type=_duration, default=parse_duration(DEFAULT_LEAD_WINDOW),
                    metavar="DURATION", help=f"how early a warning may come and still count (default {DEFAULT_LEAD_WINDOW})")
    bp.add_argument("--out", type=Path, required=True, help="write backtest.json and backtest.html here")
    bp.add_argument("--quiet", action="store_true", help="no progress bar")
    bp.set_defaults(handler=cmd_backtest)


def cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    from command.runtime.redis_server import redis_for

    progress = None if args.quiet else BacktestProgress(sys.stderr)
    inp = prepare(args.scenario, args.rules)  # everything wrong with the input is found before Redis starts
    with redis_for(settings) as r:
        res = run_backtest(r, inp, lead_window_ms=args.lead_window, out=args.out, batch=settings.engine_batch,
                           progress=progress)
    rep = res.report
    print(f"backtested {len(res.runs)} rule set(s) of {args.scenario} against the truth from {rep['truth']} "
          f"({len(rep['scored_stations'])} stations scored, lead window {duration_label(rep['lead_window_min'])}) "
          f"in {res.seconds:.1f} s")
    head = f"{'rule set':<16} {'level':<7} {'hits':>5} {'miss':>5} {'false':>5} {'POD':>5} {'FAR':>5} {'CSI':>5} {'lead med':>8}"
    print(head)
    for rs in rep["rule_sets"]:
        for lv, f in rs["levels"].items():
            print(f"{rs['name'][:16]:<16} {lv:<7} {f['hits']:>5} {f['misses']:>5} {f['false_alarms']:>5} "
                  f"{fmt_figure('pod', f['pod']):>5} {fmt_figure('far', f['far']):>5} {fmt_figure('csi', f['csi']):>5} "
                  f"{fmt_figure('lead_median_min', f['lead_median_min']):>8}")
    print(f"wrote {args.out}/backtest.json, {args.out}/backtest.html")
    return 0
