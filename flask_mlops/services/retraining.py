"""Automated retraining: triggers, the check, and runs (one at a time) that train → gate → promote.

Triggers register themselves in `TRIGGERS` and each answers its value and threshold, so
`GET /retrain/check` can say why retraining is (not) due:
- `drift`: the largest feature PSI of the recent window vs the critical PSI level;
- `decay`: relative drop of the task's metric on labelled predictions vs the version's holdout
  (monitoring's `performance`, the same figures as `GET /api/monitoring/performance`);
- `new_labels`: labels received since the last training vs `MLOPS_RETRAIN_MIN_NEW_LABELS`;
- `schedule`: a `MLOPS_RETRAIN_CRON` tick has passed since the last training;
- `manual`: asked for explicitly (API trigger, `flask mlops retrain --force`).

A run claims the single slot in `mlops_retrain_runs` (409 while another is active),
trains on the base rows (the declared data, or the rows the production version was fitted
and evaluated on) plus labelled feedback, registers the result (never moving production by
itself), then promotes it only if it passes the gates *and* beat production on its holdout,
scored for both. The API never trains in the web process: `submit` starts a separate
process (`flask --app <MLOPS_RETRAIN_APP> mlops retrain --run-id N`) or leaves the run
queued for `flask mlops retrain --run-queued` / the scheduler's `retrain_queue` job. A
killed run is found stale and recorded as failed; production is untouched throughout.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from ..errors import ConflictError, MLOpsError, NotFoundError, UnprocessableError
from ..jsonable import jsonable
from ..store import retraining as runs
from ..store.feedback import count_since, labelled
from ..store.models import ModelVersion
from ..store.predictions import format_ts, read_records
from ..tasks import infer_kind
from . import lifecycle
from .catalog import model_names, model_spec
from .monitoring import WindowSpec, drift, performance
from .prometheus import record_retrain
from .registry import alias_version

if TYPE_CHECKING:
    from .state import MLOpsState

logger = logging.getLogger(__name__)

DRIFT_WINDOW = timedelta(days=7)  # recent predictions judged by the drift trigger
DECAY_WINDOW = timedelta(days=30)  # labelled predictions judged by the decay trigger
HEARTBEAT_S = 10.0


@dataclass(frozen=True)
class TriggerResult:
    name: str
    fired: bool
    value: Any
    threshold: Any
    detail: str = ""
    available: bool = True


@dataclass
class RetrainCheck:
    model: str
    due: bool
    reasons: list[str]
    triggers: dict[str, TriggerResult] = field(default_factory=dict)
    last_trained_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "due": self.due,
            "reasons": self.reasons,
            "last_trained_at": self.last_trained_at,
            "triggers": {k: asdict(v) for k, v in self.triggers.items()},
        }


@dataclass(frozen=True)
class _Context:
    name: str
    now: datetime
    production: int | None
    last_trained: datetime | None
    manual: bool


Trigger = Callable[["MLOpsState", _Context], TriggerResult]
TRIGGERS: dict[str, Trigger] = {}


def trigger(name: str) -> Callable[[Trigger], Trigger]:
    def deco(fn: Trigger) -> Trigger:
        TRIGGERS[name] = fn
        return fn

    return deco


# -- the triggers --------------------------------------------------------------------------------
@trigger("drift")
def _drift(state: MLOpsState, ctx: _Context) -> TriggerResult:
    critical = float(state.config.drift_psi_thresholds[2])
    if ctx.production is None:
        return TriggerResult("drift", False, None, critical, "no production version", available=False)
    try:  # the one drift computation (numeric and categorical), against production's profile
        report = drift(state, WindowSpec(ctx.name, since=ctx.now - DRIFT_WINDOW, until=ctx.now), persist=False)
    except UnprocessableError as exc:
        return TriggerResult("drift", False, None, critical, exc.message, available=False)
    if report.status != "ok":
        return TriggerResult("drift", False, None, critical, report.message or report.status)
    psis = {n: f.psi for n, f in report.features.items() if f.psi is not None}
    if not psis:
        return TriggerResult("drift", False, None, critical, "no PSI computed")
    worst_name = max(psis, key=lambda n: psis[n])
    value = float(psis[worst_name])
    psi_test = report.features[worst_name].tests.get("psi")
    fired = value > critical and psi_test is not None and psi_test.level == "critical"  # past its noise floor too
    return TriggerResult("drift", fired, round(value, 4), critical, f"max PSI {value:.3f} ({worst_name}) over {report.n_rows} requests")


def _labels_01(values: list[Any], positive: Any) -> np.ndarray:
    return np.array([str(v) == str(positive) or (isinstance(v, bool) and v and positive in (1, True)) for v in values], dtype=bool)


def _labels(kind: str, values: list[Any], positive: Any) -> np.ndarray:
    """Feedback labels as training takes them: 0/1 (binary), numbers (regression), classes as given."""
    if kind == "binary":
        return _labels_01(values, positive).astype(int)
    if kind == "regression":
        return np.asarray(values, dtype=float)
    plain = [int(v) if isinstance(v, float) and v.is_integer() else v for v in values]
    return np.asarray(plain, dtype=object if any(isinstance(v, str) for v in plain) else None)


@trigger("decay")
def _decay(state: MLOpsState, ctx: _Context) -> TriggerResult:
    """Monitoring's decay of production's labelled predictions, judged by the trigger's own rules:
    its label minimum (`MLOPS_DRIFT_MIN_SAMPLES`) and limit (`MLOPS_RETRAIN_DECAY_THRESHOLD`), past sampling error."""
    limit = state.config.retrain_decay_threshold
    if ctx.production is None:
        return TriggerResult("decay", False, None, limit, "no production version", available=False)
    minimum = state.config.drift_min_samples
    window = WindowSpec(ctx.name, version=str(ctx.production), since=ctx.now - DECAY_WINDOW, until=ctx.now)
    perf = performance(state, window, min_labels=minimum, estimate=False)  # the one performance computation
    result, n = perf["decay"], int(perf["n_labelled"])
    metric, baseline, current = result["metric"], result["baseline"], result["current"]
    if baseline is None:
        return TriggerResult("decay", False, None, limit, f"the production version has no recorded holdout {metric}", available=False)
    if n < minimum:
        return TriggerResult("decay", False, None, limit, f"{n} labelled predictions; {minimum} needed (MLOPS_DRIFT_MIN_SAMPLES)")
    drop, mdd = result["relative_drop"], result["min_detectable_drop"]
    # noise alone must not retrain: the drop must also be past what sampling error explains
    fired = drop is not None and drop > limit and (mdd is None or drop > mdd)
    return TriggerResult(
        "decay", fired, None if drop is None else round(drop, 4), limit,
        f"{metric} {current:.4g} on {n} labelled vs holdout {baseline:.4g}"
        + ("" if mdd is None else f" (drops under {mdd:.1%} are within sampling error)"),
    )


@trigger("new_labels")
def _new_labels(state: MLOpsState, ctx: _Context) -> TriggerResult:
    minimum = state.config.retrain_min_new_labels
    with state.session() as session:
        n = count_since(session, ctx.name, ctx.last_trained)
    since = ctx.last_trained.isoformat() if ctx.last_trained else "ever"
    return TriggerResult("new_labels", n >= minimum, n, minimum, f"{n} labels received since {since}")


@trigger("schedule")
def _schedule(state: MLOpsState, ctx: _Context) -> TriggerResult:
    from apscheduler.triggers.cron import CronTrigger

    cron = state.config.retrain_cron
    if ctx.last_trained is None:
        return TriggerResult("schedule", True, None, cron, "never trained")
    nxt = CronTrigger.from_crontab(cron, timezone=timezone.utc).get_next_fire_time(None, ctx.last_trained)
    fired = nxt is not None and nxt <= ctx.now
    return TriggerResult("schedule", fired, format_ts(ctx.last_trained), cron, f"next tick after the last training: {nxt.isoformat() if nxt else 'never'}")


@trigger("manual")
def _manual(state: MLOpsState, ctx: _Context) -> TriggerResult:
    return TriggerResult("manual", ctx.manual, ctx.manual, True, "requested" if ctx.manual else "not requested")


# -- the check --------------------------------------------------------------------------------------
def last_trained_at(state: MLOpsState, name: str) -> datetime | None:
    """When the newest version of `name` was registered (None if never)."""
    with state.session() as session:
        return session.scalar(select(ModelVersion.created_at).where(ModelVersion.model_name == name).order_by(ModelVersion.created_at.desc()).limit(1))


def check(state: MLOpsState, name: str, *, now: datetime | None = None, manual: bool = False) -> RetrainCheck:
    """Evaluate every trigger; retraining is due when any fires. A failing trigger reports why, never raises."""
    model_spec(state, name)
    now = now or datetime.now(timezone.utc)
    last = last_trained_at(state, name)
    ctx = _Context(name, now, alias_version(state, name), last, manual)
    results: dict[str, TriggerResult] = {}
    for tname, fn in TRIGGERS.items():
        try:
            results[tname] = fn(state, ctx)
        except Exception as exc:  # noqa: BLE001 - one broken trigger must not hide the others
            logger.exception("retrain trigger %s failed for %s", tname, name)
            results[tname] = TriggerResult(tname, False, None, None, f"error: {exc}", available=False)
    reasons = [f"{r.name}: {r.detail}" for r in results.values() if r.fired]
    return RetrainCheck(name, bool(reasons), reasons, results, format_ts(last) if last else None)


# -- training data ----------------------------------------------------------------------------------
def training_data(state: MLOpsState, name: str, *, since: datetime | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Base rows + logged predictions that received a label (since `since`), deduplicated.

    The base is the model's declared `data`, else the labelled rows the production version
    was fitted and evaluated on (kept when it was trained here or registered with `labels=`).
    Without either, only feedback is used (said in `info["base"]`).
    """
    from ..training import load_training_data

    spec = model_spec(state, name)
    production = alias_version(state, name)
    kind = lifecycle.version_task(state, name, production).kind if production is not None else infer_kind(spec.task)
    parts_X: list[np.ndarray] = []
    parts_y: list[np.ndarray] = []
    info: dict[str, Any] = {"base": "none", "base_rows": 0, "feedback_labels": 0, "feedback_rows": 0, "duplicates_dropped": 0, "missing_in_log": 0}
    if spec.data:
        X0, y0 = load_training_data(spec)
        parts_X.append(X0)
        parts_y.append(y0)
        info.update(base=f"declared data {spec.data}", base_rows=len(y0))
    elif production is not None:
        stored = [part for part in (lifecycle.load_training_rows(state, name, production), lifecycle.load_holdout(state, name, production)) if part is not None]
        if stored:
            parts_X.extend(X for X, _ in stored)
            parts_y.extend(_labels(kind, list(y), spec.positive_label) for _, y in stored)
            info.update(base=f"the rows production v{production} was trained and evaluated on", base_rows=sum(len(y) for _, y in stored))
    with state.session() as session:
        fb = {r.prediction_id: (r.label, r.prediction_ts) for r in labelled(session, name, since=since)}
    info["feedback_labels"] = len(fb)
    if fb:
        first = min(ts for _, ts in fb.values())
        rows, labels = [], []
        found: set[str] = set()
        for rec in read_records(state.log_dir, model=name, since=first):
            pid = str(rec.get("id"))
            if pid not in fb or pid in found or not isinstance(rec.get("features"), dict) or int(rec.get("status") or 200) >= 400:
                continue
            found.add(pid)
            feats = rec["features"]
            rows.append([feats.get(f) for f in spec.feature_names])
            labels.append(fb[pid][0])
        info["missing_in_log"] = len(fb) - len(found)
        if rows:
            numeric = all(f.type == "numeric" for f in spec.features)
            Xf = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=float if numeric else object)
            yf = _labels(kind, labels, spec.positive_label)
            parts_X.append(Xf)
            parts_y.append(yf)
            info["feedback_rows"] = len(yf)
    if not parts_X:
        raise MLOpsError(f"model {name!r}: no training data (no 'data' in MLOPS_MODELS, no stored rows of the production version, no labelled feedback)")
    n_base = info["base_rows"]
    numeric_all = all(p.dtype != object for p in parts_X)
    X = np.concatenate([p.astype(float if numeric_all else object) for p in parts_X])
    y = np.concatenate([np.asarray(p, dtype=object) for p in parts_y]) if len(parts_y) > 1 else parts_y[0]
    if y.dtype == object and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in y.tolist()):
        y = y.astype(float if kind == "regression" else int)
    if info["feedback_rows"]:
        X, y, dropped = _dedupe_feedback(X, y, n_base)
        info["duplicates_dropped"] = dropped
    info["rows"] = len(y)
    return X, y, info


