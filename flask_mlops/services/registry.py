"""Model registry on MLflow, mirrored in the `mlops` tables that workers poll.

MLflow holds runs, artifacts, versions and aliases (what MLflow users expect to see).
The `mlops` database holds what MLflow cannot answer cheaply or at all: the sha256 of
each serving artifact, the production pointer every worker polls, and the audit trail
("which version served at time T"). Writes go to MLflow first, then to the database in
one transaction, so a crash leaves at worst an unused MLflow version, never a worker
pointed at something unverified.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from ..errors import ArtifactStoreUnavailable, MLOpsError, NotFoundError, ValidationError
from ..jsonable import jsonable
from ..monitoring.profile import build_profile, profile_to_json
from ..specs import ModelSpec, estimator_classes, infer_spec, spec_to_dict
from ..store.models import PRODUCTION, Alias, AuditEvent, ModelVersion
from ..tasks import infer_kind
from .artifacts import cache_path, file_sha256
from .catalog import declared, model_spec, stored_spec
from .inputs import ArrayInput, FrameInput, frame_input_info, input_for

if TYPE_CHECKING:
    from .state import MLOpsState

logger = logging.getLogger(__name__)

SERVING_ARTIFACT = "serving/model.joblib"
_MLFLOW_LOCK = threading.RLock()  # MLflow's tracking URI is process-global


@dataclass(frozen=True)
class VersionInfo:
    model: str
    version: int
    run_id: str | None
    sha256: str
    threshold: float | None
    metrics: dict[str, Any]
    status: str
    aliases: tuple[str, ...] = ()
    created_at: str | None = None
    semver: str | None = None
    tags: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@contextmanager
def mlflow_session(state: MLOpsState) -> Iterator[Any]:
    """The `mlflow` module pointed at this app's tracking/registry URI (and back after)."""
    import mlflow

    with _MLFLOW_LOCK:
        previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
        mlflow.set_tracking_uri(state.config.tracking_uri)
        mlflow.set_registry_uri(state.config.tracking_uri)
        try:
            yield mlflow
        finally:
            if previous is not None:
                mlflow.set_tracking_uri(previous)


_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # two letters or more: `C:\\` is a Windows drive, not a scheme


def artifact_location(root: str) -> str:
    """An artifact root as MLflow takes it: a URI (``s3://``, ``gs://``, ``mlflow-artifacts:/``,
    ``file:``) as given, a local folder as an absolute ``file:`` URI."""
    return root if _URI_SCHEME.match(root) else Path(root).resolve().as_uri()


def _experiment_id(mlflow: Any, state: MLOpsState) -> str:
    name = state.config.experiment_name
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    return str(mlflow.create_experiment(name, artifact_location=artifact_location(state.config.artifact_root or "mlartifacts")))


def check_artifact_store(state: MLOpsState) -> str:
    """Write, list and delete a small probe where new versions' artifacts go; return that location.

    Called before training, so an unreachable or read-only store (a wrong bucket, an MLflow
    server that does not serve artifacts, missing credentials) fails in seconds with the
    location named, not after the whole training has run.
    """
    import uuid

    location = "?"
    try:
        with mlflow_session(state) as mlflow, tempfile.TemporaryDirectory(prefix="mlops-probe-") as tmp:
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

            location = str(mlflow.get_experiment(_experiment_id(mlflow, state)).artifact_location)
            probe = Path(tmp) / "probe.txt"
            probe.write_text("flask-mlops artifact store check\n")
            repo = get_artifact_repository(f"{location.rstrip('/')}/_mlops_probe/{uuid.uuid4().hex}")
            repo.log_artifact(str(probe))
            if "probe.txt" not in {Path(f.path).name for f in repo.list_artifacts()}:
                raise OSError("the probe was written but cannot be listed back")
            try:
                repo.delete_artifacts()
            except Exception as exc:  # some stores (and servers) refuse deletes: the probe stays, harmless
                logger.debug("could not delete the artifact probe at %s: %s", location, exc)
    except Exception as exc:
        raise ArtifactStoreUnavailable(
            f"the MLflow artifact store {location} (experiment {state.config.experiment_name!r}, tracking "
            f"{state.config.tracking_uri}) cannot be written from this host: {type(exc).__name__}: {exc}. "
            "Check MLOPS_ARTIFACT_ROOT, the server's --serve-artifacts / --artifacts-destination and the credentials.",
            details={"artifact_location": location},
        ) from exc
    remote = state.config.tracking_uri.lower().startswith(("http://", "https://"))
    if remote and location.startswith("file:"):
        logger.warning(
            "experiment %r keeps artifacts in %s, a folder on this host, while MLflow is a server: other hosts "
            "cannot load its versions unless that folder is shared; new experiments use the server's store",
            state.config.experiment_name, location,
        )
    return location


