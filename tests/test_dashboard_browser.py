"""The dashboard in a real browser: Playwright drives Debian's Chromium against the example app under gunicorn.

Logs in with a token, loads every page with data behind it, checks the key numbers, clicks
an admin button, looks at phone width, and saves screenshots under logs/screenshots/.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from .conftest import FEATURE_NAMES, ROOT, SAMPLE_ROW, TOKEN, base_config, build_app, diabetes_frame, quick_model

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

CHROMIUM = os.environ.get("MLOPS_TEST_CHROMIUM", "/usr/bin/chromium")  # CI on Ubuntu: google-chrome
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
SHOTS = ROOT / "logs" / "screenshots"
N_OK, N_BAD = 150, 6


@pytest.fixture
def browser() -> Any:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def live(gunicorn_factory: Any, served_instance: Path, tmp_path: Path) -> Any:
    """The example app under gunicorn (2 workers) with v1 in production, v2 registered, traffic and a drift run."""
    import requests

    app = build_app(served_instance, base_config(tmp_path))
    df = diabetes_frame()
    app.extensions["test_mlops"].register(
        "diabetes", quick_model(seed=1), app=app, reference=df[FEATURE_NAMES], threshold=0.5,
        metrics={"accuracy": 0.78, "f1": 0.67, "roc_auc": 0.84},
    )
    server = gunicorn_factory(served_instance, workers=2, env={"MLOPS_SECRET_KEY": "browser-test-secret"})

    def send(i: int) -> int:
        row = {**SAMPLE_ROW, "Glucose": 180 + (i % 40), "Age": 20 + (i % 50)}  # high glucose: drifted traffic
        if i < N_BAD:
            row["Glucose"] = "high"
        return requests.post(f"{server.url}/predict", json=row, headers={"Connection": "close"}, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        codes = list(pool.map(send, range(N_OK + N_BAD)))
    assert codes.count(200) == N_OK and codes.count(400) == N_BAD
    try:  # one stored drift run, for the trend and the HTML report (monitoring's service)
        from flask_mlops import get_state
        from flask_mlops.services.monitoring import WindowSpec, drift

        with app.app_context():
            drift(get_state(app), WindowSpec(model="diabetes", last=1000), persist=True, trigger="test")
    except ModuleNotFoundError:
        pass
    SHOTS.mkdir(parents=True, exist_ok=True)
    return server


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_dashboard_pages_in_chromium(browser: Any, live: Any) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    base = f"{live.url}/mlops"

    # not signed in: the login form, and after it the page we asked for
    response = page.goto(f"{base}/")
    assert response.status == 401
    _shot(page, "01-login")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    cookie = next(c for c in context.cookies() if c["name"] == "mlops_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and TOKEN not in cookie["value"]
    errors.clear()  # the 401 of the login page itself was expected

    # overview: production version, health, request volume and errors of the last 24 h
    card = page.locator("section[data-model=diabetes]")
    assert card.locator("[data-kpi=production-version]").inner_text() == "v1"
    assert card.locator("[data-kpi=requests]").inner_text() == str(N_OK + N_BAD)
    assert card.locator("[data-kpi=errors]").inner_text() == "0"  # 400s are client errors, not 5xx
    assert card.locator("[data-kpi=health]").inner_text() in ("healthy", "warning", "critical")
    assert card.locator("svg.chart").count() == 3
    _shot(page, "02-overview")

    # drift: every feature judged against the reference, the stored run in the trend
    page.click("nav >> text=Drift")
    rows = page.locator("section[data-model=diabetes] tr[data-feature]")
    assert rows.count() == len(FEATURE_NAMES) + 1  # + the prediction
    assert page.locator("tr[data-feature=Glucose] .badge").inner_text() in ("warning", "critical")
    runs = page.locator("[data-kpi=drift-runs]")
    if runs.count():
        assert int(runs.inner_text()) >= 1
    _shot(page, "03-drift")
    # the HTML drift report, styled under the dashboard's CSP (a console error would say "Refused to apply")
    page.click("text=HTML drift report")
    page.wait_for_url(f"{base}/reports/drift?*")
    assert page.evaluate("getComputedStyle(document.querySelector('.badge')).borderRadius") == "10px"
    assert page.evaluate("getComputedStyle(document.body).marginTop") == "24px"
    assert not errors, errors
    _shot(page, "03b-drift-report")
    page.go_back()

    # models: both versions, production alias, audit trail, and an admin button with confirmation
    page.click("nav >> text=Models")
    assert page.locator("tr[data-version='1'] .badge.alias").inner_text() == "production"
    assert page.locator("tr[data-version='2']").count() == 1
    assert page.locator("table.audit tbody tr").count() >= 3  # register v1, promote v1, register v2
    _shot(page, "04-models")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("tr[data-version='2'] button:has-text('Promote')")
    page.wait_for_url(f"{base}/models?*")
    notice = page.locator(".notice").inner_text()
    assert "diabetes" in notice and ("v2" in notice or "refused" in notice), notice

    for name, title in (("experiments", "Experiments"), ("jobs", "Jobs")):
        page.click(f"nav >> text={title}")
        assert page.locator("h1").inner_text() == title
        assert "could not load" not in page.content()
        _shot(page, f"05-{name}")

    # phone width: no sideways scrolling of the page itself (wide tables scroll in their own box)
    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    phone.add_cookies([{**cookie}])
    mobile = phone.new_page()
    mobile.goto(f"{base}/")
    assert mobile.locator("[data-kpi=requests]").inner_text() == str(N_OK + N_BAD)
    assert mobile.evaluate("document.documentElement.scrollWidth") <= 390
    _shot(mobile, "06-overview-phone")
    mobile.goto(f"{base}/drift")
    assert mobile.evaluate("document.documentElement.scrollWidth") <= 390
    _shot(mobile, "07-drift-phone")
    assert not errors, errors  # no CSP violations or script errors

    # logging out ends the session on the server: the phone's copy of the cookie stops working
    page.click("button:has-text('Log out')")
    page.wait_for_url(f"{base}/login")
    assert mobile.goto(f"{base}/").status == 401


def test_screenshots_folder_is_not_committed() -> None:
    ignore = (ROOT / ".gitignore").read_text()
    assert "logs/" in ignore or "logs/*" in ignore or "/logs" in ignore
