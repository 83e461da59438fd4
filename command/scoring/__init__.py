"""Forecast verification of alert rules: what really happened (truth), when a station was warned
(warning periods from the alert events), and how well the one matched the other (hits, misses,
false alarms, lead times, POD, FAR, CSI).

Pure: no Redis, no files, no clock. Times are epoch milliseconds, periods half-open ``[start, end)``.
The backtest run (`command.scenarios.backtest`) does the I/O around it; docs/drills.md explains
the figures to exercise planners.

- `periods`: merging periods, the one interval vocabulary;
- `truth`: events from a ``truth.csv`` text, or derived from each station's thresholds and readings;
- `warning_periods`: a station's warnings at each level, from the alert event stream;
- `score`: hits, misses, false alarms and lead times, per station and level, and their summary;
- `objectives`: an exercise's objectives (dispatch, acknowledgement, on scene in time) scored met, not
  met or not tested against a run's alerts, tasks and readings, with the evidence.
"""

from command.scoring.objectives import OBJECTIVE_KINDS, Objective, Run, overall, score_objectives
from command.scoring.periods import Period, merge
from command.scoring.score import LevelScore, RuleSetScore, score_rule_set, score_station_level, summarize
from command.scoring.truth import TRUTH_HEADER, TruthError, derive_truth, parse_truth
from command.scoring.warning_periods import alert_segments, warning_periods

__all__ = ["Period", "merge", "LevelScore", "RuleSetScore", "score_rule_set", "score_station_level", "summarize",
           "OBJECTIVE_KINDS", "Objective", "Run", "overall", "score_objectives",
           "TRUTH_HEADER", "TruthError", "derive_truth", "parse_truth", "alert_segments", "warning_periods"]
