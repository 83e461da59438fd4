"""One rule set's backtest: which rules (the spec) and what replaying them gave (the run)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from command.rules import RuleSet
from command.scoring.score import RuleSetScore


@dataclass
class RuleSetSpec:
    name: str
    source: str  # the rules file
    ruleset: RuleSet
    rules_doc: dict[str, Any]


@dataclass
class RuleSetRun:
    spec: RuleSetSpec
    namespace: str
    alerts: int
    alert_events: int
    seconds: float
    warnings: dict[str, dict[str, list[tuple[int, int]]]]
    score: RuleSetScore