def _dedupe_feedback(X: np.ndarray, y: np.ndarray, n_base: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Drop feedback rows that repeat a base row or an earlier feedback row (features and label)."""
    seen = {tuple(map(repr, row)) + (repr(label),) for row, label in zip(X[:n_base].tolist(), y[:n_base].tolist(), strict=True)}
    keep = list(range(n_base))
    for i in range(n_base, len(y)):
        key = tuple(map(repr, X[i].tolist())) + (repr(y[i].item() if hasattr(y[i], "item") else y[i]),)
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return X[keep], y[keep], len(y) - len(keep)


# -- runs ------------------------------------------------------------------------------------------
def _stale_after(state: MLOpsState) -> float:
    return max(3 * HEARTBEAT_S, float(state.config.lease_ttl_s))


QUEUE_TTL_S = 6 * 3600.0  # a queued run nobody picks up frees the slot after this


def start(
    state: MLOpsState,
    name: str,
    *,
    trigger: str = "manual",
    reasons: list[str] | None = None,
    actor: str = "system",
    background: bool = True,
    promote: bool = True,
) -> dict[str, Any]:
    """Claim the retraining slot and run in this process (in a thread, or here): the CLI and the
    scheduler; the API hands runs off with `submit`. 409 while another run is active.

    `promote=False` registers the new version without promoting it (a reviewed promotion follows).
    """
    model_spec(state, name)
    runs.ensure_tables(state.engine)
    run_id = _claim(state, name, trigger=trigger, reasons=reasons, actor=actor, holder=None)["id"]
    if background:
        thread = threading.Thread(target=execute, args=(state, run_id), kwargs={"promote": promote}, name=f"mlops-retrain-{run_id}", daemon=True)
        state.extras.setdefault("retrain_threads", {})[run_id] = thread
        thread.start()
    else:
        execute(state, run_id, promote=promote)
    return get_run(state, run_id)


def submit(
    state: MLOpsState, name: str, *, trigger: str = "manual", reasons: list[str] | None = None, actor: str = "system"
) -> dict[str, Any]:
    """What the API does: claim the slot and hand the run to a runner outside this (web) process.

    With an app import path (`MLOPS_RETRAIN_APP`, else `FLASK_APP`, else the host module when
    it holds the app or a factory) a separate process runs `flask --app <path> mlops retrain
    --run-id N` (its output in `<MLOPS_LOG_DIR>/retrain/run-N.log`). Without one the run stays
    queued for `flask mlops retrain --run-queued` or the scheduler's `retrain_queue` job.
    Returns the run with `runner`: "process" or "queue". 409 while another run is active.
    """
    model_spec(state, name)
    runs.ensure_tables(state.engine)
    app_path = worker_app_path(state)
    run = _claim(state, name, trigger=trigger, reasons=reasons, actor=actor, holder=None if app_path else runs.QUEUE_HOLDER)
    runner = "queue"
    if app_path:
        try:
            _spawn(state, app_path, run["id"])
            runner = "process"
        except OSError as exc:  # cannot start a process here: leave it to the queue's runners
            logger.warning("could not start the retraining process for run %s: %s; queued", run["id"], exc)
            with state.session() as session, session.begin():
                row = session.get(runs.RetrainRun, run["id"])
                if row is not None:
                    row.holder = runs.QUEUE_HOLDER
    with state.session() as session, session.begin():
        runs.note(session, run["id"], f"queued for {'a separate process' if runner == 'process' else 'a runner: flask mlops retrain --run-queued or the scheduler'}")
    return {**get_run(state, run["id"]), "runner": runner}


def worker_app_path(state: MLOpsState) -> str | None:
    """The `flask --app` import path a separate retraining process can load this app from."""
    import importlib.util
    import os
    import sys

    from flask import current_app, has_app_context

    if state.config.retrain_app:
        return str(state.config.retrain_app)
    if os.environ.get("FLASK_APP"):
        return os.environ["FLASK_APP"]
    if not has_app_context():
        return None
    module_name = current_app.import_name
    module = sys.modules.get(module_name)
    if module is None or module_name == "__main__" or importlib.util.find_spec(module_name) is None:
        return None
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    holds_app = any(value is app for value in vars(module).values())
    has_factory = any(callable(getattr(module, f, None)) for f in ("create_app", "make_app"))
    return module_name if holds_app or has_factory else None


def _spawn(state: MLOpsState, app_path: str, run_id: int) -> None:
    import subprocess
    import sys

    folder = state.log_dir / "retrain"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"run-{run_id}.log", "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and CLI, no shell
            [sys.executable, "-m", "flask", "--app", app_path, "mlops", "retrain", "--run-id", str(run_id)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    # reaped by a daemon thread, so no zombie stays behind this worker (the run's state is in the database)
    threading.Thread(target=proc.wait, name=f"mlops-retrain-reaper-{run_id}", daemon=True).start()


def _claim(state: MLOpsState, name: str, *, trigger: str, reasons: list[str] | None, actor: str, holder: str | None) -> dict[str, Any]:
    with state.session() as session, session.begin():
        reaped = runs.reap_stale(session, _stale_after(state), queue_ttl_s=QUEUE_TTL_S)
        if reaped is not None:
            logger.warning("retrain run %s was abandoned (%s); marked failed", reaped.id, reaped.error)
    with state.session() as session:
        run = runs.claim(session, name, trigger=trigger, reasons=list(reasons or []), actor=actor, holder=holder)
        if run is None:
            active = runs.active_run(session)
            raise ConflictError(
                "a retraining run is already in progress; only one runs at a time",
                details={"run": active.to_dict() if active is not None else None},
            )
        return run.to_dict()


def run_queued(state: MLOpsState, run_id: int | None = None) -> dict[str, Any] | None:
    """Run the queued run (`run_id`, or the one waiting for a runner) here; None when there is none."""
    with state.session() as session:
        row = session.get(runs.RetrainRun, run_id) if run_id is not None else runs.active_run(session)
        if row is None:
            if run_id is not None:
                raise NotFoundError(f"no retraining run {run_id}", details={"run_id": run_id})
            return None
        if row.status != "queued":
            if run_id is not None:
                raise ConflictError(f"retraining run {row.id} is {row.status}, not queued", details={"run": row.to_dict()})
            return None
        found = row.id
    execute(state, found)
    return get_run(state, found)


def execute(state: MLOpsState, run_id: int, *, promote: bool = True) -> None:
    """The body of a run: data → train → register (+lineage, holdout) → gates → promote or reject."""
    from ..training import TrainingSettings, run_training

    with state.session() as session, session.begin():
        run = session.get(runs.RetrainRun, run_id)
        if run is None:
            raise NotFoundError(f"no retraining run {run_id}")
        if run.status != "queued" or run.slot is None:
            raise ConflictError(f"retraining run {run_id} is {run.status}, not queued", details={"run": run.to_dict()})
        name, trigger_name, actor = run.model_name, run.trigger, run.actor
        runs.note(session, run_id, "started", status="running")

    def say(message: str) -> None:
        with state.session() as session, session.begin():
            runs.note(session, run_id, message)

    done = threading.Event()

    def beat() -> None:
        while not done.wait(HEARTBEAT_S):
            try:
                runs.heartbeat(state.engine, run_id)
            except Exception:  # noqa: BLE001
                logger.debug("heartbeat of run %s failed", run_id, exc_info=True)

    threading.Thread(target=beat, name=f"mlops-retrain-beat-{run_id}", daemon=True).start()
    status, outcome, error, result = "failed", "failed", None, None
    try:
        X, y, data_info = training_data(state, name)
        say(f"training data: {data_info['rows']} rows ({data_info['base_rows']} base + {data_info['feedback_rows']} labelled feedback)")
        say(f"artifact store writable: {lifecycle.check_artifact_store(state)}")  # fail in seconds, not after the training
        trained = run_training(model_spec(state, name), X, y, TrainingSettings.from_config(state.config), progress=say)
        say(f"registering {trained.candidate}")
        holdout = (trained.X_holdout, trained.y_holdout) if trained.X_holdout is not None and trained.y_holdout is not None else None
        reg = lifecycle.register_result(
            state, name, trained, trigger=trigger_name, actor=actor, reason=f"retraining run {run_id} ({trigger_name})",
            holdout=holdout, extra_tags={"retrain_run": run_id}, promote_if_passing=promote, require_beat=True,
        )
        passed = reg["promoted"] or not promote  # not promoting by choice: the gates run at the reviewed promotion
        status = "succeeded" if passed else "rejected"
        outcome = ("promoted" if reg["promoted"] else "registered") if passed else "rejected"
        result = {
            **reg,
            "candidate": trained.candidate,
            "threshold": trained.threshold,
            "cv": trained.cv,
            "holdout": {k: v for k, v in trained.holdout.items()},
            "data": data_info,
            "comparison": trained.comparison,
        }
        say(f"v{reg['version']} ({reg['semver']}) " + (
            "promoted to production" if reg["promoted"] else "registered; promotion (through the gates) is left to a reviewed step" if passed else f"not promoted: {reg['reason']}"
        ))
    except Exception as exc:  # noqa: BLE001 - recorded on the run; production is untouched
        logger.exception("retraining run %s failed", run_id)
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
    finally:
        done.set()
        with state.session() as session, session.begin():
            run = session.get(runs.RetrainRun, run_id)
            if run is not None and run.slot is not None:
                runs.finish(session, run, status, result=jsonable(result) if result is not None else None, error=error)
        try:
            record_retrain(state, name, trigger_name, outcome)
        except Exception:  # noqa: BLE001 - metrics are best effort
            logger.debug("could not record retrain metric", exc_info=True)


def get_run(state: MLOpsState, run_id: int) -> dict[str, Any]:
    """A run as a dict; an abandoned active run is found stale and reported failed."""
    runs.ensure_tables(state.engine)
    with state.session() as session, session.begin():
        run = session.get(runs.RetrainRun, run_id)
        if run is None:
            raise NotFoundError(f"no retraining run {run_id}", details={"run_id": run_id})
        if run.slot is not None:
            runs.reap_stale(session, _stale_after(state), queue_ttl_s=QUEUE_TTL_S)
        return run.to_dict()


def list_runs(state: MLOpsState, *, model: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    runs.ensure_tables(state.engine)
    query = select(runs.RetrainRun).order_by(runs.RetrainRun.id.desc()).limit(limit)
    if model is not None:
        query = query.where(runs.RetrainRun.model_name == model)
    with state.session() as session:
        return [r.to_dict() for r in session.scalars(query)]


def retrain_if_due(
    state: MLOpsState, name: str, *, force: bool = False, actor: str = "system", background: bool = False,
    now: datetime | None = None, hand_off: bool = False,
) -> dict[str, Any]:
    """Check, then run when due (or forced). Returns {"check", "run"} (run None when not due).

    `hand_off` (the API): the run is `submit`ted to a runner outside this process.
    """
    result = check(state, name, now=now, manual=force)
    if not result.due:
        return {"check": result.to_dict(), "run": None}
    fired = [n for n, r in result.triggers.items() if r.fired]
    trig = "manual" if force else (fired[0] if fired else "manual")
    if hand_off:
        return {"check": result.to_dict(), "run": submit(state, name, trigger=trig, reasons=result.reasons, actor=actor)}
    run = start(state, name, trigger=trig, reasons=result.reasons, actor=actor, background=background)
    return {"check": result.to_dict(), "run": run}


def retrain_queue(state: MLOpsState) -> dict[str, Any]:
    """The scheduler's queue job: run the run the API queued (when no process could be started)."""
    done = run_queued(state)
    return {"run": None if done is None else {"id": done["id"], "status": done["status"]}}


def scheduled_check(state: MLOpsState) -> dict[str, Any]:
    """The scheduler's retrain job: for each declared model, retrain (here, synchronously) when due."""
    out: dict[str, Any] = {}
    for name in model_names(state):
        try:
            res = retrain_if_due(state, name, actor="scheduler", background=False)
            run = res["run"]
            out[name] = {"due": res["check"]["due"], "reasons": res["check"]["reasons"], "run": None if run is None else {"id": run["id"], "status": run["status"]}}
        except ConflictError as exc:
            out[name] = {"due": True, "skipped": exc.message}
    return out


def wait(state: MLOpsState, run_id: int, timeout: float | None = None) -> dict[str, Any]:
    """Join a background run started in this process (tests, CLI) and return it."""
    thread = state.extras.get("retrain_threads", {}).get(run_id)
    if thread is not None:
        thread.join(timeout)
    return get_run(state, run_id)
