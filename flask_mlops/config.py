"""Every `MLOPS_*` configuration key: its default, how it is parsed, and what it means.

A key's value comes from, in order: the keyword option given to `MLOps(...)` (the key
without the `MLOPS_` prefix, lower-case), `app.config`, an environment variable of the
same name (12-factor deployments under gunicorn), then the default below. Everything is
read and validated once in `init_app`; a wrong value fails at start-up naming the key.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import ConfigError, UnknownModelError
from .specs import ModelSpec, parse_models

Parser = Callable[[str, Any], Any]

#: the MLflow server's proxied artifact store (`mlflow server --serve-artifacts`, the default since MLflow 2)
PROXIED_ARTIFACTS = "mlflow-artifacts:/"


def _str(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string, got {type(value).__name__}")
    return value


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off", ""}:
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"{key} must be a boolean (true/false), got {value!r}")


def _number(kind: type, lo: float | None = None, hi: float | None = None) -> Parser:
    def parse(key: str, value: Any) -> Any:
        try:
            if isinstance(value, bool):
                raise TypeError
            number = kind(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key} must be a {kind.__name__}, got {value!r}") from exc
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            raise ConfigError(f"{key} must be between {lo} and {hi}, got {number!r}")
        return number

    return parse


def _choice(*choices: str) -> Parser:
    def parse(key: str, value: Any) -> str:
        if value not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(choices)}; got {value!r}")
        return str(value)

    return parse


def _json_obj(key: str, value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else None
        except ValueError as exc:
            raise ConfigError(f"{key} is not valid JSON: {exc}") from exc
    return value


#: the built-in MLOPS_PROMOTION_GATES (binary thresholds: other tasks use their own defaults, tasks.py)
DEFAULT_PROMOTION_GATES: dict[str, Any] = {"accuracy": 0.72, "roc_auc": 0.80, "f1": 0.65, "no_worse_than_production": True}


def _gates(key: str, value: Any) -> Mapping[str, Any]:
    value = _json_obj(key, value)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a mapping metric -> minimum, got {value!r}")
    return MappingProxyType(dict(value))


def _token_role(part: str) -> tuple[str, str]:
    """`token:role` -> (token, role); a part without a known role suffix is an admin token."""
    token, sep, role = part.rpartition(":")
    return (token, role) if sep and role in ("read", "admin") else (part, "admin")


def _tokens(key: str, value: Any) -> tuple[tuple[str, str], ...]:
    """A token, a comma list of `token[:role]`, or a mapping token -> role."""
    if value is None or value == "":
        return ()
    pairs: list[tuple[str, str]] = []
    items: list[tuple[Any, Any]]
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, str):
        items = [_token_role(part) for part in (p.strip() for p in value.split(",")) if part]
    elif isinstance(value, (list, tuple)):
        items = [(v, "admin") if isinstance(v, str) else tuple(v) for v in value]
    else:
        raise ConfigError(f"{key} must be a token string, a list or a mapping token -> role")
    for token, role in items:
        if role not in ("read", "admin"):
            raise ConfigError(f"{key}: role must be 'read' or 'admin', got {role!r}")
        if not isinstance(token, str) or len(token) < 8:
            raise ConfigError(f"{key}: every token must be a string of at least 8 characters")
        pairs.append((token, role))
    return tuple(pairs)


def _rate_limit(key: str, value: Any) -> str:
    """A `limits` rate such as '30 per 15 minutes' (checked now, parsed again by services/ratelimit.py)."""
    from limits import parse

    text = _str(key, value) or ""
    try:
        parse(text)
    except ValueError as exc:
        raise ConfigError(f"{key} must be a rate limit such as '30 per 15 minutes', got {value!r}") from exc
    return text


def _writer_id(key: str, value: Any) -> str | None:
    """A name for this host's log files: letters, digits, '.', '_' and '-' only (it is part of a file name)."""
    text = _str(key, value)
    if text is None or text == "":
        return None
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}", text):
        raise ConfigError(f"{key} must be 1-100 of A-Z a-z 0-9 . _ - (not starting with '.'), got {value!r}")
    return text


