"""The app bench/overhead.py measures: one prediction view, with and without @mlops.track.

Both views call `mlops.predict` (validation + in-memory model), so the difference between
them is exactly what tracking adds: timing, the record, one JSON line, one write.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify, request

from example_app import DIABETES_MODEL
from flask_mlops import MLOps

mlops = MLOps()


def create_app(instance_path: str | None = None) -> Flask:
    app = Flask(__name__, instance_path=instance_path or os.environ["BENCH_INSTANCE"])
    app.config["MLOPS_MODELS"] = {"diabetes": DIABETES_MODEL}
    app.config["MLOPS_AUTH_DISABLED"] = True
    mlops.init_app(app)

    def answer() -> Any:
        result = mlops.predict("diabetes", request.get_json())
        return jsonify(prediction=result.prediction, probability=result.probability, model_version=result.version)

    @app.post("/floor")
    def floor() -> Any:
        """The floor: parse the same JSON, answer a constant (no validation, no model, no tracking)."""
        request.get_json()
        return jsonify(prediction=0, probability=0.5, model_version=1)

    @app.post("/untracked")
    def untracked() -> Any:
        return answer()

    @app.post("/tracked")
    @mlops.track("diabetes")
    def tracked() -> Any:
        return answer()

    return app


if "BENCH_INSTANCE" in os.environ:  # gunicorn bench.overhead_app:app
    app = create_app()
