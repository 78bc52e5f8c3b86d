"""The HTML drift report: per-feature reference-vs-current histograms (inline SVG) and scores.

No script, no external URL, no `style` attribute. Served by the API under the dashboard's
Content-Security-Policy (`style-src 'self'`), the page links the package stylesheet
(`dashboard/static/mlops-report.css`); a saved copy (`logs/reports/`) inlines the same CSS,
so it reads offline, attached to a ticket.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from html import escape
from importlib import resources
from typing import Any

LEVELS = ("ok", "monitor", "warning", "critical")
REF, CUR = "#90a4ae", "#1e88e5"  # the bars' fills (SVG presentation attributes, which CSP allows)
STYLESHEET = "mlops-report.css"


@functools.cache
def report_css() -> str:
    """The stylesheet, for a self-contained copy of the page."""
    return (resources.files("flask_mlops") / "dashboard" / "static" / STYLESHEET).read_text(encoding="utf-8")


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def _badge(level: str | None) -> str:
    kind = f" {level}" if level in LEVELS else ""
    return f'<span class="badge{kind}">{escape(str(level or "n/a"))}</span>'


def histogram_svg(labels: list[str], reference: list[float], current: list[float], *, width: int = 520, height: int = 170) -> str:
    """Grouped bars of the reference and current share of each bin."""
    n = max(len(labels), 1)
    top = max([*reference, *current, 0.01])
    pad_left, pad_bottom, plot_h = 34, 44, height - 54
    slot = (width - pad_left - 6) / n
    bar = max(slot * 0.38, 1.0)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="histogram">']
    for frac in (0.0, 0.5, 1.0):
        y = 8 + plot_h * (1 - frac)
        parts.append(f'<line x1="{pad_left}" x2="{width - 4}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eeeeee"/>')
        parts.append(f'<text x="{pad_left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end" fill="#757575">{top * frac:.0%}</text>')
    for i, label in enumerate(labels):
        x0 = pad_left + i * slot + slot * 0.1
        for j, (value, colour) in enumerate(((reference[i], REF), (current[i], CUR))):
            h = plot_h * (value / top)
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{8 + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{escape(label)}: {'reference' if j == 0 else 'current'} {value:.1%}</title></rect>"
            )
        short = label if len(label) <= 12 else label[:11] + "…"
        tx, ty = x0 + bar, height - pad_bottom + 14
        parts.append(f'<text x="{tx:.1f}" y="{ty}" font-size="9" fill="#616161" transform="rotate(30 {tx:.1f} {ty})">{escape(short)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _feature_card(name: str, f: Mapping[str, Any]) -> str:
    hist = f.get("histogram") or {}
    # one row per stat test that ran (a newly registered test shows up here with no edit)
    tests = [
        (name, f"{t.get('level')}: {_fmt(t.get('value'))}" + (f", p={_fmt(t.get('pvalue'))}" if t.get("pvalue") is not None else "")
         + (f", floor {_fmt(t.get('floor'))}" if t.get("floor") is not None else ""))
        for name, t in (f.get("tests") or {}).items()
    ]
    scores = [
        ("decided by", f.get("decided_by")),
        *tests,
        ("missing (ref → cur)", f"{_fmt(f.get('reference_missing_rate'))} → {_fmt(f.get('missing_rate'))}"),
        ("out of range", f.get("out_of_range_rate")),
        ("values (ref / cur)", f"{f.get('n_reference')} / {f.get('n_current')}"),
    ]
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(_fmt(v))}</td></tr>" for k, v in scores if v is not None)
    svg = histogram_svg(list(hist.get("labels", [])), list(hist.get("reference", [])), list(hist.get("current", []))) if hist else ""
    return (
        f'<div class="card"><div class="head"><h2>{escape(name)}</h2>{_badge(f.get("level"))}'
        f'<span class="meta">{escape(str(f.get("type", "")))}</span></div>'
        f'<p class="why">{escape(str(f.get("why", "")))}</p>'
        f'<div class="head">{svg}<table>{rows}</table></div></div>'
    )


def render_drift_html(report: Mapping[str, Any], *, title: str = "Drift report", stylesheet: str | None = None) -> str:
    """The page for one drift report (the dict of `DriftReport.to_dict()`).

    `stylesheet` is the URL of `mlops-report.css` for a served page; without it the CSS is
    inlined (a self-contained file).
    """
    window = report.get("window") or {}
    meta = ", ".join(f"{k}={v}" for k, v in window.items() if v is not None)
    body = [
        f"<h1>{escape(title)} {_badge(report.get('level'))}</h1>",
        f'<div class="meta">{escape(meta)}</div>',
        f"<p>{escape(str(report.get('message', '')))}</p>",
        '<div class="legend">bins: <span class="ref"></span>reference <span class="cur"></span>current</div>',
    ]
    if report.get("status") != "ok":
        body.append(f"<p><strong>{escape(str(report.get('status')))}</strong></p>")
    for name, feature in (report.get("features") or {}).items():
        body.append(_feature_card(name, feature))
    prediction = report.get("prediction")
    if prediction:
        body.append(_feature_card(f"prediction ({prediction.get('name')})", prediction))
    style = f'<link rel="stylesheet" href="{escape(stylesheet)}">' if stylesheet else f"<style>{report_css()}</style>"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'  # no /favicon.ico request
        f"<title>{escape(title)}</title>{style}</head><body>{''.join(body)}</body></html>"
    )


__all__ = ["histogram_svg", "render_drift_html"]
