"""Registry lifecycle: promotion gates, promote / rollback / archive, history, semver and lineage.

Built on `registry.py` (MLflow + the `mlops` mirror tables). Every change goes through
`registry.set_alias` or writes its own audit event, so "which version was in production
at time T" is answered from the database (`production_at`). A failed gate raises
`GateFailed` (HTTP 422) and leaves production untouched.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from ..config import DEFAULT_PROMOTION_GATES
from ..errors import ConflictError, NotFoundError, UnprocessableError, ValidationError
from ..jsonable import jsonable
from ..store.experiments import Experiment
from ..store.models import Alias, AuditEvent, ModelVersion
from ..store.retraining import ModelHoldout, ModelTrainingRows, ensure_tables
from ..tasks import Task, higher_is_better, task_for
from .catalog import model_spec, version_spec
from .registry import (
    VersionInfo,
    alias_version,
    check_artifact_store,
    get_version,
    list_versions,
    mlflow_session,
    register,
    set_alias,
)
from .serving import PRODUCTION

if TYPE_CHECKING:
    from ..training import TrainingResult
    from .state import MLOpsState

logger = logging.getLogger(__name__)

CHALLENGER = "challenger"
ARCHIVED = "archived"
#: metrics compared by "no worse than production" when neither the gates nor the task name any
DEFAULT_COMPARE = ("f1", "roc_auc")
HOLDOUT_CAP = 20_000  # rows of holdout kept per version (JSON in the database)


class GateFailed(UnprocessableError):
    """A promotion gate failed; `details` lists every check with its value and threshold."""

    code_name = "gate_failed"


@dataclass(frozen=True)
class GateCheck:
    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str = ""


@dataclass(frozen=True)
class GateResult:
    passed: bool
    checks: list[GateCheck] = field(default_factory=list)

    @property
    def failures(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [asdict(c) for c in self.checks]}

    def summary(self) -> str:
        if self.passed:
            return "all gates passed"
        return "; ".join(c.detail or c.name for c in self.failures)


# -- gates -----------------------------------------------------------------------------------
#: gate keys that are not metrics
GATE_OPTIONS = ("no_worse_than_production", "compare", "tolerance")


def version_task(state: MLOpsState, name: str, version: int | None = None, info: VersionInfo | None = None) -> Task:
    """The Task of a version: the kind recorded at registration, else what the declaration says."""
    spec = model_spec(state, name)
    if info is None and version is not None:
        info = get_version(state, name, version)
    recorded = (info.tags or {}).get("task") if info is not None else None
    return task_for(spec.task, recorded=str(recorded) if recorded is not None else None)


def effective_gates(state: MLOpsState, name: str, task: Task, override: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """(gates, notes): the task's defaults or MLOPS_PROMOTION_GATES, then MLOPS_MODELS[name]["gates"], then `override`.

    The built-in MLOPS_PROMOTION_GATES are binary thresholds, so other tasks start from their
    own defaults (none absolute; "no worse than production" on their compare metrics). A
    configured global gate on a metric the task does not record is left out, with a note; a
    per-model or explicit gate on such a metric stays, and fails saying so.
    """
    notes: list[str] = []
    configured = dict(state.config.promotion_gates or {})
    if configured == DEFAULT_PROMOTION_GATES:
        gates: dict[str, Any] = {"no_worse_than_production": True, **task.default_gates}
    else:
        gates = {}
        for key, value in configured.items():
            if key in GATE_OPTIONS or key in task.metrics:
                gates[key] = value
            else:
                notes.append(f"MLOPS_PROMOTION_GATES {key!r} does not apply to {task.kind} models")
    gates.update(model_spec(state, name).extra.get("gates") or {})
    gates.update(override or {})
    gates.setdefault("no_worse_than_production", True)
    if not gates.get("compare"):
        gates["compare"] = list(task.compare)
    return gates, notes


def holdout_metrics(state: MLOpsState, name: str, version: int, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Metrics of a registered version on given rows (its task's metrics; binary at its stored threshold)."""
    from ..training.metrics import score_estimator

    served = state.models.check(name, version)  # 422 naming it when it cannot load
    task = version_task(state, name, version)
    rows = served.adapter.many(X) if served.adapter is not None else X  # a frame for estimators fitted on one
    positive = served.spec.positive_label if served.spec is not None else 1
    return score_estimator(task.kind, served.estimator, rows, y, threshold=served.threshold, positive=positive)


