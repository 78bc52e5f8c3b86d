"""The guided demo, then the dashboard in Chromium: what a person sees after `make run` + `make demo`.

Runs `run_demo` against the example under gunicorn, then walks the pages (overview, drift with
its distributions, performance, models) and, after an A/B experiment with its own traffic,
the experiment's posterior and guardrails. Screenshots go to logs/screenshots/; with
README_SCREENSHOTS=1 the README's images in docs/img/ are refreshed too.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from flask_mlops import get_state
from flask_mlops.services import experiments
from flask_mlops.services.demo import DemoPlan, run_demo

from .conftest import FEATURE_NAMES, ROOT, TOKEN, base_config, diabetes_frame, quick_model
from .test_dashboard_browser import SHOTS, browser  # noqa: F401  (the Chromium fixture)

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

README_IMAGES = ROOT / "docs" / "img"


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("README_SCREENSHOTS") == "1":
        README_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, README_IMAGES / f"{name}.png")


def test_demo_then_every_page_shows_it(browser: Any, gunicorn_factory: Any, served_instance: Path, tmp_path: Path) -> None:  # noqa: F811
    from example_app import create_app
    from example_app import mlops as example_mlops

    server = gunicorn_factory(served_instance, workers=2, env={"MLOPS_SECRET_KEY": "demo-browser-secret", "MLOPS_RELOAD_INTERVAL": "1"})
    cfg = base_config(tmp_path)
    cfg.pop("MLOPS_MODELS")
    cfg["MLOPS_LOG_DIR"] = str(server.log_dir)
    app = create_app(cfg, instance_path=str(served_instance))
    state = get_state(app)
    result = run_demo(state, url=server.url, token=TOKEN, plan=DemoPlan(normal=200, drifted=200), echo=lambda _: None)
    assert result.failed == 0 and result.checks["retrain_check"]["due"]

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    base = f"{server.url}/mlops"
    assert page.goto(f"{base}/").status == 401
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    errors.clear()  # the login page's own 401

    # overview: the demo's drift made the model unhealthy, with the reasons
    card = page.locator("section[data-model=diabetes]")
    assert card.locator("[data-kpi=health]").inner_text() in ("warning", "critical")
    _shot(page, "demo-overview")

    # drift: reference vs window histograms for every feature; Glucose drifted, Pregnancies not
    page.click("nav >> text=Drift")
    assert page.locator(".dists figure").count() == len(FEATURE_NAMES)
    assert page.locator("figure[data-dist=Glucose]").get_attribute("class") == "drifted"
    assert page.locator("figure[data-dist=Pregnancies]").get_attribute("class") == ""
    assert page.locator("figure[data-dist=Glucose] svg.hist rect.cur").count() >= 5
    _shot(page, "demo-drift")

    # performance: realised accuracy from the labels beside the CBPE estimate, over time
    page.click("nav >> text=Performance")
    perf = page.locator("section[data-model=diabetes]")
    assert perf.locator("[data-kpi=labelled]").inner_text() == str(result.labelled)
    assert perf.locator("[data-kpi=realised]").inner_text().endswith("%")
    assert perf.locator("[data-kpi=estimated]").inner_text().endswith("%")
    legend = perf.locator("[data-chart=performance-timeline] .legend").inner_text()
    assert "v1 realised" in legend and "estimated" in legend
    assert perf.locator("[data-chart=performance-timeline] polyline").count() >= 2
    _shot(page, "demo-performance")

    # models: one production version ever, so no rollback is offered; status shown
    page.click("nav >> text=Models")
    assert page.locator("tr[data-version='1'] [data-status]").inner_text() == "production"
    assert page.locator("[data-kpi=no-rollback]").count() == 1
    assert page.locator("button:has-text('Roll back')").count() == 0

    # an A/B test of v2 against v1, with its own labelled traffic: posterior and guardrails
    df = diabetes_frame()
    v2 = example_mlops.register("diabetes", quick_model(seed=1), app=app, reference=df[FEATURE_NAMES], threshold=0.5,
                                metrics={"accuracy": 0.78, "f1": 0.67, "roc_auc": 0.84})
    with app.app_context():
        experiments.create_experiment(state, "diabetes", v2.version, share=0.5, name="v2 vs v1", actor="test")
    time.sleep(3)  # the workers' reload loop (MLOPS_RELOAD_INTERVAL=1) picks the experiment up
    ab = run_demo(state, url=server.url, token=TOKEN, plan=DemoPlan(normal=300, drifted=0, seed=1), run_checks=False, echo=lambda _: None)
    assert ab.failed == 0
    page.reload()
    assert page.locator("tr[data-version='2'] button:has-text('Promote')").count() == 1
    _shot(page, "demo-models")
    page.click("nav >> text=Experiments")
    exp = page.locator("section[data-experiment]")
    assert exp.count() == 1
    assert exp.locator("[data-kpi=prob-better]").inner_text().endswith("%")
    assert exp.locator("[data-chart=posterior] polyline").count() == 2
    assert exp.locator("table[data-table=guardrails] tbody tr").count() >= 1
    _shot(page, "demo-experiments")
    page.click("nav >> text=Performance")
    variants = page.locator("table[data-table=by_variant] tbody tr td:first-child").all_inner_texts()
    assert {"control", "treatment"} <= set(variants), variants  # (and "none": before the experiment)
    assert not errors, errors  # no CSP violations or script errors
