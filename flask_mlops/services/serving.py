"""Serving: production (and A/B) versions held in memory per worker, hot-swapped on change.

Workers never import MLflow to serve: a version is loaded from the local artifact cache
after its sha256 is checked against the one recorded at registration, and a daemon thread
polls the tiny `mlops_aliases` table every `MLOPS_RELOAD_INTERVAL` seconds to swap in a
new production version. Swapping is one dict assignment, so no request sees a half state.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from flask import has_request_context, request
from sqlalchemy import select

from ..ab.assign import TREATMENT, Assigner
from ..errors import ModelIntegrityError, ModelNotReady, ModelUnavailable, NotFoundError, UnprocessableError, ValidationError
from ..jsonable import plain
from ..specs import ModelSpec, validate_row
from ..store import artifacts
from ..store.availability import is_unavailable
from ..store.availability import status as db_status
from ..store.base import utcnow
from ..store.experiments import RUNNING, Experiment
from ..store.fleet import Served
from ..store.models import PRODUCTION, Alias, ModelVersion
from ..tasks import BINARY, MULTICLASS, task_for
from .artifacts import cache_path
from .catalog import declared, model_spec, spec_with, stored_spec, version_spec
from .context import current_context
from .fleet import Reporter
from .inputs import ArrayInput, FrameInput, input_for
from .registry import fetch_artifact  # MLflow is imported inside, only when a file is missing
from .rowpath import compile_row, reference_rows, verify

if TYPE_CHECKING:
    from .state import MLOpsState

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class ServedModel:
    """One loaded version: the estimator plus what serving needs to turn scores into answers."""

    name: str
    version: int
    estimator: Any
    threshold: float | None
    sha256: str
    task: str  # the task kind: binary | multiclass | regression (tasks.py)
    classes: tuple[Any, ...] | None
    spec: ModelSpec | None = None  # the contract this version validates against
    adapter: ArrayInput | FrameInput | None = None  # ndarray or DataFrame, chosen at load time
    lean: Callable[[np.ndarray], float] | None = None  # binary: verified numpy path for one row (rowpath.py)

    def predict_one(self, values: list[Any]) -> tuple[Any, float | None]:
        """(prediction, probability) for one row: of the positive class (binary), of the
        predicted class (multi-class), None (regression or no probabilities)."""
        if self.lean is not None and all(type(v) is float and v == v for v in values):  # finite floats only
            proba = self.lean(np.array(values))
            classes = self.classes or (0, 1)
            return plain(classes[-1] if proba >= (0.5 if self.threshold is None else self.threshold) else classes[0]), proba
        if self.adapter is not None:
            x = self.adapter.one(values)
        else:
            x = np.asarray([values], dtype=float if all(isinstance(v, float) or v is None for v in values) else object)
        if self.task == MULTICLASS and hasattr(self.estimator, "predict_proba") and self.classes:
            row = np.asarray(self.estimator.predict_proba(x)[0], dtype=float)
            best = int(row.argmax())
            return plain(self.classes[best]), float(row[best])
        if self.task == BINARY and hasattr(self.estimator, "predict_proba"):
            proba = float(self.estimator.predict_proba(x)[0, -1])
            cut = 0.5 if self.threshold is None else self.threshold
            classes = self.classes or (0, 1)
            label = classes[-1] if proba >= cut else classes[0]
            return plain(label), proba
        return plain(self.estimator.predict(x)[0]), None


@dataclass(frozen=True)
class Prediction:
    prediction: Any
    probability: float | None
    model: str
    version: int
    variant: str | None = None
    prediction_id: str | None = None
    unit_id: str | None = None
    experiment: int | None = None
    assignment: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Route:
    """Where a request goes: a version (None = production) and, in an experiment, its variant."""

    version: int | None = None
    variant: str | None = None
    experiment: int | None = None
    assignment: str | None = None
    unit_id: str | None = None  # the unit assigned (from the caller or the router's unit_key)


@dataclass(frozen=True)
class ActiveExperiment:
    """A running experiment as the router holds it: versions of each arm and its assigner."""

    id: int
    control: int
    treatment: int
    assigner: Assigner


def unit_key_reader(setting: str) -> Callable[[], str | None]:
    """The unit of assignment of the current request, read where `MLOPS_UNIT_KEY` says:
    `body:<field>` (JSON body), `header:<Name>` or `query:<name>`; None (random
    assignment) when the request has none."""
    source, _, key = setting.partition(":")

    def read() -> str | None:
        if not has_request_context():
            return None
        if source == "body":
            try:
                body = request.get_json(silent=True)
            except RecursionError:  # nested beyond Python's json: no unit key in it
                body = None
            value = body.get(key) if isinstance(body, dict) else None
        elif source == "header":
            value = request.headers.get(key)
        else:
            value = request.args.get(key)
        return _unit_text(value)

    return read


def _unit_text(value: Any) -> str | None:
    if value is None or isinstance(value, (bool, dict, list)):
        return None
    return str(value)


class Router:
    """Routes a unit to a version: production, or an arm of the model's running experiment.

    `refresh()` (run by the reload loop every `MLOPS_RELOAD_INTERVAL`) re-reads the running
    experiments and swaps the whole mapping in one assignment; assignment itself is a keyed
    hash (ab/assign.py), so every worker and host routes a unit the same way with no shared
    state. `unit_key` (a callable reading `MLOPS_UNIT_KEY`) names the unit when the caller
    passes no `unit_id`; hosts may replace it.
    """

    def __init__(self, state: MLOpsState) -> None:
        self._state = state
        self._active: dict[str, ActiveExperiment] = {}
        self.unit_key: Callable[[], str | None] = unit_key_reader(state.config.unit_key)

    def route(self, name: str, unit_id: str | None) -> Route:
        exp = self._active.get(name)
        if exp is None:
            return Route()
        if unit_id is None:
            unit_id = self.unit_key()
        chosen = exp.assigner.assign(unit_id)
        version = exp.treatment if chosen.variant == TREATMENT else exp.control
        return Route(version, chosen.variant, exp.id, chosen.assignment, unit_id)

    def active(self) -> dict[str, ActiveExperiment]:
        return dict(self._active)

    def versions_needed(self) -> dict[str, set[int]]:
        """Versions besides production that must be held in memory (A/B arms)."""
        return {name: {exp.control, exp.treatment} for name, exp in self._active.items()}

    def refresh(self) -> None:
        """Re-read the running experiments from the database (called by the reload loop)."""
        with self._state.session() as session:
            rows = session.execute(
                select(
                    Experiment.id, Experiment.model_name, Experiment.control_version,
                    Experiment.treatment_version, Experiment.share, Experiment.salt,
                ).where(Experiment.status == RUNNING)
            ).all()
        active: dict[str, ActiveExperiment] = {}
        for exp_id, name, control, treatment, share, salt in rows:
            current = self._active.get(name)
            if current is not None and current.id == exp_id and current.assigner.share == share:
                active[name] = current
            else:
                active[name] = ActiveExperiment(exp_id, control, treatment, Assigner(salt, share))
        if active.keys() != self._active.keys() or any(active[n] is not self._active[n] for n in active):
            logger.info("experiment routing: %s", {n: (e.id, e.assigner.share) for n, e in active.items()})
        self._active = active


def load_version(state: MLOpsState, name: str, version: int) -> ServedModel:
    """Load a registered version from the local cache (fetched from the registry if absent).

    The artifact's bytes are read once, their sha256 compared with the one recorded at
    registration, and those same bytes unpickled (store/artifacts.py). A cached copy that
    fails the check is removed and fetched again from the registry; if the registry's copy
    fails too, nothing is unpickled: ModelIntegrityError. Messages carry no file paths.
    """
    with state.session() as session:
        row = session.scalar(select(ModelVersion).where(ModelVersion.model_name == name, ModelVersion.version == version))
    if row is None:
        raise NotFoundError(f"model {name!r} has no version {version}", details={"model": name, "version": version})
    path = cache_path(state, name, version)
    data = artifacts.read_checked(path, row.sha256)
    if data is None:
        try:
            fetch_artifact(state, row, path)
        except Exception as exc:
            raise ModelUnavailable(
                f"{name} v{version}: the artifact is not in the local cache and could not be fetched from the registry "
                f"({type(exc).__name__})",
                details={"model": name, "version": version},
            ) from exc
        data = artifacts.read_checked(path, row.sha256)
        if data is None:
            raise ModelIntegrityError(
                f"refusing to load {name} v{version}: the registry's artifact does not match the sha256 recorded at "
                f"registration ({row.sha256[:12]}…)",
                details={"model": name, "version": version},
            )
    estimator = artifacts.unpickle(path, data)
    recorded = (row.tags or {}).get("task")
    spec = version_spec(state, name, version)
    return _served(state, name, version, estimator, row.threshold, row.sha256, spec,
                   str(recorded) if recorded is not None else None, (row.spec or {}).get("input"), row)


def load_cached(state: MLOpsState, pointer: artifacts.Pointer) -> ServedModel:
    """The last known production version from the verified cache alone (database unreachable)."""
    name, version = pointer.model, pointer.version
    path = cache_path(state, name, version)
    data = artifacts.read_checked(path, pointer.sha256)
    spec = spec_with(state, name, pointer.spec)
    if data is None or spec is None:
        raise ModelUnavailable(f"{name} v{version} is not in the local cache", details={"model": name, "version": version})
    return _served(state, name, version, artifacts.unpickle(path, data), pointer.threshold, pointer.sha256, spec,
                   pointer.task, (pointer.spec or {}).get("input"))


def _served(
    state: MLOpsState, name: str, version: int, estimator: Any, threshold: float | None, sha256: str, spec: ModelSpec,
    recorded_task: str | None, input_info: dict[str, Any] | None, row: ModelVersion | None = None,
) -> ServedModel:
    """The served form; the lean single-row path only with the version's row (its reference profile)."""
    classes = getattr(estimator, "classes_", None)
    task = task_for(spec.task, classes, recorded=recorded_task).kind
    adapter = input_for(estimator, spec, input_info)
    return ServedModel(
        name=name,
        version=version,
        estimator=estimator,
        threshold=threshold,
        sha256=sha256,
        task=task,
        classes=None if classes is None else tuple(plain(c) for c in classes),
        spec=spec,
        adapter=adapter,
        lean=lean_path(estimator, row, spec, task, adapter) if row is not None else None,
    )


