"""Host 1: a breast-cancer screening service with a model its team trains itself.

Written the way its users write it: scikit-learn's own dataset (feature names are
`numpy.str_`), a pipeline fitted on a DataFrame, the model registered without any
`MLOPS_MODELS` entry (the reference DataFrame says what the features are), configuration
from the environment. `flask --app tests.hosts.cancer_app fit` trains and registers.
"""

from __future__ import annotations

import os
from typing import Any

import click
import pandas as pd
from flask import Flask, jsonify, request
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from flask_mlops import MLOps

app = Flask(__name__, instance_path=os.environ.get("HOST_INSTANCE_PATH"))
mlops = MLOps(app)


@app.post("/predict")
@mlops.track("cancer")
def predict() -> Any:
    result = mlops.predict("cancer", request.get_json())
    return jsonify(benign=result.prediction == 1, probability=result.probability, version=result.version)


def dataset() -> tuple[pd.DataFrame, pd.DataFrame, Any, Any]:
    data = load_breast_cancer()
    X = pd.DataFrame(data.data, columns=data.feature_names)
    return train_test_split(X, data.target, test_size=0.2, random_state=0, stratify=data.target)  # type: ignore[no-any-return]


@app.cli.command("fit")
@click.option("--promote/--no-promote", default=True)
@click.option("--c", "c", default=1.0, help="Inverse regularisation strength.")
def fit(promote: bool, c: float) -> None:
    """Train on the training split, measure on the test split, register (and promote)."""
    X_train, X_test, y_train, y_test = dataset()
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000)).fit(X_train, y_train)
    proba = model.predict_proba(X_test)[:, 1]
    metrics = {
        "accuracy": accuracy_score(y_test, proba >= 0.5),
        "f1": f1_score(y_test, proba >= 0.5),
        "roc_auc": roc_auc_score(y_test, proba),
    }
    info = mlops.register("cancer", model, reference=X_train, labels=y_train, metrics=metrics, promote=promote)
    click.echo(f"registered cancer v{info.version} {info.aliases} {metrics}")
