"""Host 2: a wine-cultivar classifier (three classes), declared and trained by flask-mlops.

The team declares the model's inputs in `MLOPS_MODELS` and trains it with
`flask --app tests.hosts.wine_app mlops train --name wine --data wine.csv --target cultivar`.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify, request
from sklearn.datasets import load_wine

from flask_mlops import MLOps

FEATURES = [str(name) for name in load_wine().feature_names]

app = Flask(__name__, instance_path=os.environ.get("HOST_INSTANCE_PATH"))
app.config["MLOPS_MODELS"] = {"wine": {"task": "classification", "features": FEATURES, "target": "cultivar"}}
mlops = MLOps(app)


@app.post("/wine")
@mlops.track("wine")
def wine() -> Any:
    result = mlops.predict("wine", request.get_json())
    return jsonify(cultivar=result.prediction, confidence=result.probability)