def lean_path(estimator: Any, row: ModelVersion, spec: ModelSpec, task: str, adapter: Any) -> Callable[[np.ndarray], float] | None:
    """The verified single-row numpy path of a binary classifier, or None (the reason logged)."""
    label = f"{row.model_name} v{row.version}"
    if task != BINARY or not isinstance(adapter, ArrayInput) or not adapter.numeric:
        return None
    run, why = compile_row(estimator)
    if run is not None:
        rows = reference_rows(json.loads(row.profile) if row.profile else None, spec.feature_names)
        if rows is None:
            why = "no numeric reference profile to check it against"
        else:
            try:
                why = verify(run, estimator, rows, 0.5 if row.threshold is None else row.threshold)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the original estimator
                why = f"check failed: {type(exc).__name__}: {exc}"
    if why:
        logger.info("%s: serving through the estimator's own predict_proba (no lean path: %s)", label, why)
        return None
    logger.info("%s: serving single rows through the lean numpy path (checked equal on the reference rows)", label)
    return run


@dataclass(frozen=True)
class _Failure:
    """A version that could not load: not tried again until its cached file changes or a while passes."""

    reason: str
    stamp: tuple[int, int, int] | None
    at: float


#: a version that failed to load is tried again after this many seconds (or when its file changes)
FAILED_RETRY_S = 60.0