def _as_matrix(spec: ModelSpec, data: Any) -> np.ndarray:
    """Rows in spec feature order from a DataFrame, a mapping of columns or an array."""
    features = spec.feature_names
    if hasattr(data, "columns"):
        by_name = {str(c): c for c in data.columns}
        missing = [f for f in features if f not in by_name]
        if missing:
            raise ValidationError(f"the reference data lacks the model's features: {', '.join(missing)}", details={"missing": missing})
        return np.asarray(data[[by_name[f] for f in features]].to_numpy())
    if isinstance(data, Mapping):
        return np.column_stack([np.asarray(data[f]) for f in features])
    matrix = np.asarray(data)
    if matrix.ndim != 2 or matrix.shape[1] != len(features):
        raise ValidationError(f"reference data must have {len(features)} columns ({', '.join(features)})")
    return matrix


def _model_input(adapter: ArrayInput | FrameInput, spec: ModelSpec, reference: Any) -> Any:
    """The reference rows the way serving feeds the estimator (a frame keeps its own dtypes)."""
    if isinstance(adapter, FrameInput) and hasattr(reference, "columns"):
        by_name = {str(c): c for c in reference.columns}
        frame = reference[[by_name[c] for c in adapter.columns]]
        frame.columns = adapter.columns
        return frame
    return adapter.many(_as_matrix(spec, reference))


def reference_profile(state: MLOpsState, spec: ModelSpec, estimator: Any, reference: Any, adapter: ArrayInput | FrameInput | None = None) -> str:
    """The drift reference profile (JSON) of the training data and the model's scores on it."""
    matrix = _as_matrix(spec, reference)
    columns = {f: matrix[:, i] for i, f in enumerate(spec.feature_names)}
    adapter = adapter or input_for(estimator, spec)
    X = _model_input(adapter, spec, reference)
    scores = None
    kind = infer_kind(spec.task, getattr(estimator, "classes_", None))
    if kind != "regression" and hasattr(estimator, "predict_proba"):
        proba = np.asarray(estimator.predict_proba(X))
        scores = proba.max(axis=1) if kind == "multiclass" else proba[:, -1]  # what serving logs as probability
    elif hasattr(estimator, "predict"):
        scores = np.asarray(estimator.predict(X), dtype=float if kind == "regression" else object)
    return str(profile_to_json(build_profile(columns, spec, predictions=scores, seed=state.config.random_seed)))


def resolve_spec(state: MLOpsState, name: str, estimator: Any, reference: Any, *, features: Any = None, task: str | None = None) -> ModelSpec:
    """The contract of a new version: the declaration when `name` is declared; else inferred
    from a `reference` that names its columns (a DataFrame, `features=`, an estimator fitted on
    a frame), so a new version may change the features; else, for bare rows (retraining), the
    spec stored with the model's versions. Classes come from the estimator."""
    spec = declared(state, name)
    says_names = features is not None or hasattr(reference, "columns") or getattr(estimator, "feature_names_in_", None) is not None
    if spec is None and not says_names and stored_spec(state, name) is not None:
        spec = model_spec(state, name)  # rows without names (retraining): the model's stored contract
    if spec is None:
        if reference is None:
            raise ValidationError(
                f"model {name!r} is not declared in MLOPS_MODELS: pass reference= (a DataFrame of the rows it was "
                "trained on) so its features can be inferred, or declare it",
                details={"model": name},
            )
        return infer_spec(name, reference, estimator, features=features, task=task)
    classes = estimator_classes(estimator)
    return dataclasses.replace(spec, classes=classes) if classes is not None else spec


