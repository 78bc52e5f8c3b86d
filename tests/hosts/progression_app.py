"""Host 3: disease-progression regression (scikit-learn's diabetes data), gated on MAE.

Declared with a per-model gate: a new version reaches production only with a holdout MAE
of at most 60. `flask --app tests.hosts.progression_app mlops train --name progression
--data diabetes.csv --target progression` trains it.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify, request

from flask_mlops import MLOps

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]

app = Flask(__name__, instance_path=os.environ.get("HOST_INSTANCE_PATH"))
app.config["MLOPS_MODELS"] = {
    "progression": {"task": "regression", "features": FEATURES, "target": "progression", "gates": {"mae": 60.0}},
}
mlops = MLOps(app)


@app.post("/progression")
@mlops.track("progression")
def progression() -> Any:
    result = mlops.predict("progression", request.get_json())
    return jsonify(progression=result.prediction)