class ModelStore:
    """Per-app, per-process cache of loaded versions and the production pointer."""

    def __init__(self, state: MLOpsState) -> None:
        self._state = state
        self._loaded: dict[tuple[str, int], ServedModel] = {}
        self._production: dict[str, int] = {}
        self._failed: dict[tuple[str, int], _Failure] = {}
        self._lock = threading.Lock()
        self._watcher_pid = 0
        self._tried = 0.0
        self.last_refresh: float = 0.0
        self.last_error: str | None = None
        self.load_errors: dict[str, str] = {}  # model -> why its production version could not be loaded here
        self._wanted: dict[str, int] = {}  # the production pointers as last read
        self._since: dict[str, datetime] = {}  # model -> when this worker started serving its version
        self.fleet = Reporter(state)
        #: models served from the cache's production pointer (database unreachable since boot)
        self.from_cache: set[str] = set()

    # -- request path ------------------------------------------------------------
    def production(self, name: str) -> ServedModel:
        self._ensure_watcher()
        version = self._production.get(name)
        if version is None:
            if not self.last_refresh and time.monotonic() - self._tried > 1.0:
                with contextlib.suppress(Exception):  # database away: the cache fallback ran
                    self.refresh()
                version = self._production.get(name)
            if version is None:
                if any(key[0] == name for key in self._failed):
                    raise ModelUnavailable(f"model {name!r} cannot be served right now", details={"model": name})
                if declared(self._state, name) is None and stored_spec(self._state, name) is None:
                    model_spec(self._state, name)  # raises UnknownModelError listing the known models
                raise ModelNotReady(
                    f"model {name!r} has no production version yet; train one with "
                    f"`flask mlops train --name {name}` or register one with mlops.register()",
                    details={"model": name},
                )
        return self._loaded[(name, version)]

    def get(self, name: str, version: int | None = None) -> ServedModel:
        if version is None:
            return self.production(name)
        self._ensure_watcher()
        served = self._loaded.get((name, version))
        if served is None:
            with self._lock:
                served = self._loaded.get((name, version)) or self._load(name, version)
                self._loaded[(name, version)] = served
        return served

    def check(self, name: str, version: int) -> ServedModel:
        """Load `version` now or refuse it (422 naming it): before it may take traffic."""
        try:
            return self.get(name, version)
        except (ModelUnavailable, ModelIntegrityError) as exc:
            failure = self._failed.get((name, version))
            raise UnprocessableError(
                f"{name} v{version} cannot be loaded: {failure.reason if failure else exc.message}",
                code="model_not_loadable",
                details={"model": name, "version": version},
            ) from exc

    def _load(self, name: str, version: int) -> ServedModel:
        """load_version, remembering a failure: no re-read per request until the file changes."""
        key = (name, version)
        path = cache_path(self._state, name, version)
        failure = self._failed.get(key)
        if failure is not None and failure.stamp == artifacts.stamp(path) and time.monotonic() - failure.at < FAILED_RETRY_S:
            raise ModelUnavailable(f"model {name!r} version {version} cannot be served right now", details={"model": name, "version": version})
        try:
            served = load_version(self._state, name, version)
        except NotFoundError:
            raise
        except Exception as exc:  # missing, tampered, or not unpicklable here: remembered, not retried per request
            if is_unavailable(exc):
                raise
            reason = exc.message if isinstance(exc, (ModelUnavailable, ModelIntegrityError)) else f"cannot unpickle ({type(exc).__name__})"
            self._failed[key] = _Failure(reason, artifacts.stamp(path), time.monotonic())
            self.last_error = f"{name} v{version}: {reason}"
            logger.error("could not load %s v%s: %s", name, version, reason)
            raise ModelUnavailable(f"model {name!r} version {version} cannot be served right now", details={"model": name, "version": version}) from exc
        self._failed.pop(key, None)
        return served

    def production_versions(self) -> dict[str, int]:
        return dict(self._production)

    def failures(self) -> dict[str, str]:
        """`name vN` -> why it could not load (for health and operators; no paths)."""
        return {f"{n} v{v}": f.reason for (n, v), f in self._failed.items()}

    # -- reload loop -------------------------------------------------------------
    def refresh(self) -> dict[str, int]:
        """Read the aliases; load and swap in any production version that changed.

        A version that fails to load (integrity error, missing artifact) is not swapped in:
        the worker keeps serving the version it had and records the error. With the
        database unreachable, a model not served yet is loaded from the cache's production
        pointer, and the database error is raised to the caller.
        """
        state = self._state
        self._tried = time.monotonic()
        try:
            with state.session() as session:
                rows = dict(session.execute(select(Alias.model_name, Alias.version).where(Alias.alias == PRODUCTION)).all())
            state.router.refresh()
        except Exception as exc:
            if is_unavailable(exc):
                db_status(state).failed(exc)
                self._serve_from_cache()
            raise
        db_status(state).ok()
        needed = set(rows.items())
        for name, versions in state.router.versions_needed().items():
            needed.update((name, v) for v in versions)
        with self._lock:
            loaded = dict(self._loaded)
            for key in sorted(needed - loaded.keys()):
                try:
                    loaded[key] = self._load(*key)
                except (ModelUnavailable, NotFoundError) as exc:  # remembered in _failed
                    if rows.get(key[0]) == key[1]:
                        failure = self._failed.get(key)
                        self.load_errors[key[0]] = f"v{key[1]}: {failure.reason if failure is not None else exc}"
            production = {n: v for n, v in rows.items() if (n, v) in loaded}
            for name, version in self._production.items():
                if name in rows and name not in production:
                    production[name] = version  # new one failed: keep serving the old
            changed = {n: v for n, v in production.items() if self._production.get(n) != v}
            keep = needed | set(production.items())
            self._loaded = {k: m for k, m in loaded.items() if k in keep}
            self._production = production
            self._wanted = rows
            for name in list(self.load_errors):
                if production.get(name) == rows.get(name):
                    del self.load_errors[name]
            for name in changed:
                self._since[name] = utcnow()
            self.from_cache.clear()
        for name, version in production.items():  # what a worker booting without the database will serve
            served = self._loaded[(name, version)]
            pointer = artifacts.Pointer(name, version, served.sha256, served.threshold, served.task, stored_spec(state, name, version))
            artifacts.write_pointer(state.config.model_cache_dir, pointer)
        if changed:
            logger.info("serving new production versions: %s", changed)
        self.last_refresh = time.time()
        self.report(force=bool(changed))
        return changed

    def report(self, *, force: bool = False) -> bool:
        """Tell the fleet table what this worker serves (a heartbeat at most once per reload interval)."""
        names = sorted(set(self._wanted) | set(self._production) | set(self.load_errors))
        served = [
            Served(n, self._production.get(n), self._wanted.get(n), self._since.get(n), self.load_errors.get(n)) for n in names
        ]
        return self.fleet.report(served, force=force)
    def _serve_from_cache(self) -> None:
        """Database unreachable: serve each model that has no version yet from its cache pointer."""
        state = self._state
        with self._lock:
            for name in state.config.model_names:
                if name in self._production:
                    continue
                pointer = artifacts.read_pointer(state.config.model_cache_dir, name)
                if pointer is None:
                    continue
                try:
                    served = load_cached(state, pointer)
                except Exception as exc:
                    logger.error("could not serve %s v%s from the local cache: %s", name, pointer.version, exc)
                    continue
                self._loaded = {**self._loaded, (name, pointer.version): served}
                self._production = {**self._production, name: pointer.version}
                self.from_cache.add(name)
                self._since[name] = utcnow()
                logger.warning("database unreachable: serving %s v%s from the local cache", name, pointer.version)

    def start_watcher(self) -> None:
        """Start this process's reload loop now (gunicorn's post_worker_init), so an idle worker
        also follows promotions and reports to the fleet table, not only after its first request."""
        self._ensure_watcher()

    def _ensure_watcher(self) -> None:
        interval = self._state.config.reload_interval
        if interval <= 0 or self._watcher_pid == os.getpid():
            return
        with self._lock:
            if self._watcher_pid == os.getpid():
                return
            self._watcher_pid = os.getpid()
        if time.time() - self.last_refresh > interval:
            # an idle worker's state (production, experiments) may be older than one interval:
            # catch up before serving its first request, then keep up in the background
            try:
                self.refresh()
            except Exception as exc:  # database briefly away: serve what we have
                logger.warning("model reload check failed: %s", exc)
        thread = threading.Thread(target=self._watch, args=(interval,), name="mlops-model-reload", daemon=True)
        thread.start()

    def _watch(self, interval: float) -> None:
        pid = os.getpid()
        while self._watcher_pid == pid:
            time.sleep(interval)
            try:
                self.refresh()
                self.last_error = None
            except Exception as exc:  # database briefly away: keep serving, retry next tick
                self.last_error = str(exc)
                logger.warning("model reload check failed: %s", exc)


