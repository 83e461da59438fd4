"""Runs the enabled live sources of `feeds.yaml` into a namespace (default `live`) until stopped.

    python -m command feeds run                    # every enabled source, namespace live
    python -m command feeds run --sources usgs,nws --namespace live --once

Each source runs in its own thread (a `FeedCoordinator` polling on its interval), so a slow or
failing source never holds back another. The namespace gets the rules (and zones) it needs for
the engine the first time: `--rules` / `--zones`, else the sample rules.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml

from command.config import PROJECT_ROOT
from command.keys import Keys
from command.rules import RuleError
from command.scenarios import namespaces
from command.timeutil import now_ms

from .cap_feed import CAPSource
from .coordinator import FeedCoordinator
from .ea import EASource
from .health import PollReport
from .nws import NWSSource
from .open_meteo import OpenMeteoSource
from .source import Source
from .usgs import USGSSource

log = logging.getLogger(__name__)

DEFAULT_CONFIG = PROJECT_ROOT / "feeds.yaml"
SOURCE_TYPES: dict[str, type[Source]] = {"usgs": USGSSource, "ea": EASource, "open-meteo": OpenMeteoSource,
                                         "nws": NWSSource, "cap": CAPSource}
_SOURCE_KEYS = {"type", "enabled", "interval", "connect_timeout", "read_timeout", "retry", "user_agent",
                "station_overrides", "sites", "url", "parameters", "period", "base_url", "stations", "floods",
                "flood_params", "points", "forecast_hours", "params", "urls", "complete", "name"}


class FeedConfigError(ValueError):
    """feeds.yaml cannot be used; the message names the file and the source."""


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    path = Path(path or DEFAULT_CONFIG)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
    except FileNotFoundError:
        raise FeedConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise FeedConfigError(f"{path}: invalid YAML: {exc}") from None
    return validate_config(doc, str(path))


def validate_config(doc: Any, where: str = "feeds.yaml") -> dict[str, Any]:
    if not isinstance(doc, dict) or not isinstance(doc.get("sources", {}), dict):
        raise FeedConfigError(f"{where}: expected a mapping with `sources: {{name: {{...}}}}`")
    for name, cfg in (doc.get("sources") or {}).items():
        if not isinstance(cfg, dict):
            raise FeedConfigError(f"{where}: source {name!r}: expected a mapping")
        typ = cfg.get("type", name)
        if typ not in SOURCE_TYPES:
            raise FeedConfigError(f"{where}: source {name!r}: unknown type {typ!r} "
                                  f"(one of {', '.join(SOURCE_TYPES)}; set `type:` for a second feed of a kind)")
        unknown = sorted(set(cfg) - _SOURCE_KEYS)
        if unknown:
            raise FeedConfigError(f"{where}: source {name!r}: unknown key(s) {', '.join(unknown)}")
        try:
            build_source(name, cfg)
        except (ValueError, KeyError, TypeError) as exc:
            raise FeedConfigError(f"{where}: source {name!r}: {exc}") from None
    return doc


def build_source(name: str, cfg: dict[str, Any]) -> Source:
    src = SOURCE_TYPES[cfg.get("type", name)](cfg)
    src.name = name
    return src


def build_sources(config: dict[str, Any], only: list[str] | None = None) -> list[Source]:
    """The enabled sources, or exactly `only` (enabled or not)."""
    srcs = config.get("sources") or {}
    if only:
        missing = [n for n in only if n not in srcs]
        if missing:
            raise FeedConfigError(f"no source named {', '.join(missing)} in the configuration "
                                  f"(configured: {', '.join(srcs) or 'none'})")
        return [build_source(n, srcs[n]) for n in only]
    return [build_source(n, c) for n, c in srcs.items() if c.get("enabled")]


def prepare_namespace(r: redis.Redis, keys: Keys, *, rules: str | Path | None = None, zones: str | Path | None = None,
                      mode: str = "live", shards: int = 1) -> None:
    """`command.scenarios.namespaces.prepare_namespace`, with a rules file that cannot be used
    reported as a configuration error."""
    try:
        namespaces.prepare_namespace(r, keys, rules=rules, zones=zones, mode=mode, shards=shards)
    except RuleError as exc:
        raise FeedConfigError(str(exc)) from None


class FeedRunner:
    """Several sources into one namespace, each polled by its own coordinator (and thread)."""

    def __init__(self, r: redis.Redis, keys: Keys, sources: list[Source], *,
                 transport: httpx.BaseTransport | None = None, clock: Callable[[], int] = now_ms,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.r, self.keys = r, keys
        self.coordinators = [FeedCoordinator(s, r, keys, transport=transport, clock=clock, sleep=sleep)
                             for s in sources]

    def poll_all(self) -> list[PollReport]:
        """One poll of every source, one after another (tools and tests)."""
        return [c.poll() for c in self.coordinators]

    def run(self, stop: threading.Event, max_polls: int | None = None) -> None:
        threads = [threading.Thread(target=c.run, args=(stop, max_polls), name=f"feed-{c.name}", daemon=True)
                   for c in self.coordinators]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        finally:
            stop.set()

    def close(self) -> None:
        for c in self.coordinators:
            c.close()
