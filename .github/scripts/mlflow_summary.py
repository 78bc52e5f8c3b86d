"""Export one registered version's MLflow run (default: the production one) for a workflow's artifacts.

Writes `<out>/run_summary.json` (model, version, aliases, run id, params, metrics, tags),
`<out>/metrics.json` and downloads the run's `reports/` artifacts (model card, ROC curve,
confusion matrix, reference profile, ...) into `<out>/reports/`. Reads the tracking URI
from MLOPS_TRACKING_URI, like the app.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="registered model name")
    parser.add_argument("--out", type=Path, default=Path("out"))
    parser.add_argument("--version", type=int, help="version to export (default: the one behind the production alias)")
    parser.add_argument("--alias", default="production", help="alias to export when --version is not given")
    args = parser.parse_args()
    uri = os.environ.get("MLOPS_TRACKING_URI")
    if not uri:
        print("MLOPS_TRACKING_URI is not set", file=sys.stderr)
        return 1
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        if args.version is not None:
            newest = client.get_model_version(args.name, str(args.version))
        else:  # never "the newest": a test or rejected version may be newer than what serves
            newest = client.get_model_version_by_alias(args.name, args.alias)
    except Exception as exc:  # noqa: BLE001 - MLflow raises its own exception types
        print(f"no version {args.version or '@' + args.alias} of {args.name}: {exc}", file=sys.stderr)
        return 1
    run = client.get_run(newest.run_id)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {
        "model": args.name,
        "version": int(newest.version),
        "aliases": list(getattr(newest, "aliases", []) or []),
        "run_id": newest.run_id,
        "params": run.data.params,
        "metrics": run.data.metrics,
        "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
    }
    (args.out / "run_summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    (args.out / "metrics.json").write_text(json.dumps(run.data.metrics, indent=2, sort_keys=True))
    try:
        download_artifacts(run_id=newest.run_id, artifact_path="reports", dst_path=str(args.out), tracking_uri=uri)
    except Exception as exc:  # a run without reports still gets its summary uploaded
        print(f"no reports/ artifacts: {exc}", file=sys.stderr)
    print(json.dumps({k: summary[k] for k in ("model", "version", "aliases", "run_id")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
