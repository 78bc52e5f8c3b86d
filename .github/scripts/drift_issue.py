"""Open, update or close the one tracking issue for model drift, through the GitHub REST API.

`--status` is the exit code of `flask mlops drift` (0 ok, 2 critical drift, 3 unreadable logs)
and `--drift` its JSON output. One open issue carries the label `model-drift`: on a problem it is
opened when none is open, else a comment is added; when drift is back to ok an open issue gets
a closing comment. Needs GITHUB_TOKEN (issues: write) and GITHUB_REPOSITORY; GITHUB_API_URL
defaults to https://api.github.com. Plain urllib: nothing (not even `gh`) is assumed on the runner.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

LABEL = "model-drift"
TITLES = {2: "Critical model drift", 3: "Prediction logs could not be read"}


def api(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    base = os.environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
    request = urllib.request.Request(
        f"{base}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={
            "Authorization": f"Bearer {os.environ['GITHUB_TOKEN']}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the GitHub API URL
        raw = response.read()
    return json.loads(raw) if raw else None


def summary(status: int, drift: dict[str, Any], run_url: str) -> str:
    window = drift.get("window") or {}
    lines = [
        f"**{TITLES.get(status, 'Drift check')}** — level `{drift.get('level')}`, {window.get('n', 0)} records, "
        f"{window.get('skipped_lines', 0)} unreadable lines (window {window.get('since')} – {window.get('until')}).",
        "",
        drift.get("message") or "",
    ]
    features = drift.get("features") or {}
    flagged = [(name, f) for name, f in features.items() if f.get("level") in ("warning", "critical")]
    if flagged:
        lines += ["", "| feature | level | decided by | why |", "|---|---|---|---|"]
        lines += [f"| {name} | {f.get('level')} | {f.get('decided_by')} | {f.get('why', '')} |" for name, f in flagged]
    if run_url:
        lines += ["", f"Workflow run: {run_url}"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--status", type=int, required=True, help="exit code of `flask mlops drift`")
    parser.add_argument("--drift", type=Path, required=True, help="its --json output")
    parser.add_argument("--run-url", default="")
    args = parser.parse_args()
    repo = os.environ["GITHUB_REPOSITORY"]
    try:
        drift = json.loads(args.drift.read_text() or "{}")
    except (OSError, ValueError):
        drift = {}
    query = urllib.parse.urlencode({"labels": LABEL, "state": "open", "per_page": 1})
    open_issues = api("GET", f"/repos/{repo}/issues?{query}") or []
    current = open_issues[0] if open_issues else None
    if args.status == 0:
        if current is not None:
            api("POST", f"/repos/{repo}/issues/{current['number']}/comments", {"body": "Drift is back to ok.\n\n" + summary(0, drift, args.run_url)})
            api("PATCH", f"/repos/{repo}/issues/{current['number']}", {"state": "closed"})
            print(f"closed issue #{current['number']}")
        return 0
    body = summary(args.status, drift, args.run_url)
    if current is None:
        created = api("POST", f"/repos/{repo}/issues", {"title": TITLES.get(args.status, "Model drift"), "body": body, "labels": [LABEL]})
        print(f"opened issue #{created['number']}")
    else:
        api("POST", f"/repos/{repo}/issues/{current['number']}/comments", {"body": body})
        print(f"updated issue #{current['number']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
