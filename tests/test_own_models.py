"""A user's own models: undeclared registration, numpy.str_ names, DataFrame pipelines, labels, unit key."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from flask import Flask, jsonify, request

from flask_mlops import MLOps, get_state
from flask_mlops.services.catalog import model_names, model_spec
from flask_mlops.store.predictions import read_records

from .conftest import AUTH, FEATURE_NAMES, SAMPLE_ROW, TOKEN


def host(instance: Path, tmp_path: Path, name: str, **config: Any) -> tuple[Flask, MLOps]:
    """A host app with no MLOPS_MODELS: the user's model is registered, not declared."""
    app = Flask("own", instance_path=str(instance))
    app.config.update(
        TESTING=True, MLOPS_LOG_DIR=str(tmp_path / "logs"), MLOPS_API_TOKEN=TOKEN, MLOPS_RELOAD_INTERVAL=0, **config
    )
    mlops = MLOps(app)

    @app.post("/predict")
    @mlops.track(name)
    def predict() -> Any:
        result = mlops.predict(name, request.get_json())
        return jsonify(prediction=result.prediction, probability=result.probability)

    return app, mlops


def cancer() -> tuple[pd.DataFrame, np.ndarray, Any]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    assert type(data.feature_names[0]) is np.str_  # what users really get
    X = pd.DataFrame(data.data, columns=data.feature_names)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X.to_numpy(), data.target)
    return X, data.target, model


def test_undeclared_model_registers_from_a_dataframe_with_numpy_str_names(instance: Path, tmp_path: Path) -> None:
    X, y, model = cancer()
    app, mlops = host(instance, tmp_path, "cancer")
    info = mlops.register("cancer", model, reference=X, metrics={"accuracy": 0.97, "roc_auc": 0.99, "f1": 0.97}, promote=True, app=app)
    assert info.version == 1 and "production" in info.aliases
    with app.app_context():
        state = get_state(app)
        spec = model_spec(state, "cancer")
        assert model_names(state) == ["cancer"]
    assert all(type(n) is str for n in spec.feature_names) and len(spec.features) == 30
    assert spec.task == "classification" and spec.classes == (0, 1)
    row = {str(k): float(v) for k, v in X.iloc[0].items()}
    c = app.test_client()
    r = c.post("/predict", json=row)
    assert r.status_code == 200, r.json
    bad = c.post("/predict", json={**row, "mean radius": "big", "extra": 1})
    assert bad.status_code == 400 and set(bad.json["error"]["details"]["fields"]) == {"mean radius", "extra"}
    (rec, *_) = list(read_records(get_state(app).log_dir))
    assert rec["features"] == row and "features_error" not in rec
    # every API that takes a model name knows it
    assert c.get("/mlops/api/models/cancer", headers=AUTH).status_code == 200
    assert c.get("/mlops/api/monitoring/performance?model=cancer", headers=AUTH).status_code == 200
    assert c.get("/mlops/api/models/nope", headers=AUTH).json["error"]["details"]["known_models"] == ["cancer"]


def test_undeclared_model_without_reference_is_refused_with_the_fix(instance: Path, tmp_path: Path) -> None:
    from flask_mlops.errors import ValidationError

    _, _, model = cancer()
    app, mlops = host(instance, tmp_path, "cancer")
    with pytest.raises(ValidationError, match="pass reference="):
        mlops.register("cancer", model, app=app)


def test_register_promote_without_metrics_says_what_the_gates_need(instance: Path, tmp_path: Path) -> None:
    from flask_mlops.services.lifecycle import GateFailed

    X, _, model = cancer()
    app, mlops = host(instance, tmp_path, "cancer")
    with pytest.raises(GateFailed, match="registered but not in production.*metrics=.*force=True"):
        mlops.register("cancer", model, reference=X, promote=True, app=app)
    assert app.test_client().post("/predict", json={str(k): 1.0 for k in X.columns}).status_code == 503
    info = mlops.register("cancer", model, reference=X, promote=True, force=True, app=app)
    assert info.version == 2 and "production" in info.aliases


def pipeline_data(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "income": rng.normal(50_000, 15_000, n),
            "plan": rng.choice(["basic", "pro", "team"], n, p=[0.6, 0.3, 0.1]),
            "region": rng.choice(["north", "south"], n),
        }
    )
    logit = (frame["age"] - 45) / 15 + (frame["plan"] == "pro") * 1.5 - (frame["region"] == "south") * 0.5
    return frame, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


def column_pipeline() -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pre = ColumnTransformer([("num", StandardScaler(), ["age", "income"]), ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan", "region"])])
    return Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=1000))])


