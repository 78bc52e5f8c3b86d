"""A guided demo: realistic traffic to a running app, a drift episode, then delayed labels.

`flask mlops demo` (and `make demo`) drive a served model over HTTP the way production
would, so that every part of monitoring has something to show within a minute:

1. normal traffic — rows sampled from the model's training data with a little noise;
2. a drift episode — the same, with the feature most correlated with the target shifted
   (for the example, Glucose: a re-calibrated meter), while the true labels stay those of
   the unshifted rows, so accuracy really drops;
3. delayed labels — ground truth for most predictions through `POST /api/feedback`;
4. checks — the scheduled drift check run once here (drift run stored, alerts raised), then
   `GET /api/retrain/check` and `GET /api/monitoring/report` are read back and summarised.

Only the standard library talks HTTP; nothing here runs in a serving process.
"""

from __future__ import annotations

import csv
import http.client
import json
import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from ..errors import ConfigError, ValidationError
from .monitoring import resolve_model
from .scheduler import new_holder, run_job

if TYPE_CHECKING:
    from ..specs import ModelSpec
    from .state import MLOpsState

Echo = Callable[[str], None]


@dataclass(frozen=True)
class DemoPlan:
    """What to send: counts per phase, the drift shift, and the share of predictions labelled."""

    normal: int = 400
    drifted: int = 400
    shift: Mapping[str, float] | None = None  # feature -> added amount; None: chosen from the data
    label_share: float = 0.8
    noise: float = 0.03  # relative Gaussian noise on every numeric value
    threads: int = 4
    seed: int = 0


@dataclass
class DemoResult:
    sent: int = 0
    failed: int = 0
    labelled: int = 0
    shift: dict[str, float] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