def _gate_check(metric: str, threshold: Any, metrics: Mapping[str, Any], task: Task) -> GateCheck:
    """One absolute gate: a minimum, or a maximum for metrics where lower is better."""
    value = metrics.get(metric)
    lower_better = not higher_is_better(metric)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        if metric not in task.metrics:
            why = f"{metric} is not a {task.kind} metric (gates can use {', '.join(task.metrics)})"
        else:
            why = f"{metric} not recorded for this version (recorded: {', '.join(sorted(k for k in metrics if k in task.metrics)) or 'none'})"
        return GateCheck(metric, False, None, float(threshold), why)
    ok = value <= threshold if lower_better else value >= threshold
    detail = "" if ok else f"{metric} {value:.4f} {'>' if lower_better else '<'} {threshold} ({'maximum' if lower_better else 'minimum'})"
    return GateCheck(metric, ok, float(value), float(threshold), detail)


def check_gates(
    state: MLOpsState, name: str, version: int, *, gates: Mapping[str, Any] | None = None, require_beat: bool = False
) -> GateResult:
    """Absolute thresholds on the version's holdout metrics, then "no worse than production".

    Gates come from `effective_gates` (per task and per model). The comparison scores the
    current production version on *this version's* holdout (stored at registration), so
    both are judged on the same rows. Where no holdout was stored, the versions' own
    recorded holdout metrics are compared instead (noted).
    """
    info = get_version(state, name, version)
    task = version_task(state, name, info=info)
    cfg, notes = effective_gates(state, name, task, gates)
    metrics = info.metrics or {}
    checks: list[GateCheck] = []
    for metric, threshold in cfg.items():
        if metric in GATE_OPTIONS or threshold is None:
            continue
        checks.append(_gate_check(metric, threshold, metrics, task))
    if cfg.get("no_worse_than_production", True) or require_beat:
        checks.extend(_no_worse(state, name, version, metrics, cfg, require_beat=require_beat))
    checks += [GateCheck("note", True, None, None, note) for note in notes]
    return GateResult(all(c.passed for c in checks), checks)


def _no_worse(
    state: MLOpsState, name: str, version: int, metrics: Mapping[str, Any], cfg: Mapping[str, Any], *, require_beat: bool = False
) -> list[GateCheck]:
    prod = alias_version(state, name)
    if prod is None or prod == version:
        return [GateCheck("no_worse_than_production", True, None, None, "no other production version")]
    if require_beat:
        return _beats(state, name, version, prod, cfg)
    compare = list(cfg.get("compare") or DEFAULT_COMPARE)
    tolerance = float(cfg.get("tolerance", 0.0))
    holdout = load_holdout(state, name, version)
    if holdout is not None:
        X, y = holdout
        mine = holdout_metrics(state, name, version, X, y)
        theirs = holdout_metrics(state, name, prod, X, y)
        how = f"on v{version}'s holdout ({len(y)} rows)"
    else:
        mine = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        theirs = {k: float(v) for k, v in (get_version(state, name, prod).metrics or {}).items() if isinstance(v, (int, float))}
        how = "on each version's recorded holdout metrics (no shared holdout stored)"
    checks = []
    for metric in compare:
        a, b = mine.get(metric), theirs.get(metric)
        if a is None or b is None:
            checks.append(GateCheck(f"no_worse_than_production:{metric}", False, a, b, f"{metric} missing for the comparison"))
            continue
        lower_better = not higher_is_better(metric)
        ok = a <= b + tolerance if lower_better else a >= b - tolerance
        detail = f"{metric} {a:.4f} vs production v{prod} {b:.4f} {how}"
        checks.append(GateCheck(f"no_worse_than_production:{metric}", ok, a, b, "" if ok else "worse than production: " + detail))
    return checks