def test_dataframe_pipeline_is_served_a_frame_without_warnings(instance: Path, tmp_path: Path) -> None:
    X, y = pipeline_data()
    model = column_pipeline().fit(X, y)
    app, mlops = host(instance, tmp_path, "churn")
    mlops.register("churn", model, reference=X, metrics={"accuracy": 0.8, "roc_auc": 0.85, "f1": 0.7}, promote=True, app=app)
    with app.app_context():
        spec = model_spec(get_state(app), "churn")
    kinds = {f.name: (f.type, f.categories) for f in spec.features}
    assert kinds == {"age": ("numeric", None), "income": ("numeric", None), "plan": ("categorical", ("basic", "pro", "team")), "region": ("categorical", ("north", "south"))}
    c = app.test_client()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "X does not have valid feature names" would fail here
        r = c.post("/predict", json={"age": 30, "income": 40000.5, "plan": "pro", "region": "north"})
    assert r.status_code == 200, r.json
    expected = model.predict_proba(X.iloc[:0].reindex([0]).assign(age=30, income=40000.5, plan="pro", region="north"))[0, 1]
    assert r.json["probability"] == pytest.approx(expected)
    assert c.post("/predict", json={"age": 30, "income": 1.0, "plan": "gold", "region": "north"}).status_code == 400


def test_the_request_path_of_an_ndarray_model_does_not_import_pandas(served_instance: Path, tmp_path: Path) -> None:
    """The adapter is chosen at load time: for a model fitted on an array, nothing of ours imports
    pandas, from start-up to the answer (scikit-learn itself imports pandas when installed)."""
    import json
    import subprocess

    script = f"""
import sys, json, traceback
ours = []  # our frames on the stack when pandas was imported (scikit-learn imports it itself)
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "pandas":  # the frame whose `import` statement asked for it
            importer = [f for f in traceback.extract_stack()[:-1] if "importlib" not in f.filename and f.filename != "<string>"][-1]
            if "flask_mlops" in importer.filename:
                ours.append(f"{{importer.filename}}:{{importer.lineno}}")
        return None
sys.meta_path.insert(0, Spy())
from flask import Flask, request, jsonify
from flask_mlops import MLOps
FEATURES, SAMPLE_ROW = {FEATURE_NAMES!r}, {SAMPLE_ROW!r}
app = Flask("probe", instance_path={str(served_instance)!r})
app.config.update(MLOPS_MODELS={{"diabetes": {{"features": FEATURES}}}}, MLOPS_LOG_DIR={str(tmp_path / "logs")!r}, MLOPS_RELOAD_INTERVAL=0)
mlops = MLOps(app)

@app.post("/predict")
@mlops.track("diabetes")
def predict():
    return jsonify(prediction=mlops.predict("diabetes", request.get_json()).prediction)

r = app.test_client().post("/predict", json=SAMPLE_ROW)
kind = type(mlops.state(app).models.get("diabetes").adapter).__name__
print(json.dumps({{"status": r.status_code, "adapter": kind, "pandas_imported_by_us": ours}}))
"""
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"status": 200, "adapter": "ArrayInput", "pandas_imported_by_us": []}


def test_feedback_labels_must_be_the_models_classes(instance: Path, tmp_path: Path) -> None:
    X, _, model = cancer()
    app, mlops = host(instance, tmp_path, "cancer")
    mlops.register("cancer", model, reference=X, promote=True, force=True, app=app)
    c = app.test_client()
    pid = c.post("/predict", json={str(k): float(v) for k, v in X.iloc[0].items()}).headers["X-Prediction-ID"]
    for label in ("malignant", 0.5, 1e308, 2, None, float("nan")):
        r = c.post("/mlops/api/feedback", json={"prediction_id": pid, "label": label}, headers=AUTH)
        assert r.status_code == 400, (label, r.json)
    assert "classes [0, 1]" in c.post("/mlops/api/feedback", json={"prediction_id": pid, "label": 2}, headers=AUTH).json["error"]["message"]
    assert c.post("/mlops/api/feedback", json={"prediction_id": pid, "label": 1}, headers=AUTH).status_code == 201


def test_regression_feedback_labels_must_be_finite_numbers(instance: Path, tmp_path: Path) -> None:
    from sklearn.linear_model import Ridge

    X, y = pipeline_data()
    Xn = X[["age", "income"]]
    app, mlops = host(instance, tmp_path, "spend")
    mlops.register("spend", Ridge().fit(Xn.to_numpy(), y * 10.0), reference=Xn, promote=True, force=True, app=app)
    c = app.test_client()
    pid = c.post("/predict", json={"age": 40, "income": 1000.0}).headers["X-Prediction-ID"]
    for label in ("high", 1e308, True and "x"):
        assert c.post("/mlops/api/feedback", json={"prediction_id": pid, "label": label}, headers=AUTH).status_code == 400
    assert c.post("/mlops/api/feedback", json={"prediction_id": pid, "label": 12.5}, headers=AUTH).status_code == 201