class Client:
    """A tiny JSON-over-HTTP client for one base URL (one connection per request, as a load balancer would)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValidationError(f"--url must be an http(s) URL, got {url!r}")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.base = parts.path
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None, *, auth: bool = False) -> tuple[int, dict[str, str], Any]:
        conn_cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = conn_cls(self.host, self.port, timeout=self.timeout)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            conn.request(method, self.base + path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            head = {k.lower(): v for k, v in response.getheaders()}
        finally:
            conn.close()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        return response.status, head, payload


# -- the rows -------------------------------------------------------------------------------------
def load_rows(spec: ModelSpec) -> list[tuple[dict[str, Any], Any]]:
    """(features, label) of every row of the model's training CSV (`data` in MLOPS_MODELS)."""
    if not spec.data or not spec.target:
        raise ConfigError(f"model {spec.name!r} declares no `data` CSV and `target`: the demo samples its rows from them")
    rows = []
    with open(spec.data, newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            features: dict[str, Any] = {}
            for f in spec.features:
                value = raw.get(f.name)
                features[f.name] = value if f.type != "numeric" or value in (None, "") else float(value)
            rows.append((features, _label(raw.get(spec.target))))
    if not rows:
        raise ConfigError(f"{spec.data} has no rows")
    return rows


def _label(value: Any) -> Any:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return int(number) if number.is_integer() else number


def choose_shift(spec: ModelSpec, rows: Sequence[tuple[dict[str, Any], Any]]) -> dict[str, float]:
    """Shift the numeric feature most correlated with the label by 1.5 standard deviations."""
    best: tuple[float, str, float] | None = None
    labels = [lab for _, lab in rows]
    if not all(isinstance(v, (int, float)) for v in labels):
        labels = [1.0 if v == spec.positive_label else 0.0 for v in labels]
    for f in spec.features:
        if f.type != "numeric":
            continue
        xs = [r[f.name] for r, _ in rows]
        pairs = [(x, float(y)) for x, y in zip(xs, labels, strict=True) if isinstance(x, float) and math.isfinite(x)]
        if len(pairs) < 3:
            continue
        corr, sd = _corr(pairs)
        if best is None or abs(corr) > best[0]:
            best = (abs(corr), f.name, sd)
    if best is None:
        raise ConfigError(f"model {spec.name!r} has no numeric feature to shift; pass --shift FEATURE=AMOUNT")
    return {best[1]: round(1.5 * best[2], 1)}


def _corr(pairs: Sequence[tuple[float, float]]) -> tuple[float, float]:
    n = len(pairs)
    mx = sum(p[0] for p in pairs) / n
    my = sum(p[1] for p in pairs) / n
    sxx = sum((p[0] - mx) ** 2 for p in pairs)
    syy = sum((p[1] - my) ** 2 for p in pairs)
    sxy = sum((p[0] - mx) * (p[1] - my) for p in pairs)
    corr = sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else 0.0
    return corr, math.sqrt(sxx / (n - 1))


def sample(
    spec: ModelSpec, rows: Sequence[tuple[dict[str, Any], Any]], n: int, rng: random.Random, *,
    noise: float, shift: Mapping[str, float] | None = None,
) -> list[tuple[dict[str, Any], Any]]:
    """`n` rows drawn with replacement, with relative noise within the data's range (zeros stay zero:
    'not measured'), then shifted, within the declared range."""
    numeric = [f for f in spec.features if f.type == "numeric"]
    integral = {f.name for f in numeric if all(isinstance(r[f.name], float) and r[f.name].is_integer() for r, _ in rows if r.get(f.name) is not None)}
    seen = {f.name: [r[f.name] for r, _ in rows if isinstance(r.get(f.name), float)] for f in numeric}
    bounds = {name: (min(values), max(values)) for name, values in seen.items() if values}
    out = []
    for _ in range(n):
        features, label = rows[rng.randrange(len(rows))]
        row = dict(features)
        for f in spec.features:
            value = row.get(f.name)
            if f.type != "numeric" or not isinstance(value, float):
                continue
            if value != 0.0:  # noise stays inside the data's range: only the shift may leave it
                low, high = bounds[f.name]
                value = min(max(value * (1.0 + rng.gauss(0.0, noise)), low), high)
            value += (shift or {}).get(f.name, 0.0)
            if f.min is not None:
                value = max(value, f.min)
            if f.max is not None:
                value = min(value, f.max)
            # counts stay counts: a fractional value where the data has none would itself look like drift
            row[f.name] = float(round(value)) if f.name in integral else round(value, 3)
        out.append((row, label))
    return out


# -- sending --------------------------------------------------------------------------------------
def send_predictions(
    client: Client, path: str, rows: Sequence[tuple[dict[str, Any], Any]], *, threads: int, rng: random.Random,
) -> tuple[list[tuple[str, Any]], int]:
    """POST every row (with a `user_id`) from `threads` clients; (prediction id, true label) of the answered ones, failures."""
    items = [({**row, "user_id": f"u-{rng.randrange(10_000)}"}, label) for row, label in rows]
    answered: list[tuple[str, Any]] = []
    failed = [0]
    lock = threading.Lock()
    queue = iter(items)

    def work() -> None:
        while True:
            with lock:
                item = next(queue, None)
            if item is None:
                return
            body, label = item
            try:
                status, headers, payload = client.request("POST", path, body)
            except OSError:
                status, headers, payload = 0, {}, None
            pid = (payload.get("prediction_id") if isinstance(payload, dict) else None) or headers.get("x-prediction-id")
            with lock:
                if 200 <= status < 300 and pid:
                    answered.append((pid, label))
                else:
                    failed[0] += 1

    pool = [threading.Thread(target=work, name=f"mlops-demo-{i}", daemon=True) for i in range(max(1, threads))]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return answered, failed[0]


def send_labels(client: Client, pairs: Sequence[tuple[str, Any]], *, batch: int = 500) -> int:
    """Ground truth through `POST /api/feedback`, in batches; the number stored."""
    stored = 0
    for start in range(0, len(pairs), batch):
        chunk = [{"prediction_id": pid, "label": label} for pid, label in pairs[start:start + batch]]
        status, _, payload = client.request("POST", "/api/feedback", {"items": chunk, "overwrite": True}, auth=True)
        if status != 201:
            raise ValidationError(f"POST /api/feedback answered {status}: {payload}", details={"status": status})
        stored += int(payload.get("created", 0)) + int(payload.get("updated", 0))
    return stored


# -- the whole demo -------------------------------------------------------------------------------
def run_demo(
    state: MLOpsState, *, url: str, token: str | None, model: str | None = None, predict_path: str = "/predict",
    plan: DemoPlan | None = None, run_checks: bool = True, echo: Echo = print,
) -> DemoResult:
    """Send the phases to the app at `url` (its /mlops API under `state`'s prefix); summarise what it shows."""
    plan = plan or DemoPlan()
    spec = resolve_model(state, model)
    app = Client(url)
    api = Client(url.rstrip("/") + state.config.url_prefix, token)
    started = time.perf_counter()
    result = DemoResult()

    try:
        status, _, health = api.request("GET", "/api/health")
    except OSError as exc:
        raise ValidationError(f"nothing answers at {url} ({exc}): start the app first (make run)") from exc
    if status != 200 or not isinstance(health, dict):
        raise ValidationError(f"{url} does not answer {state.config.url_prefix}/api/health ({status}): start the app first (make run)")
    if (health.get("models", {}).get(spec.name) or {}).get("production_version") is None:
        raise ValidationError(f"{url} serves no production version of {spec.name!r} yet: train one first (make run does)")
    if not token:
        raise ValidationError("the demo needs an admin token for the feedback API: --token, MLOPS_API_TOKEN or instance/dev-token")

    rng = random.Random(plan.seed)
    rows = load_rows(spec)
    shift = dict(plan.shift) if plan.shift else choose_shift(spec, rows)
    result.shift = shift
    pairs: list[tuple[str, Any]] = []

    echo(f"1/4  normal traffic: {plan.normal} predictions from {spec.data} rows (+{plan.noise:.0%} noise) ...")
    answered, failed = send_predictions(app, predict_path, sample(spec, rows, plan.normal, rng, noise=plan.noise), threads=plan.threads, rng=rng)
    pairs += answered
    result.failed += failed
    echo(f"     {len(answered)} answered, {failed} failed")

    what = ", ".join(f"{k} {v:+g}" for k, v in shift.items())
    echo(f"2/4  drift episode: {plan.drifted} predictions with {what} (labels stay those of the unshifted rows) ...")
    drifted = sample(spec, rows, plan.drifted, rng, noise=plan.noise, shift=shift)
    answered, failed = send_predictions(app, predict_path, drifted, threads=plan.threads, rng=rng)
    pairs += answered
    result.failed += failed
    result.sent = len(pairs) + result.failed
    echo(f"     {len(answered)} answered, {failed} failed")

    labelled = [p for p in pairs if rng.random() < plan.label_share]
    echo(f"3/4  delayed labels: {len(labelled)} of {len(pairs)} predictions get their ground truth (POST {state.config.url_prefix}/api/feedback) ...")
    result.labelled = send_labels(api, labelled)

    echo("4/4  checks ...")
    if run_checks:
        result.checks["drift_check"] = _run_drift_check(state)
        echo(f"     drift check job (as the scheduler runs it): {result.checks['drift_check']}")
    result.checks.update(_read_back(api, spec.name, len(pairs)))
    for line in _summary_lines(result.checks):
        echo("     " + line)
    result.seconds = time.perf_counter() - started
    return result


def _run_drift_check(state: MLOpsState) -> Any:
    """The scheduled drift check, once, here (drift run stored, alerts raised; recorded as 'manual')."""
    run = run_job(state, "drift_check", holder=new_holder("demo:"))
    if run is None:
        return None
    return run.get("result") if run.get("status") == "succeeded" else {"status": run.get("status"), "error": run.get("error")}


def _read_back(api: Client, model: str, last: int) -> dict[str, Any]:
    """What the API now says: the report on the demo's window, retrain triggers, alerts."""
    out: dict[str, Any] = {}
    query = urlencode({"model": model, "last": last})
    _, _, out["report"] = api.request("GET", f"/api/monitoring/report?{query}", auth=True)
    _, _, out["retrain_check"] = api.request("GET", f"/api/retrain/check?{urlencode({'model': model})}", auth=True)
    _, _, alerts = api.request("GET", f"/api/alerts?{urlencode({'model': model, 'limit': 10})}", auth=True)
    out["alerts"] = alerts.get("items", []) if isinstance(alerts, dict) else []
    return out


def _summary_lines(checks: Mapping[str, Any]) -> list[str]:
    lines = []
    report = checks.get("report")
    if isinstance(report, dict) and "health" in report:
        drift = report.get("drift") or {}
        perf = report.get("performance") or {}
        est = perf.get("estimated") or {}
        lines.append(f"health: {report['health'].get('status')} — " + "; ".join(r.get("message", "") for r in report["health"].get("reasons", [])))
        lines.append(f"drift: {drift.get('level')} (drifted: {', '.join(drift.get('drifted_features') or []) or 'none'})")
        lines.append(
            f"performance: realised accuracy {_pct(perf.get('accuracy'))} on {perf.get('n_labelled', '?')} labels, "
            f"estimated (CBPE, no labels) {_pct(est.get('accuracy'))}, decay {((perf.get('decay') or {}).get('level'))}"
        )
    check = checks.get("retrain_check")
    if isinstance(check, dict) and "due" in check:
        fired = [name for name, t in (check.get("triggers") or {}).items() if t.get("fired")]
        lines.append(f"retrain proposed: {check['due']} (triggers firing: {', '.join(fired) or 'none'})")
    lines.append(f"alerts: {len(checks.get('alerts') or [])}")
    return lines


def _pct(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else "-"


def admin_token(state: MLOpsState, explicit: str | None = None) -> str | None:
    """--token, else an admin token of MLOPS_API_TOKEN, else the development token `make run` wrote."""
    if explicit:
        return explicit
    for token, role in state.config.api_token:
        if role == "admin":
            return token
    path = Path(state.config.instance_path) / "dev-token"
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


__all__ = ["DemoPlan", "DemoResult", "admin_token", "choose_shift", "load_rows", "run_demo", "sample"]