def register(
    state: MLOpsState,
    name: str,
    estimator: Any,
    *,
    reference: Any = None,
    metrics: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    threshold: float | None = None,
    tags: Mapping[str, Any] | None = None,
    artifacts: Mapping[str, str | Path] | None = None,
    semver: str | None = None,
    features: Any = None,
    task: str | None = None,
    actor: str = "system",
    reason: str | None = None,
) -> VersionInfo:
    """Register a fitted estimator as a new version of `name`.

    `name` is declared in `MLOPS_MODELS`, or not: then its spec (features, numeric or
    categorical, categories, task, classes) is inferred from `reference` (a DataFrame, or
    an array with `features=[names]`) and stored with the version. Logs params, metrics,
    artifacts and the model (MLflow sklearn flavor, with signature and input example when
    `reference` is given) to one MLflow run, registers the version and records the serving
    artifact's sha256. Production does not move: `lifecycle.register_model(..., promote=True)`
    (what `mlops.register` calls) promotes through the gates.
    """
    import joblib

    if not isinstance(name, str) or not name or not name.replace("-", "_").replace(".", "_").isidentifier():
        raise ValidationError(f"model name must be a non-empty identifier-like string, got {name!r}")
    name = str.__str__(name)
    spec = resolve_spec(state, name, estimator, reference, features=features, task=task)
    adapter = input_for(estimator, spec)
    frame_info = frame_input_info(estimator, reference, spec)
    if frame_info is not None:
        adapter = input_for(estimator, spec, frame_info)
    profile = reference_profile(state, spec, estimator, reference, adapter) if reference is not None else None
    stored_spec = {**spec_to_dict(spec), **({"input": frame_info} if frame_info is not None else {})}
    # the task kind travels with the version (binary vs multi-class is a property of the model)
    tags = {"task": infer_kind(spec.task, getattr(estimator, "classes_", None)), **(tags or {})}
    numeric = {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    with tempfile.TemporaryDirectory(prefix="mlops-register-") as tmp:
        local = Path(tmp) / "model.joblib"
        joblib.dump(estimator, local)
        sha256 = file_sha256(local)
        with mlflow_session(state) as mlflow:
            from mlflow.models import infer_signature

            experiment_id = _experiment_id(mlflow, state)
            with mlflow.start_run(experiment_id=experiment_id, run_name=f"{name}-register") as run:
                mlflow.set_tags({"mlops.model": name, "mlops.sha256": sha256, **{k: str(v) for k, v in (tags or {}).items()}})
                if params:
                    mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
                if numeric:
                    mlflow.log_metrics(numeric)
                mlflow.log_artifact(str(local), artifact_path="serving")
                for artifact in (artifacts or {}).values():
                    mlflow.log_artifact(str(artifact), artifact_path="reports")
                if profile is not None:
                    mlflow.log_text(profile, "reports/reference_profile.json")
                signature = example = None
                if reference is not None:
                    # rows as serving passes them: a frame of the training columns, or a matrix in
                    # spec order (names: the mlops.features tag)
                    example = _model_input(adapter, spec, reference)[:5]
                    output = estimator.predict_proba(example) if hasattr(estimator, "predict_proba") else estimator.predict(example)
                    signature = infer_signature(example, output)
                mlflow.set_tag("mlops.features", ",".join(spec.feature_names))
                mlflow.log_dict(stored_spec, "serving/spec.json")
                info = mlflow.sklearn.log_model(
                    estimator,
                    name="model",
                    signature=signature,
                    input_example=example,
                    registered_model_name=name,
                    skops_trusted_types=_skops_trusted_types(estimator),
                    pip_requirements=_requirements(),
                )
                version = int(info.registered_model_version)
                run_id = run.info.run_id
            client = mlflow.MlflowClient()
            client.set_model_version_tag(name, str(version), "mlops.sha256", sha256)
            if threshold is not None:
                client.set_model_version_tag(name, str(version), "mlops.threshold", str(threshold))
        dest = cache_path(state, name, version)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, dest)
    with state.session() as session, session.begin():
        row = ModelVersion(
            model_name=name,
            version=version,
            model_uri=f"models:/{name}/{version}",
            run_id=run_id,
            sha256=sha256,
            threshold=threshold,
            semver=semver,
            metrics=jsonable(metrics or {}),
            params=jsonable(params or {}),
            tags=jsonable(tags or {}),
            profile=profile,
            spec=jsonable(stored_spec),
        )
        session.add(row)
        session.add(AuditEvent(model_name=name, action="register", version=version, actor=actor, reason=reason, details={"sha256": sha256, "run_id": run_id}))
    logger.info("registered %s v%s (sha256 %s…)", name, version, sha256[:12])
    return get_version(state, name, version)


def _skops_trusted_types(estimator: Any) -> list[str]:
    """Our own classes (and the candidates' libraries) for MLflow's skops format (added by training)."""
    from ..training.model import skops_trusted_types

    return skops_trusted_types(estimator)