def _beats(state: MLOpsState, name: str, version: int, prod: int, cfg: Mapping[str, Any]) -> list[GateCheck]:
    """Automatic promotion: both versions scored on the new version's holdout, the new one no
    worse on every compared metric and strictly better on at least one."""
    compare = list(cfg.get("compare") or DEFAULT_COMPARE)
    holdout = load_holdout(state, name, version)
    if holdout is None:
        return [GateCheck("beats_production", False, None, None, f"no holdout stored for v{version}: production v{prod} cannot be scored on it")]
    X, y = holdout
    mine = holdout_metrics(state, name, version, X, y)
    try:
        theirs = holdout_metrics(state, name, prod, X, y)
    except Exception as exc:  # noqa: BLE001 - a production version that cannot be scored is not beaten
        return [GateCheck("beats_production", False, None, None, f"production v{prod} could not be scored on v{version}'s holdout: {exc}")]
    checks: list[GateCheck] = []
    better = False
    for metric in compare:
        a, b = mine.get(metric), theirs.get(metric)
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            checks.append(GateCheck(f"beats_production:{metric}", False, a, b, f"{metric} missing for the comparison"))
            continue
        lower = not higher_is_better(metric)
        worse = a > b if lower else a < b
        better = better or (a < b if lower else a > b)
        detail = f"{metric} {a:.4f} vs production v{prod} {b:.4f} on v{version}'s holdout ({len(y)} rows)"
        checks.append(GateCheck(f"beats_production:{metric}", not worse, a, b, "worse than production: " + detail if worse else detail))
    if not better and all(c.passed for c in checks):
        checks.append(GateCheck("beats_production", False, None, None, f"not better than production v{prod} on any of {', '.join(compare)}: kept production"))
    return checks


# -- promote / rollback / archive / stage ------------------------------------------------------
def promote(
    state: MLOpsState,
    name: str,
    version: int,
    *,
    actor: str = "system",
    reason: str | None = None,
    force: bool = False,
    gates: Mapping[str, Any] | None = None,
    registering: bool = False,
    require_beat: bool = False,
) -> dict[str, Any]:
    """Point production at `version` if it passes the gates (or `force`); audit either way.

    `require_beat` (automatic promotion after retraining): production must also have been
    scored on the new version's holdout and lost on at least one compared metric.

    `registering`: called by `register(..., promote=True)`; a gate failure then says that
    the version is registered and how to get it into production.
    """
    info = get_version(state, name, version)
    if info.status == ARCHIVED and not force:
        raise ConflictError(f"{name} v{version} is archived; pass force to promote it anyway", details={"version": version})
    current = alias_version(state, name)
    if current == version:
        return {"model": name, "version": version, "previous": current, "changed": False, "gates": None}
    ensure_loadable(state, name, version)  # a version that cannot load is refused (422) before any gate, forced or not
    result = check_gates(state, name, version, gates=gates, require_beat=require_beat)
    if not result.passed and not force:
        _audit(state, name, "promote_rejected", version, current, actor, reason, {"gates": result.to_dict()})
        message = f"{name} v{version} not promoted: {result.summary()}"
        if registering:
            task = version_task(state, name, info=info)
            message = (
                f"{name} v{version} is registered but not in production: {result.summary()}. The promotion gates "
                "(MLOPS_PROMOTION_GATES, or the model's gates) judge the metrics given at registration: pass "
                f"metrics={{...}} measured on rows the model did not see (a {task.kind} model: {', '.join(task.metrics[:5])}), "
                "or force=True to promote without gates"
            )
        raise GateFailed(
            message,
            details={"model": name, "version": version, "production": current, **result.to_dict()},
        )
    details = {"gates": result.to_dict(), "forced": bool(force and not result.passed)}
    previous = set_alias(state, name, PRODUCTION, version, actor=actor, reason=reason, action="promote", details=details)
    _set_status(state, name, {version: "production", **({previous: "superseded"} if previous not in (None, version) else {})})
    logger.info("%s: v%s promoted to production (was v%s) by %s", name, version, previous, actor)
    return {"model": name, "version": version, "previous": previous, "changed": True, "gates": result.to_dict()}


def ensure_loadable(state: MLOpsState, name: str, version: int) -> None:
    """422 naming the version when its artifact cannot be loaded (missing, tampered, unpicklable)."""
    state.models.check(name, version)


_promote = promote  # for register_model, whose `promote` argument shadows the function


