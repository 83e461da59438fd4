"""One typed settings object, read from the environment (and `.env`) once, passed around explicitly."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = PROJECT_ROOT / "sample_data"
DEFAULT_SCENARIO = SAMPLE_DATA / "scenarios" / "jiangcheng_flood"
# Entries per engine read (XREADGROUP COUNT). Rule state is written once per subject per batch, so a
# larger batch writes less; under live load a read returns what is waiting, so small batches stay
# small. 5,000 measured best (bench/engine.py; docs/performance.md).
DEFAULT_ENGINE_BATCH = 5000
# How often an engine trims its input streams below what every consumer group acknowledged
# (command/streams.py trim_acknowledged; docs/operations.md, Retention).
DEFAULT_TRIM_SECONDS = 10.0


class Settings(BaseSettings):
    """Everything configurable. Environment names are given per field (e.g. `REDIS_URL`)."""

    model_config = SettingsConfigDict(env_prefix="ECD_", env_file=".env", extra="ignore", populate_by_name=True)

    # None means: start the embedded Redis server in `data_dir/redis`.
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    # Redis Cluster (docs/architecture.md, Redis Cluster): None asks the server (`INFO cluster`) when a
    # client is built; true/false says it (no round trip, and no guess while the node is down).
    redis_cluster: bool | None = None
    # The RQ job queue's own plain Redis: RQ does not run on a Redis Cluster. Unset: REDIS_URL when that
    # is one server; on a cluster it must be given (the supervisor and the worker refuse to start).
    rq_redis_url: str | None = None
    data_dir: Path = Field(default=PROJECT_ROOT / "var")
    namespace: str = "live"
    # Readings are sharded into this many streams by station; each engine owns whole shards.
    shards: int = Field(default=1, ge=1, le=1024)
    # Engine batching: entries per XREADGROUP, and how long a read blocks when idle.
    engine_batch: int = Field(default=DEFAULT_ENGINE_BATCH, ge=1)
    engine_block_ms: int = Field(default=200, ge=1)
    # Shard lease: an engine that stops renewing for this long loses its shards to another engine.
    lease_ms: int = Field(default=10_000, ge=500)
    # Live clock: how often the engine emits a clock tick so staleness is evaluated with no readings.
    tick_seconds: float = Field(default=30.0, gt=0)
    # Input streams: trimmed this often (seconds) below what every consumer group acknowledged.
    trim_seconds: float = Field(default=DEFAULT_TRIM_SECONDS, gt=0)
    # Redis clients (command/runtime/redis_client.py builds every one): a command that gets no answer
    # within `redis_timeout` s fails; a command that never reached Redis (refused, still loading) is
    # tried again up to `redis_retries` times, waiting 0.2 s doubling to `redis_retry_cap` s in between;
    # an idle connection is checked (PING) before use after `redis_health_check_s` s.
    redis_timeout: float = Field(default=5.0, gt=0)
    redis_connect_timeout: float = Field(default=2.0, gt=0)
    redis_retries: int = Field(default=6, ge=0)
    redis_retry_cap: float = Field(default=2.0, gt=0)
    redis_health_check_s: int = Field(default=10, ge=0)
    # /health's own Redis check (a write with a short expiry): answered within this many seconds.
    health_timeout: float = Field(default=0.5, gt=0)
    # Supervision (`python app.py`): a child that stops is started again after 1 s, doubling to
    # `restart_max_s`; after `restart_burst` stops within `restart_window_s` the supervisor gives up on it.
    restart_first_s: float = Field(default=1.0, gt=0)
    restart_max_s: float = Field(default=30.0, gt=0)
    restart_burst: int = Field(default=5, ge=1)
    restart_window_s: float = Field(default=60.0, gt=0)
    # Map base (docs/operations.md, "Base map"), ECD_MAP_BASE: "vector" (default, offline: the
    # namespace's own streets, waterways, districts and `map_landmarks`, no tile server); a raster tile
    # URL template (https://tile.example.org/{z}/{x}/{y}.png); a MapLibre style URL (…/style.json, for a
    # vector tile service); or a local .mbtiles file of raster tiles, served by the app at /map/tiles/.
    map_base: str = "vector"
    map_landmarks: Path | None = SAMPLE_DATA / "landmarks.geojson"
    # Older settings, still read: a style name, and a raster tile URL (the same as ECD_MAP_BASE=<url>).
    map_style: str = "white-bg"
    map_tiles: str | None = None
    # A dispatched task not acknowledged within this many minutes (on the namespace's clock) is flagged.
    ack_minutes: float = Field(default=10.0, gt=0)
    default_scenario: Path = DEFAULT_SCENARIO
    # Audit trail: how often the anchor loop copies each chain's head outside Redis (at most 10 s, the
    # window in which removed newest entries could go unnoticed), and where (default data_dir/audit/).
    audit_anchor_seconds: float = Field(default=5.0, gt=0, le=10)
    audit_anchors: Path | None = None
    # Data classification (docs/security.md): how every dataset and sensitive field is graded, for a
    # data officer to read and edit; read again when it changes (command/trust/classification.py).
    classification_file: Path = SAMPLE_DATA / "classification.yaml"
    # Back-pressure (docs/operations.md): form and intake submissions (incident reports, task status
    # updates) each user and each department may make per minute, and the burst let through at once;
    # past that, 429 / an inline "try again in N s". Feed sources: see `rate_limit` in feeds.yaml.
    submit_user_per_minute: float = Field(default=30.0, gt=0)
    submit_user_burst: int = Field(default=20, ge=1)
    submit_department_per_minute: float = Field(default=120.0, gt=0)
    submit_department_burst: int = Field(default=60, ge=1)
    # The web server (layouts/admission.py): each worker's threads, and how many of its requests work at
    # once; the others wait, the operators' first (for a thread, then for a turn).
    web_threads: int = Field(default=8, ge=1, le=1024)
    web_slots: int = Field(default=2, ge=1, le=64)
    # Open data (/public/): requests each client address may make per minute before 429.
    public_rate_per_minute: int = Field(default=60, ge=1)
    # Scenario folders uploaded as a zip on /exercise (command/scenarios/upload.py): the archive's size
    # (an upload travels base64-encoded in one request of at most 1 MiB: layouts/web_basics.py), its
    # files, their unpacked total, and the largest compression ratio of one file (more: a zip bomb).
    upload_max_bytes: int = Field(default=700_000, ge=1_000)
    upload_max_files: int = Field(default=40, ge=1)
    upload_max_unpacked_bytes: int = Field(default=60_000_000, ge=1_000)
    upload_max_ratio: float = Field(default=100.0, gt=1)
    # Scenario folders kept (uploaded or saved from the events list): more are refused until some go.
    upload_max_kept: int = Field(default=100, ge=1)
    # A backtest started on /exercise keeps its result (data_dir/backtests/<id>) this many hours.
    backtest_keep_hours: float = Field(default=72.0, gt=0)

    @property
    def redis_dir(self) -> Path:
        return self.data_dir / "redis"

    @property
    def uploads_dir(self) -> Path:
        """Scenario folders uploaded or saved on /exercise, one folder each."""
        return self.data_dir / "scenarios"

    @property
    def backtests_dir(self) -> Path:
        """Backtests started on /exercise: each one's rules, report and charts."""
        return self.data_dir / "backtests"

    @property
    def audit_anchors_file(self) -> Path:
        return self.audit_anchors or self.data_dir / "audit" / "anchors.jsonl"