def _store_uri(key: str, value: Any) -> str | None:
    """A URI with a scheme (s3://bucket/prefix, gs://..., file:///path, an fsspec protocol); resolved on first use."""
    text = _str(key, value)
    if not text:
        return None
    if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text):
        raise ConfigError(f"{key} must be a URI such as s3://bucket/prefix or file:///srv/mlops-store, got {value!r}")
    return text


def _options(key: str, value: Any) -> Mapping[str, Any]:
    value = _json_obj(key, value) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a JSON object of keyword arguments, got {value!r}")
    return MappingProxyType(dict(value))


def _prefix(key: str, value: Any) -> str:
    value = _str(key, value) or ""
    if not value.startswith("/") or value.endswith("/") and value != "/":
        raise ConfigError(f"{key} must start with '/' and not end with one, got {value!r}")
    return value


def _models(key: str, value: Any) -> tuple[ModelSpec, ...]:
    try:
        return parse_models(_json_obj(key, value) or {})
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from exc


def _unit_key(key: str, value: Any) -> str:
    """`body:<field>`, `header:<Name>` or `query:<name>`."""
    text = _str(key, value) or ""
    source, sep, name = text.partition(":")
    if not sep or source not in ("body", "header", "query") or not name.strip():
        raise ConfigError(f"{key} must be 'body:<field>', 'header:<Name>' or 'query:<name>', got {value!r}")
    return f"{source}:{name.strip()}"


def _key(default: Any, doc: str, parse: Parser = _str) -> Any:
    metadata = {"doc": doc, "parse": parse}
    if isinstance(default, Mapping):  # dataclasses refuse mapping defaults: hand out frozen copies
        frozen = dict(default)
        return field(default_factory=lambda: MappingProxyType(frozen), metadata=metadata)
    return field(default=default, metadata=metadata)


def _default(f: Any) -> Any:
    return f.default_factory() if f.default is MISSING else f.default


