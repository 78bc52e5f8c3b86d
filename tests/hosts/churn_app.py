"""Host 4: a churn service whose model is a DataFrame pipeline with a ColumnTransformer.

The team's pipeline selects columns by name (numeric ones scaled, string categories
one-hot encoded), so it must be fed a DataFrame; the model is registered undeclared from
its training frame. `flask --app tests.hosts.churn_app fit --data churn.csv` trains it.
"""

from __future__ import annotations

import os
from typing import Any

import click
import pandas as pd
from flask import Flask, jsonify, request
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from flask_mlops import MLOps

NUMERIC = ["tenure_months", "monthly_spend"]
CATEGORICAL = ["plan", "region"]

app = Flask(__name__, instance_path=os.environ.get("HOST_INSTANCE_PATH"))
mlops = MLOps(app)


@app.post("/churn")
@mlops.track("churn")
def churn() -> Any:
    result = mlops.predict("churn", request.get_json())
    return jsonify(churn=bool(result.prediction), probability=result.probability)


def pipeline() -> Pipeline:
    columns = ColumnTransformer([
        ("numeric", StandardScaler(), NUMERIC),
        ("categorical", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
    ])
    return Pipeline([("columns", columns), ("model", LogisticRegression(max_iter=2000))])


@app.cli.command("fit")
@click.option("--data", "path", required=True, type=click.Path(exists=True))
@click.option("--promote/--no-promote", default=True)
def fit(path: str, promote: bool) -> None:
    """Fit the pipeline on a CSV (target column `churned`), register it (and promote it)."""
    frame = pd.read_csv(path)
    X, y = frame[NUMERIC + CATEGORICAL], frame["churned"]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    model = pipeline().fit(X_train, y_train)
    proba = model.predict_proba(X_test)[:, 1]
    metrics = {"accuracy": accuracy_score(y_test, proba >= 0.5), "f1": f1_score(y_test, proba >= 0.5), "roc_auc": roc_auc_score(y_test, proba)}
    info = mlops.register("churn", model, reference=X_train, labels=y_train, metrics=metrics, promote=promote)
    click.echo(f"registered churn v{info.version} {info.aliases} {metrics}")