_ids = random.Random()  # private: a host's random.seed() must not make ids repeat
os.register_at_fork(after_in_child=_ids.seed)  # every worker its own sequence


def new_prediction_id() -> str:
    """A random (version 4) UUID as 32 hex digits; ~10x cheaper than uuid.uuid4() here."""
    bits = _ids.getrandbits(128) & ~(0xF000 << 64) | (0x4000 << 64)
    bits = bits & ~(0xC000 << 48) | (0x8000 << 48)
    return f"{bits:032x}"


def _split_unit(state: MLOpsState, spec: ModelSpec, features: Mapping[str, Any]) -> tuple[Mapping[str, Any], str | None]:
    """Take the unit id out of the body (`MLOPS_UNIT_KEY=body:<field>`) unless it is a feature."""
    source, _, key = state.config.unit_key.partition(":")
    if source != "body" or not isinstance(features, Mapping) or key not in features or key in spec.feature_names:
        return features, None
    value = features[key]
    if value is not None and _unit_text(value) is None:
        raise ValidationError(
            f"{key} (the unit key, MLOPS_UNIT_KEY) must be a string or a number", details={"fields": {key: "invalid"}}
        )
    return {k: v for k, v in features.items() if k != key}, _unit_text(value)


def predict(state: MLOpsState, name: str, features: Mapping[str, Any], *, unit_id: str | None = None) -> Prediction:
    """Validate one row, route it, predict, and hand the result to the tracking context.

    A declared model validates against its declaration; an undeclared one against the spec
    stored with its production version (the routed version's, when an experiment differs).
    """
    spec = declared(state, name) or state.models.get(name).spec
    if spec is None:  # pragma: no cover - load_version always sets it
        raise ModelNotReady(f"model {name!r} has no input spec", details={"model": name})
    ctx = current_context(name)
    features, body_unit = _split_unit(state, spec, features)
    row = validate_row(spec, features)
    state.models._ensure_watcher()  # routing state is current before the first route in a worker
    route = state.router.route(name, unit_id if unit_id is not None else body_unit)
    unit_id = route.unit_id if route.unit_id is not None else unit_id if unit_id is not None else body_unit
    served = state.models.get(name, route.version)
    if served.spec is not None and served.spec.feature_names != spec.feature_names:
        spec, row = served.spec, validate_row(served.spec, features)
    try:
        label, proba = served.predict_one([row[f] for f in spec.feature_names])
    except Exception:
        if ctx is not None:  # the failure counts against the version/variant that served it
            ctx.observe(
                Prediction(None, None, name, served.version, route.variant, ctx.prediction_id, unit_id, route.experiment, route.assignment),
                row,
            )
        raise
    result = Prediction(
        prediction=label,
        probability=proba,
        model=name,
        version=served.version,
        variant=route.variant,
        prediction_id=ctx.prediction_id if ctx is not None else new_prediction_id(),
        unit_id=unit_id,
        experiment=route.experiment,
        assignment=route.assignment,
    )
    if ctx is not None:
        ctx.observe(result, row)
    return result