def production_stack(state: MLOpsState, name: str) -> list[int]:
    """Production versions in order, with rolled-back ones popped (top = current)."""
    stack: list[int] = []
    for ev in _events(state, name):
        if ev.version is None or (ev.details or {}).get("alias") != PRODUCTION:
            continue
        if ev.action == "rollback" and ev.version in stack:
            while stack and stack[-1] != ev.version:
                stack.pop()
        elif not stack or stack[-1] != ev.version:
            stack.append(ev.version)
    return stack


def rollback_target(state: MLOpsState, name: str, current: int | None = None) -> int | None:
    """The version a plain rollback goes back to: the previous production version not archived (None: no way back)."""
    current = alias_version(state, name) if current is None else current
    earlier = [v for v in production_stack(state, name)[:-1] if v != current and _status(state, name, v) != ARCHIVED]
    return earlier[-1] if current is not None and earlier else None


def rollback(
    state: MLOpsState, name: str, to_version: int | None = None, *, actor: str = "system", reason: str | None = None
) -> dict[str, Any]:
    """Production back to the previous production version (or `to_version`); no gates: it is the way out."""
    current = alias_version(state, name)
    if to_version is None:
        to_version = rollback_target(state, name, current)
        if to_version is None:
            raise ConflictError(f"{name} has no previous production version to roll back to", details={"production": current})
    info = get_version(state, name, to_version)
    if info.status == ARCHIVED:
        raise ConflictError(f"{name} v{to_version} is archived and cannot serve", details={"version": to_version})
    if to_version == current:
        raise ConflictError(f"{name} v{to_version} is already in production", details={"version": to_version})
    previous = set_alias(state, name, PRODUCTION, to_version, actor=actor, reason=reason or "rollback", action="rollback")
    _set_status(state, name, {to_version: "production", **({previous: "rolled_back"} if previous is not None else {})})
    logger.warning("%s: rolled back from v%s to v%s by %s", name, previous, to_version, actor)
    return {"model": name, "version": to_version, "previous": previous, "changed": True}


def stage(state: MLOpsState, name: str, version: int, *, alias: str = CHALLENGER, actor: str = "system", reason: str | None = None) -> int | None:
    """Point a non-production alias (challenger / staging) at a version."""
    if alias == PRODUCTION:
        raise ConflictError("use promote() to change production")
    return set_alias(state, name, alias, version, actor=actor, reason=reason, action=f"stage:{alias}")


def archive(state: MLOpsState, name: str, version: int, *, actor: str = "system", reason: str | None = None) -> dict[str, Any]:
    """Retire a version: never the one in production; its other aliases are removed."""
    if alias_version(state, name) == version:
        raise ConflictError(f"{name} v{version} is in production; promote or roll back first", details={"version": version})
    info = get_version(state, name, version)
    if info.status == ARCHIVED:
        return {"model": name, "version": version, "changed": False}
    _not_in_a_running_experiment(state, name, version)
    removed: list[str] = []
    with state.session() as session, session.begin():
        for row in session.scalars(select(Alias).where(Alias.model_name == name, Alias.version == version)):
            removed.append(row.alias)
            session.delete(row)
    with mlflow_session(state) as mlflow:
        client = mlflow.MlflowClient()
        for alias in removed:
            try:
                client.delete_registered_model_alias(name, alias)
            except Exception:  # noqa: BLE001 - the database is the source of truth for serving
                logger.warning("could not delete MLflow alias %s of %s", alias, name, exc_info=True)
        try:
            client.set_model_version_tag(name, str(version), "mlops.status", ARCHIVED)
        except Exception:  # noqa: BLE001
            logger.warning("could not tag %s v%s archived in MLflow", name, version, exc_info=True)
    _set_status(state, name, {version: ARCHIVED})
    _audit(state, name, "archive", version, None, actor, reason, {"removed_aliases": removed})
    return {"model": name, "version": version, "changed": True, "removed_aliases": removed}


def _not_in_a_running_experiment(state: MLOpsState, name: str, version: int) -> None:
    """An archived version must not serve: refuse while a running experiment routes to it."""
    with state.session() as session:
        running = session.scalar(
            select(Experiment.id).where(
                Experiment.running_model == name,
                (Experiment.treatment_version == version) | (Experiment.control_version == version),
            )
        )
    if running is not None:
        raise ConflictError(
            f"{name} v{version} serves in running experiment {running}; stop it first", details={"version": version, "experiment_id": running}
        )