@dataclass(frozen=True)
class MLOpsConfig:
    """The validated configuration of one app (read once, never mutated)."""

    # storage and servers (the None defaults are resolved against the instance folder by `load_config`)
    database_uri: str = _key(None, "SQLAlchemy URI of the `mlops` bind. Default: sqlite:///<instance>/mlops.db.")
    tracking_uri: str = _key(None, "MLflow tracking/registry URI. Default: sqlite:///<instance>/mlflow.db.")
    artifact_root: str = _key(
        None,
        "MLflow artifact root for new experiments: a folder, or a URI as MLflow takes it (s3://..., gs://..., "
        "mlflow-artifacts:/...). Default: the MLflow server's proxied store (mlflow-artifacts:/) when "
        "MLOPS_TRACKING_URI is http(s), else <instance>/mlartifacts.",
    )
    experiment_name: str = _key("flask-mlops", "MLflow experiment that training runs are logged under.")
    log_dir: str = _key("logs", "Folder for the JSONL prediction log, drift reports and caches (relative to the working directory).")
    model_cache_dir: str = _key(None, "Local copies of registered artifacts, sha256-checked. Default: <instance>/mlops_models.")
    models: tuple[ModelSpec, ...] = _key((), "Declared models: {name: {task, features, target, data, ...}} (see README).", _models)
    url_prefix: str = _key("/mlops", "Where the blueprint (API, dashboard, metrics) is mounted.", _prefix)
    # serving
    reload_interval: float = _key(5.0, "Seconds between checks for a new production version in each worker (0 = never).", _number(float, 0, 3600))
    load_on_start: bool = _key(True, "Load production models into memory in init_app (else on first use).", _bool)
    unit_key: str = _key(
        "body:user_id",
        "Where a request's unit id (A/B assignment) comes from: body:<field> (taken out of the body before validation), header:<Name> or query:<name>.",
        _unit_key,
    )
    device: str = _key("auto", "Training device: auto (CUDA when present), cpu or cuda.", _choice("auto", "cpu", "cuda"))
    # prediction log
    log_sample_rate: float = _key(1.0, "Share of tracked requests written to the log (decided by a hash of the prediction id).", _number(float, 0.0, 1.0))
    log_writer_id: str | None = _key(
        None,
        "Name of this host in its prediction log files (predictions/<day>/<name>-<pid>.jsonl). Default: the host name. "
        "Set a distinct one per host when hosts share a host name (containers given the same hostname) and a log folder.",
        _writer_id,
    )
    log_store: str | None = _key(
        None,
        "Object store the hosts' log files meet in when they share no volume: s3://bucket/prefix, gs://..., hdfs://..., "
        "file:///path (pyarrow), or any fsspec URL. Each host ships its own files there and pulls the others' into "
        "MLOPS_LOG_DIR (docs/deployment.md). Default: none (a local or shared log folder).",
        _store_uri,
    )
    log_store_options: Mapping[str, Any] = _key(
        {},
        "JSON keyword arguments of the store's filesystem: pyarrow's S3FileSystem / GcsFileSystem (endpoint_override, "
        "region, scheme, ...) or fsspec's storage options. Default: from the URI's query and the usual AWS_*/GCS variables.",
        _options,
    )
    log_sync_interval_s: float = _key(
        60.0,
        "Seconds between ships (and pulls) of the host's log sync under gunicorn's flask_mlops.gunicorn hooks, one "
        "worker per host (0 = none: run `flask mlops logs ship` and `pull` from cron).",
        _number(float, 0, 86400),
    )
    log_pull_days: int = _key(
        3, "UTC days a pull brings in from the store: today and the days before it (`flask mlops logs pull --days N` to backfill).", _number(int, 1, 36500)
    )
    log_retention_days: int = _key(30, "Days of the JSONL prediction log (every writer's files of a day, and their columnar caches) kept by the retention job (0 = keep forever).", _number(int, 0, 36500))
    log_errors: bool = _key(True, "Also log failed (4xx/5xx) tracked requests, with their status and error.", _bool)
    log_on_error: str = _key(
        "serve",
        "When a record cannot be written (full disk, read-only folder): serve the answer anyway and count the loss "
        "(metric mlops_prediction_log_failures_total, health, stats), or fail the request with 503.",
        _choice("serve", "fail"),
    )
    # security
    api_token: tuple[tuple[str, str], ...] = _key((), "Bearer token(s): 'tok', 'tok1:read,tok2:admin' or {token: role}.", _tokens)
    auth_disabled: bool = _key(False, "Development only: serve protected routes without authentication.", _bool)
    secret_key: str | None = _key(None, "Key that signs dashboard session cookies and keys their stored hashes and CSRF tokens. Default: the app's SECRET_KEY.")
    session_lifetime_s: float = _key(43200.0, "Seconds a dashboard session lasts (stored server-side; logout or removing its token ends it sooner).", _number(float, 60, 30 * 86400))
    auth_failure_limit: str = _key("30 per 15 minutes", "Wrong tokens (login form or bearer) allowed per client address per window; then 429 with Retry-After.", _rate_limit)
    ratelimit_storage_uri: str | None = _key(None, "`limits` storage of those counters, e.g. redis://host:6379. Default: the mlops database (shared by every worker).")
    max_body_bytes: int = _key(1_048_576, "Largest request body the /mlops API accepts (413 above it).", _number(int, 1024, 1 << 30))
    feedback_batch_max: int = _key(1000, "Most items one bulk feedback request may carry.", _number(int, 1, 100_000))
    # monitoring
    drift_psi_thresholds: Any = _key((0.1, 0.2, 0.3), "PSI levels monitor/warning/critical (every feature).", _json_obj)
    drift_ks_statistic: float = _key(0.1, "KS statistic from which a significant difference is drift (warning); monitor at half, critical at double.", _number(float, 0, 1))
    drift_alpha: float = _key(0.001, "Significance every drift test needs to raise a level: p-value, or the noise floor's false-alarm rate.", _number(float, 1e-12, 0.5))
    drift_min_samples: int = _key(100, "Fewest records in a window to judge drift (else insufficient_data).", _number(int, 1))
    drift_stattests: Any = _key(None, "Drift tests by name per feature type or feature: {numeric: [..], categorical: [..], <feature>: [..]} (default: see README).", _json_obj)
    drift_feature_thresholds: Any = _key(None, "Per-feature levels of any test: {feature: {psi: [m, w, c], wasserstein: [..], ...}}.", _json_obj)
    decay_thresholds: Any = _key((0.02, 0.05, 0.10), "Relative accuracy drop levels monitor/warning/critical.", _json_obj)
    decay_alpha: float = _key(0.005, "Decay counts only a drop larger than sampling error of baseline and window explains at this one-sided level.", _number(float, 1e-12, 0.5))
    error_rate_thresholds: Any = _key((0.01, 0.05, 0.10), "Error-rate levels monitor/warning/critical.", _json_obj)
    latency_p95_thresholds_ms: Any = _key((200.0, 500.0, 1000.0), "p95 latency levels (ms) monitor/warning/critical.", _json_obj)
    alert_webhook: str | None = _key(None, "URL alerts are POSTed to as JSON (Slack-compatible `text`).")
    alert_cooldown_s: float = _key(3600.0, "Seconds before the same alert condition is sent again.", _number(float, 0))
    # training and retraining
    candidates: Any = _key(None, "Candidate models and hyper-parameters for training (default: all available).", _json_obj)
    selection_metric: str | None = _key(
        None, "CV metric that picks the best candidate (default per task: roc_auc binary, f1_macro multi-class, mae regression)."
    )
    cv_folds: int = _key(5, "Cross-validation folds.", _number(int, 2, 50))
    holdout_size: float = _key(0.2, "Share of the data held out for the final evaluation.", _number(float, 0.05, 0.5))
    random_seed: int = _key(42, "Seed for splits and models (reproducible training).", _number(int, 0))
    promotion_gates: Mapping[str, Any] = _key(
        MappingProxyType(DEFAULT_PROMOTION_GATES),
        "Gates a new version must pass to be promoted (metric -> minimum, or maximum for mae/rmse/log_loss; "
        "no_worse_than_production). The default thresholds apply to binary models; MLOPS_MODELS[name]['gates'] overrides per model.",
        _gates,
    )
    retrain_min_new_labels: int = _key(100, "New labelled samples that trigger a retrain.", _number(int, 1))
    retrain_decay_threshold: float = _key(0.10, "Relative accuracy drop that triggers a retrain.", _number(float, 0, 1))
    retrain_app: str | None = _key(
        None,
        "Import path (`flask --app` form, e.g. `myapp:create_app()`) a separate process loads the app from to run a "
        "retraining the API queued. Default: FLASK_APP, else the host module when it holds the app or a factory; "
        "without one, runs wait for `flask mlops retrain --run-queued` or the scheduler's retrain_queue job.",
    )
    retrain_queue_interval_s: float = _key(60.0, "Seconds between the scheduler's checks for a queued retraining run.", _number(float, 1))
    retrain_by: str = _key(
        "app",
        "Who runs scheduled retraining: app (the in-app scheduler's retrain_check job) or workflow "
        "(`flask mlops retrain --scheduled`, e.g. the mlops-training workflow); the other one stands down.",
        _choice("app", "workflow"),
    )
    # scheduler
    scheduler_enabled: bool = _key(False, "Run the scheduled jobs inside the app's workers (one runner via a DB lease).", _bool)
    drift_cron: str = _key("0 2 * * *", "Cron (UTC) of the drift check job.")
    retrain_cron: str = _key("0 3 * * sun", "Cron (UTC) of the retrain check job.")
    rollout_interval_s: float = _key(300.0, "Seconds between rollout evaluations.", _number(float, 1))
    retention_cron: str = _key("30 1 * * *", "Cron (UTC) of the log retention job.")
    parquet_cron: str = _key(
        "15 0 * * *", "Cron (UTC) of the parquet_compaction job: closed days of the log into <log_dir>/parquet (model=/date= partitions)."
    )
    aggregate_engine: str = _key(
        "builtin",
        "What the aggregate_log job counts closed days nobody has counted yet with: builtin (DuckDB's JSON parser, numpy counts), duckdb (the aggregate "
        "SQL over the Parquet layout, embedded) or spark (the same SQL on Apache Spark at MLOPS_SPARK_MASTER; the spark extra). "
        "The open day is always counted by the built-in path.",
        _choice("builtin", "duckdb", "spark"),
    )
    spark_master: str = _key("local[2]", "Spark master URL for MLOPS_AGGREGATE_ENGINE=spark (spark://host:7077, yarn, k8s://..., local[N]).")
    aggregate_cron: str = _key(
        "*/5 * * * *", "Cron (UTC) of the aggregate_log job: counts the log lines not counted yet into the hourly aggregates."
    )
    aggregate_min_records: int = _key(
        100_000,
        "Drift and operations over a window whose hours hold at least this many records read the hourly aggregates "
        "(whole UTC hours, a sample for KS/Wasserstein) instead of the records (0 = always the aggregates).",
        _number(int, 0),
    )
    raw_read_max: int = _key(
        1_000_000,
        "Most records a window answered from the records (not the aggregates) reads: past it, the newest this many "
        "(the answer's window says `record_cap`). Bounds the memory and time of any read a read token can ask for.",
        _number(int, 1),
    )
    report_retention_days: int = _key(
        90, "Days stored drift runs (rows, JSON and HTML reports) are kept by the retention job (0 = keep forever).", _number(int, 0, 36500)
    )
    lease_ttl_s: float = _key(60.0, "Seconds a scheduler lease lives unless renewed (timed on the database's clock).", _number(float, 1))
    scheduler_catch_up: str = _key(
        "latest",
        "Ticks missed while no process held the lease (outage, dead host) are recorded as `missed`; "
        "`latest` also runs the newest missed tick of each job once, `none` runs none.",
        _choice("latest", "none"),
    )
    scheduler_stop_timeout_s: float = _key(
        10.0,
        "On shutdown, seconds to wait for running jobs before the lease is released anyway (keep it below "
        "gunicorn's graceful_timeout; an unfinished job cannot commit and is retried by the next holder).",
        _number(float, 0, 3600),
    )

    # resolved paths (filled by load_config, not keys)
    instance_path: str = field(default="", metadata={"internal": True})

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    def model(self, name: str) -> ModelSpec:
        for spec in self.models:
            if spec.name == name:
                return spec
        raise UnknownModelError(
            f"unknown model {name!r}", details={"known_models": self.model_names}
        )