@pytest.mark.parametrize(
    ("setting", "how"),
    [("body:user_id", "body"), ("header:X-Customer", "header"), ("query:uid", "query")],
)
def test_unit_key_is_read_where_configured_and_taken_out_of_the_body(instance: Path, tmp_path: Path, setting: str, how: str) -> None:
    X, _, model = cancer()
    app, mlops = host(instance, tmp_path, "cancer", MLOPS_UNIT_KEY=setting)
    mlops.register("cancer", model, reference=X, promote=True, force=True, app=app)
    row = {str(k): float(v) for k, v in X.iloc[0].items()}
    c = app.test_client()
    if how == "body":
        r = c.post("/predict", json={**row, "user_id": "u-42"})
    elif how == "header":
        r = c.post("/predict", json=row, headers={"X-Customer": "u-42"})
    else:
        r = c.post("/predict?uid=u-42", json=row)
    assert r.status_code == 200, r.json
    if how == "body":
        (rec,) = list(read_records(get_state(app).log_dir))
        assert rec["unit_id"] == "u-42" and "user_id" not in rec["features"]
    else:  # outside experiments only the body's unit key is recorded; others decide A/B routing
        assert c.post("/predict", json={**row, "user_id": "u-42"}).status_code == 400  # not a feature here


def test_unit_key_setting_is_validated() -> None:
    from flask_mlops.config import load_config
    from flask_mlops.errors import ConfigError

    assert load_config({"MLOPS_UNIT_KEY": "header:X-User"}, "/tmp/x").unit_key == "header:X-User"
    with pytest.raises(ConfigError, match="MLOPS_UNIT_KEY"):
        load_config({"MLOPS_UNIT_KEY": "cookie:uid"}, "/tmp/x")


def test_unserialisable_features_are_a_health_reason_that_names_the_cause(instance: Path, tmp_path: Path) -> None:
    X, _, model = cancer()
    app, mlops = host(instance, tmp_path, "cancer")
    mlops.register("cancer", model, reference=X, promote=True, force=True, app=app)
    row = {str(k): float(v) for k, v in X.iloc[0].items()}

    class Odd:
        pass

    @app.post("/odd")
    @mlops.track("cancer", features=lambda: {**row, "note": Odd()})
    def odd() -> Any:
        result = mlops.predict("cancer", row)
        return jsonify(prediction=result.prediction)

    c = app.test_client()
    for _ in range(3):
        assert c.post("/odd", json={}).status_code == 200
    c.post("/predict", json=row)
    health = c.get("/mlops/api/monitoring/report?model=cancer", headers=AUTH).json["health"]
    (reason,) = [r for r in health["reasons"] if r["source"] == "features_logged"]
    assert reason["level"] == "critical" and "3 of 4 records" in reason["message"] and "Odd" in reason["message"], reason


def test_undeclared_models_show_on_the_dashboard_and_in_the_model_list(instance: Path, tmp_path: Path) -> None:
    X, _, model = cancer()
    app, mlops = host(instance, tmp_path, "cancer")
    mlops.register("cancer", model, reference=X, promote=True, force=True, app=app)
    c = app.test_client()
    assert [m["name"] for m in c.get("/mlops/api/models", headers=AUTH).json["models"]] == ["cancer"]
    for page in ("/mlops/", "/mlops/models", "/mlops/drift"):
        r = c.get(page, headers=AUTH)
        assert r.status_code == 200 and "cancer" in r.get_data(as_text=True), page


def test_a_database_from_an_older_release_gets_the_new_columns(tmp_path: Path) -> None:
    import sqlite3

    from sqlalchemy import create_engine, inspect

    from flask_mlops.store.migrate import add_missing_columns

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # mlops_model_versions as an older release created it
        db.execute("CREATE TABLE mlops_model_versions (id INTEGER PRIMARY KEY, model_name VARCHAR(200), version INTEGER)")
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        added = add_missing_columns(conn)
    assert "mlops_model_versions.spec" in added
    assert "spec" in {c["name"] for c in inspect(engine).get_columns("mlops_model_versions")}
    with engine.begin() as conn:
        assert add_missing_columns(conn) == []  # idempotent
    engine.dispose()


def test_a_retrained_version_of_an_undeclared_model_keeps_its_contract(instance: Path, tmp_path: Path) -> None:
    """Retraining registers bare rows in spec order (no names): the stored spec carries over."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from flask_mlops.services.inputs import ArrayInput

    X, y = pipeline_data()
    app, mlops = host(instance, tmp_path, "churn")
    mlops.register("churn", column_pipeline().fit(X, y), reference=X, promote=True, force=True, app=app)
    by_position = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), [2, 3])], remainder="passthrough")
    bare = make_pipeline(by_position, LogisticRegression(max_iter=1000)).fit(X.to_numpy(dtype=object), y)
    info = mlops.register("churn", bare, reference=X.to_numpy(dtype=object)[:50], promote=True, force=True, app=app)
    with app.app_context():
        state = get_state(app)
        assert model_spec(state, "churn").feature_names == ["age", "income", "plan", "region"]
        served = state.models.get("churn")
    assert info.version == 2 and isinstance(served.adapter, ArrayInput)
