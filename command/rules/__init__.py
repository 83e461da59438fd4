"""The rule vocabulary: parsing `rules.yaml` and pure evaluation.

Nothing here does I/O or reads the wall clock: every function takes the time of the input it is
evaluating (a reading's time, a clock tick's time). One module per job:

- `parse`: `rules.yaml` -> `RuleSet` of `Rule`s, or a `RuleError` naming the file and the rule;
- `windows`: the time series the rules keep, at one point a minute;
- `state`: what the rules remember per subject, its stored format and the migration of format 1;
- `levels`: level stepping (`for`, `clear_margin`), the trend and the outlook ("red in about 2 h");
- `alerts`: an alert's lifecycle (open, raise, lower, resolve) and its fingerprint;
- `zone_warnings`: external warnings against zones (CAP severities, areas and geocodes);
- `evaluator`: `ShardEvaluator`, one shard's readings, ticks, incidents, forecasts and warnings.
"""

from __future__ import annotations

from command.rules.alerts import AlertChange, fingerprint
from command.rules.evaluator import ShardEvaluator
from command.rules.levels import TREND_MIN_SPAN_MS, describe_eta, step_levels
from command.rules.parse import CAP_SEVERITIES, RULE_KINDS, Recommend, Rule, RuleError, RuleSet, parse_rules
from command.rules.state import FORECAST_PREFIX, STATE_VERSION, LevelState, SubjectState
from command.rules.windows import HOUR_MS, RESOLUTION_MS
from command.rules.zone_warnings import WARNING_STATUSES

__all__ = [
    "CAP_SEVERITIES",
    "FORECAST_PREFIX",
    "HOUR_MS",
    "RESOLUTION_MS",
    "RULE_KINDS",
    "STATE_VERSION",
    "TREND_MIN_SPAN_MS",
    "WARNING_STATUSES",
    "AlertChange",
    "LevelState",
    "Recommend",
    "Rule",
    "RuleError",
    "RuleSet",
    "ShardEvaluator",
    "SubjectState",
    "describe_eta",
    "fingerprint",
    "parse_rules",
    "step_levels",
]