def config_keys() -> list[tuple[str, Any, str]]:
    """(KEY, default, doc) for every key: the single source for the README table."""
    return [
        (f"MLOPS_{f.name.upper()}", _default(f), f.metadata["doc"])
        for f in fields(MLOpsConfig)
        if "doc" in f.metadata
    ]


def load_config(
    app_config: Mapping[str, Any],
    instance_path: str,
    options: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> MLOpsConfig:
    """Resolve every key (option → app.config → environment → default) and validate it."""
    options = dict(options or {})
    environ = os.environ if environ is None else environ
    known = {f.name for f in fields(MLOpsConfig) if "doc" in f.metadata}
    unknown = set(options) - known
    if unknown:
        raise ConfigError(f"unknown MLOps option(s): {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for f in fields(MLOpsConfig):
        if "doc" not in f.metadata:
            continue
        key = f"MLOPS_{f.name.upper()}"
        if f.name in options:
            raw = options[f.name]
        elif key in app_config:
            raw = app_config[key]
        elif key in environ:
            raw = environ[key]
        else:
            values[f.name] = _default(f)
            continue
        values[f.name] = f.metadata["parse"](key, raw)
    inst = Path(instance_path)
    values["database_uri"] = values["database_uri"] or f"sqlite:///{inst / 'mlops.db'}"
    values["tracking_uri"] = values["tracking_uri"] or f"sqlite:///{inst / 'mlflow.db'}"
    if not values["artifact_root"]:
        # with an MLflow server, artifacts go through it, so every host can load what one host registered
        remote = values["tracking_uri"].lower().startswith(("http://", "https://"))
        values["artifact_root"] = PROXIED_ARTIFACTS if remote else str(inst / "mlartifacts")
    values["model_cache_dir"] = values["model_cache_dir"] or str(inst / "mlops_models")
    _check_levels(values)
    return MLOpsConfig(instance_path=str(inst), **values)


def _check_levels(values: dict[str, Any]) -> None:
    for name in ("drift_psi_thresholds", "decay_thresholds", "error_rate_thresholds", "latency_p95_thresholds_ms"):
        key = f"MLOPS_{name.upper()}"
        levels = values[name]
        if (
            not isinstance(levels, (list, tuple))
            or len(levels) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in levels)
            or not levels[0] <= levels[1] <= levels[2]
        ):
            raise ConfigError(f"{key} must be three increasing numbers (monitor, warning, critical), got {levels!r}")
        values[name] = tuple(float(v) for v in levels)