def _requirements() -> list[str]:
    """Pinned requirements of the serving environment (skips MLflow's slow inference)."""
    pins = []
    for dist in ("flask-mlops", "scikit-learn", "numpy", "scipy", "xgboost", "xgboost-cpu", "joblib", "cloudpickle"):
        try:
            pins.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            continue
    return pins


def set_alias(
    state: MLOpsState,
    name: str,
    alias: str,
    version: int,
    *,
    actor: str = "system",
    reason: str | None = None,
    action: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> int | None:
    """Point `alias` at `version` in MLflow and in the database (with an audit event).

    Returns the version the alias pointed at before (None if it was unset).
    """
    with state.session() as session:
        exists = session.scalar(select(ModelVersion.id).where(ModelVersion.model_name == name, ModelVersion.version == version))
    if exists is None:
        raise NotFoundError(f"model {name!r} has no version {version}", details={"model": name, "version": version})
    if alias == PRODUCTION:
        state.models.check(name, version)  # a version that cannot load is refused (422), never served
    with mlflow_session(state) as mlflow:
        mlflow.MlflowClient().set_registered_model_alias(name, alias, str(version))
    with state.session() as session, session.begin():
        current = session.get(Alias, (name, alias), with_for_update=True)
        previous = current.version if current is not None else None
        if current is None:
            session.add(Alias(model_name=name, alias=alias, version=version))
        else:
            current.version = version
        session.add(
            AuditEvent(
                model_name=name,
                action=action or f"set_alias:{alias}",
                version=version,
                previous_version=previous,
                actor=actor,
                reason=reason,
                details={"alias": alias, **(details or {})},
            )
        )
    if alias == PRODUCTION:
        state.models.refresh()  # this process serves it now; other workers within the reload interval
    return previous


def fetch_artifact(state: MLOpsState, row: ModelVersion, dest: Path) -> None:
    """Copy a version's serving artifact from the MLflow artifact store into the local cache."""
    if row.run_id is None:
        raise MLOpsError(f"{row.model_name} v{row.version} has no MLflow run to fetch its artifact from")
    with mlflow_session(state) as mlflow, tempfile.TemporaryDirectory(prefix="mlops-fetch-") as tmp:
        local = mlflow.artifacts.download_artifacts(run_id=row.run_id, artifact_path=SERVING_ARTIFACT, dst_path=tmp)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        shutil.copyfile(local, partial)
        os.replace(partial, dest)  # readers see the old file or the whole new one


def _info(row: ModelVersion, aliases: Mapping[int, list[str]]) -> VersionInfo:
    return VersionInfo(
        model=row.model_name,
        version=row.version,
        run_id=row.run_id,
        sha256=row.sha256,
        threshold=row.threshold,
        metrics=dict(row.metrics or {}),
        status=row.status,
        aliases=tuple(sorted(aliases.get(row.version, []))),
        created_at=row.created_at.isoformat() if row.created_at else None,
        semver=row.semver,
        tags=dict(row.tags or {}),
    )


def list_versions(state: MLOpsState, name: str) -> list[VersionInfo]:
    """Every registered version of `name`, newest first, with its aliases."""
    model_spec(state, name)
    with state.session() as session:
        rows = session.scalars(select(ModelVersion).where(ModelVersion.model_name == name).order_by(ModelVersion.version.desc())).all()
        aliases: dict[int, list[str]] = {}
        for alias in session.scalars(select(Alias).where(Alias.model_name == name)):
            aliases.setdefault(alias.version, []).append(alias.alias)
    return [_info(r, aliases) for r in rows]


def get_version(state: MLOpsState, name: str, version: int) -> VersionInfo:
    for info in list_versions(state, name):
        if info.version == version:
            return info
    raise NotFoundError(f"model {name!r} has no version {version}", details={"model": name, "version": version})


def alias_version(state: MLOpsState, name: str, alias: str = PRODUCTION) -> int | None:
    with state.session() as session:
        row = session.get(Alias, (name, alias))
        return row.version if row is not None else None


def version_profile(state: MLOpsState, name: str, version: int) -> dict[str, Any] | None:
    """The stored reference profile of a version (JSON), or None if none was recorded."""
    with state.session() as session:
        text = session.scalar(select(ModelVersion.profile).where(ModelVersion.model_name == name, ModelVersion.version == version))
    return json.loads(text) if text else None
