"""Example host app: a diabetes-risk predictor (Pima Indians Diabetes data) using flask-mlops.

The two lines a host adds are `mlops = MLOps(app)` (here via `init_app`) and the
`@mlops.track("diabetes")` decorator on its prediction view.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from flask_mlops import MLOps
from flask_mlops.errors import ValidationError

ROOT = Path(__file__).resolve().parent.parent

FEATURES: dict[str, dict[str, Any]] = {
    "Pregnancies": {"min": 0, "max": 20},
    "Glucose": {"min": 0, "max": 300},
    "BloodPressure": {"min": 0, "max": 200},
    "SkinThickness": {"min": 0, "max": 100},
    "Insulin": {"min": 0, "max": 1000},
    "BMI": {"min": 0, "max": 80},
    "DiabetesPedigreeFunction": {"min": 0, "max": 3},
    "Age": {"min": 1, "max": 120},
}

DIABETES_MODEL = {
    "task": "classification",
    "features": FEATURES,
    "target": "Outcome",
    "data": str(ROOT / "data" / "diabetes.csv"),
    # zeros mean "not measured" in these columns (see data/README)
    "feature_engineering": "pima",
}

mlops = MLOps()


def create_app(config: dict[str, Any] | None = None, *, instance_path: str | None = None) -> Flask:
    """Build the app. Settings: `config`, then `MLOPS_*` environment variables, then these defaults."""
    instance_path = instance_path or os.environ.get("EXAMPLE_INSTANCE_PATH") or str(ROOT / "instance")
    app = Flask(__name__, instance_path=instance_path)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    app.config["MLOPS_MODELS"] = {"diabetes": DIABETES_MODEL}
    if "MLOPS_LOG_DIR" not in os.environ:
        app.config["MLOPS_LOG_DIR"] = str(ROOT / "logs")
    if "MLOPS_SELECTION_METRIC" not in os.environ:
        # the default promotion gates check F1 (and accuracy): pick the candidate by F1, so the
        # first model `make run` trains is one the gates let into production
        app.config["MLOPS_SELECTION_METRIC"] = "f1"
    app.config.update(config or {})
    mlops.init_app(app)

    @app.errorhandler(HTTPException)
    def json_errors(exc: HTTPException) -> Any:
        if hasattr(exc, "to_dict"):
            return exc.get_response()
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify({"error": {"code": code, "message": exc.description, "details": None}}), exc.code

    @app.get("/")
    def index() -> Any:
        prefix = mlops.state(app).config.url_prefix
        return jsonify(
            {
                "predict": "POST /predict with the 8 Pima features as JSON (and an optional user_id)",
                "health": f"{prefix}/api/health",
                "dashboard": f"{prefix}/",
            }
        )

    @app.post("/predict")
    @mlops.track("diabetes")
    def predict() -> Any:
        payload = request.get_json(silent=True)
        if not isinstance(payload, dict):
            raise ValidationError(
                "request body must be a JSON object with the 8 Pima features",
                code="malformed_json",
                details={"features": list(FEATURES)},
            )
        user_id = payload.pop("user_id", None)
        if user_id is not None and (isinstance(user_id, bool) or not isinstance(user_id, (str, int))):
            raise ValidationError("user_id must be a string or an integer", details={"fields": {"user_id": "invalid"}})
        result = mlops.predict("diabetes", payload, unit_id=None if user_id is None else str(user_id))
        body = {
            "prediction": result.prediction,
            "probability": None if result.probability is None else round(result.probability, 6),
            "model_version": result.version,
            "prediction_id": result.prediction_id,  # the key for POST /mlops/api/feedback later
        }
        if result.variant is not None:
            body["variant"] = result.variant
        return jsonify(body)

    return app