# -- history ------------------------------------------------------------------------------------
def _events(state: MLOpsState, name: str, since: datetime | None = None, until: datetime | None = None) -> list[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.model_name == name)
    if since is not None:
        query = query.where(AuditEvent.ts >= since)
    if until is not None:
        query = query.where(AuditEvent.ts <= until)
    with state.session() as session:
        return list(session.scalars(query.order_by(AuditEvent.ts, AuditEvent.id)))


def history(
    state: MLOpsState, name: str, *, since: datetime | None = None, until: datetime | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Audit events of a model, newest first: who did what, when and why."""
    model_spec(state, name)
    rows = _events(state, name, since, until)[::-1]
    if limit is not None:
        rows = rows[:limit]
    return [
        {
            "id": ev.id,
            "ts": ev.ts.isoformat(),
            "action": ev.action,
            "version": ev.version,
            "previous_version": ev.previous_version,
            "actor": ev.actor,
            "reason": ev.reason,
            "details": ev.details or {},
        }
        for ev in rows
    ]


def production_at(state: MLOpsState, name: str, moment: datetime) -> int | None:
    """The version that was in production at `moment` (None before the first promotion)."""
    version = None
    for ev in _events(state, name, until=moment):
        if (ev.details or {}).get("alias") == PRODUCTION and ev.version is not None:
            version = ev.version
    return version


# -- semantic version and lineage ---------------------------------------------------------------
def next_semver(state: MLOpsState, name: str, *, features: list[str], candidate: str, data_sha256: str) -> str:
    """MAJOR: the input features changed; MINOR: new data or another algorithm; PATCH: same both.

    Bumped from the newest version that has a semver (1.0.0 for the first).
    """
    latest = next((v for v in list_versions(state, name) if v.semver), None)
    if latest is None:
        return "1.0.0"
    try:
        major, minor, patch = (int(p) for p in str(latest.semver).split(".")[:3])
    except ValueError:
        return "1.0.0"
    tags = latest.tags or {}
    if tags.get("features") not in (None, ",".join(features)):
        return f"{major + 1}.0.0"
    if tags.get("data_sha256") != data_sha256 or tags.get("candidate") != candidate:
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


def git_commit() -> str | None:
    """The code's commit: from the environment (CI) or `git rev-parse`, else None."""
    for key in ("MLOPS_GIT_COMMIT", "GITHUB_SHA", "GIT_COMMIT", "CI_COMMIT_SHA"):
        if os.environ.get(key):
            return os.environ[key]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=3, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) >= 7 else None


def lineage_tags(state: MLOpsState, name: str, result: TrainingResult, *, trigger: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    tags: dict[str, Any] = {
        "data_sha256": result.data_sha256,
        "git_commit": git_commit() or "unknown",
        "trigger": trigger,
        "candidate": result.candidate,
        "features": ",".join(result.feature_names),
        "parent_version": alias_version(state, name) or "none",
        "device": result.device,
        "n_train": result.n_train,
        "n_holdout": result.n_holdout,
        "task": result.task,
        f"cv_{result.selection_metric}_mean": round(result.cv[result.selection_metric]["mean"], 4),
    }
    task = task_for(result.task)
    for metric in task.compare:
        value = result.holdout.get(metric)
        if isinstance(value, (int, float)):
            tags[f"holdout_{metric}"] = round(float(value), 4)
    tags.update(extra or {})
    return tags


def register_model(
    state: MLOpsState,
    name: str,
    estimator: Any,
    *,
    promote: bool = False,
    force: bool = False,
    actor: str = "system",
    reason: str | None = None,
    **kwargs: Any,
) -> VersionInfo:
    """`mlops.register`: register a fitted estimator (see `registry.register`), and with
    `promote=True` put it in production through the promotion gates, judged on the `metrics`
    given (a failure raises `GateFailed` saying so and leaves the version registered);
    `force=True` promotes without the gates (audited as forced). `labels=` (the target of
    the `reference` rows) keeps those rows as the data retraining starts from."""
    labels = kwargs.pop("labels", None)
    info = register(state, name, estimator, actor=actor, reason=reason, **kwargs)
    if labels is not None and kwargs.get("reference") is not None:
        save_training_rows(state, info.model, info.version, _rows_of(state, info.model, info.version, kwargs["reference"]), np.asarray(labels))
    if promote:
        _promote(state, info.model, info.version, actor=actor, reason=reason or "registered and promoted", force=force, registering=True)
        info = get_version(state, info.model, info.version)
    return info


def register_result(
    state: MLOpsState,
    name: str,
    result: TrainingResult,
    *,
    trigger: str = "manual",
    actor: str = "system",
    reason: str | None = None,
    promote_if_passing: bool = True,
    holdout: tuple[np.ndarray, np.ndarray] | None = None,
    extra_tags: Mapping[str, Any] | None = None,
    require_beat: bool = False,
) -> dict[str, Any]:
    """Register a training result with semver + lineage, its holdout and training rows; promote it if it passes.

    `require_beat` (retraining): promoted only over a production version it beat on its holdout.

    Returns {"version", "semver", "promoted", "gates", "reason"}. Registration never moves
    production by itself, so a crash between the two steps leaves production as it was.
    """
    semver = next_semver(state, name, features=result.feature_names, candidate=result.candidate, data_sha256=result.data_sha256)
    tags = lineage_tags(state, name, result, trigger=trigger, extra={"semver": semver, **(extra_tags or {})})
    metrics = {**result.flat_metrics(), **{k: v for k, v in result.holdout.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}}
    info: VersionInfo = register(
        state,
        name,
        result.estimator,
        reference=result.X_reference,
        features=result.feature_names,  # an undeclared model's spec is inferred from these rows
        task="regression" if result.task == "regression" else "classification",
        metrics=metrics,
        params={"candidate": result.candidate, **result.params, **result.settings},
        threshold=result.threshold,
        tags=tags,
        artifacts=result.artifacts,
        semver=semver,
        actor=actor,
        reason=reason or f"trained ({trigger})",
    )
    if holdout is not None:
        save_holdout(state, name, info.version, *holdout)
    save_training_rows(state, name, info.version, result.X_reference, result.y_reference)
    out: dict[str, Any] = {"version": info.version, "semver": semver, "promoted": False, "gates": None, "reason": None}
    if not promote_if_passing:
        return out
    try:
        promoted = promote(
            state, name, info.version, actor=actor, reason=reason or f"retrained ({trigger}); gates passed", require_beat=require_beat
        )
        out.update(promoted=True, gates=promoted["gates"])
    except GateFailed as exc:
        _set_status(state, name, {info.version: "rejected"})
        out.update(gates=exc.details, reason=exc.message)
    return out


def train_and_register(
    state: MLOpsState,
    name: str,
    data: Any = None,
    *,
    target: str | None = None,
    csv: str | Path | None = None,
    promote: bool = True,
    actor: str = "system",
    reason: str | None = "manual training",
    progress: Callable[[str], None] | None = None,
) -> tuple[TrainingResult, dict[str, Any]]:
    """Train `name` on a DataFrame or CSV, register the result, and promote it if it passes the gates.

    `promote=False` registers only. Returns the training result and `register_result`'s answer.
    """
    from ..training import TrainingSettings, load_training_data, run_training
    spec = model_spec(state, name)
    if data is not None:
        target = target or spec.target
        if target is None or target not in data.columns:
            raise ValidationError(f"target column {target!r} is not in the data; pass target=")
        missing = [f for f in spec.feature_names if f not in data.columns]
        if missing:
            raise ValidationError(f"the data lacks declared features: {', '.join(missing)}", details={"missing": missing})
        X = np.asarray(data[spec.feature_names].to_numpy())
        y = np.asarray(data[target].to_numpy())
    else:
        X, y = load_training_data(spec, csv, target)
    check_artifact_store(state)  # fail in seconds, not after the training
    result = run_training(spec, X, y, TrainingSettings.from_config(state.config), progress=progress)
    holdout = (result.X_holdout, result.y_holdout) if result.X_holdout is not None and result.y_holdout is not None else None
    outcome = register_result(
        state, name, result, trigger="manual", actor=actor, reason=reason, promote_if_passing=promote, holdout=holdout
    )
    return result, outcome


# -- holdout rows and small helpers ---------------------------------------------------------------
def _save_rows(state: MLOpsState, table: Any, name: str, version: int, X: np.ndarray, y: np.ndarray) -> None:
    ensure_tables(state.engine)
    if len(y) > HOLDOUT_CAP:
        keep = np.sort(np.random.default_rng(0).choice(len(y), HOLDOUT_CAP, replace=False))
        X, y = X[keep], y[keep]
    rows = [[None if (isinstance(v, float) and not np.isfinite(v)) else (v.item() if hasattr(v, "item") else v) for v in row] for row in np.asarray(X, dtype=object)]
    with state.session() as session, session.begin():
        session.merge(table(model_name=name, version=version, features=rows, labels=[_label(v) for v in np.asarray(y, dtype=object)]))


def _load_rows(state: MLOpsState, table: Any, name: str, version: int) -> tuple[np.ndarray, np.ndarray] | None:
    ensure_tables(state.engine)
    with state.session() as session:
        row = session.get(table, (name, version))
        if row is None:
            return None
        features, labels = row.features, row.labels
    spec = version_spec(state, name, version)
    numeric = all(f.type == "numeric" for f in spec.features)
    X = np.array([[np.nan if v is None else v for v in r] for r in features], dtype=float if numeric else object)
    if not len(features):
        X = X.reshape(0, len(spec.features))
    return X, np.asarray(labels, dtype=object if any(isinstance(v, str) for v in labels) else None)


def save_holdout(state: MLOpsState, name: str, version: int, X: np.ndarray, y: np.ndarray) -> None:
    """The rows a version was evaluated on (capped), for "no worse than production" on the same rows."""
    _save_rows(state, ModelHoldout, name, version, X, y)


def load_holdout(state: MLOpsState, name: str, version: int) -> tuple[np.ndarray, np.ndarray] | None:
    return _load_rows(state, ModelHoldout, name, version)


def save_training_rows(state: MLOpsState, name: str, version: int, X: np.ndarray, y: np.ndarray) -> None:
    """The labelled rows a version was fitted on (capped): retraining's base when no `data` is declared."""
    _save_rows(state, ModelTrainingRows, name, version, X, y)


def load_training_rows(state: MLOpsState, name: str, version: int) -> tuple[np.ndarray, np.ndarray] | None:
    return _load_rows(state, ModelTrainingRows, name, version)


def _rows_of(state: MLOpsState, name: str, version: int, reference: Any) -> np.ndarray:
    """A registered reference (DataFrame, mapping of columns or array) as rows in the version's feature order."""
    names = version_spec(state, name, version).feature_names
    if hasattr(reference, "columns"):
        return np.asarray(reference[names].to_numpy())
    if isinstance(reference, Mapping):
        return np.column_stack([np.asarray(reference[f]) for f in names])
    return np.asarray(reference)


def _label(value: Any) -> Any:
    """A holdout label as JSON: integers stay integers, numbers floats, classes text."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value) if abs(value) < 2**53 else value
    return value if isinstance(value, (int, float, str)) else str(value)


def _status(state: MLOpsState, name: str, version: int) -> str | None:
    with state.session() as session:
        return session.scalar(select(ModelVersion.status).where(ModelVersion.model_name == name, ModelVersion.version == version))


def _set_status(state: MLOpsState, name: str, statuses: Mapping[int | None, str]) -> None:
    with state.session() as session, session.begin():
        for version, status in statuses.items():
            if version is None:
                continue
            row = session.scalar(select(ModelVersion).where(ModelVersion.model_name == name, ModelVersion.version == version))
            if row is None:
                raise NotFoundError(f"model {name!r} has no version {version}")
            if row.status != ARCHIVED or status == ARCHIVED:
                row.status = status


def _audit(
    state: MLOpsState, name: str, action: str, version: int | None, previous: int | None, actor: str, reason: str | None, details: Mapping[str, Any]
) -> None:
    with state.session() as session, session.begin():
        session.add(AuditEvent(model_name=name, action=action, version=version, previous_version=previous, actor=actor, reason=reason, details=jsonable(dict(details))))
