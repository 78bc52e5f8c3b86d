"""Inline SVG charts for the dashboard: server-rendered, no JavaScript, no CDN, scale to any width."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

W, H, PAD_L, PAD_B, PAD_T = 600.0, 160.0, 44.0, 22.0, 10.0


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _frame(title: str, body: list[str], y_max: float, labels: Sequence[str]) -> Markup:
    plot_h = H - PAD_B - PAD_T
    parts = [
        f'<svg class="chart" viewBox="0 0 {W:.0f} {H:.0f}" role="img" aria-label="{escape(title)}" preserveAspectRatio="none">',
        f"<title>{escape(title)}</title>",
    ]
    for frac in (0.0, 0.5, 1.0):
        y = PAD_T + plot_h * (1 - frac)
        parts.append(f'<line class="grid" x1="{PAD_L}" x2="{W}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{PAD_L - 4}" y="{y + 4:.1f}" text-anchor="end">{_fmt(y_max * frac)}</text>')
    if labels:
        step = max(1, len(labels) // 6)
        width = (W - PAD_L) / len(labels)
        for i in range(0, len(labels), step):
            x = PAD_L + width * (i + 0.5)
            parts.append(f'<text class="axis" x="{x:.1f}" y="{H - 6:.0f}" text-anchor="middle">{escape(labels[i])}</text>')
    parts += body
    parts.append("</svg>")
    return Markup("".join(parts))


def bars(values: Sequence[float | None], labels: Sequence[str], *, title: str, danger: Sequence[bool] | None = None) -> Markup:
    """A bar per value (None = no data: no bar)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    y_max = max(finite, default=0.0) or 1.0
    plot_h = H - PAD_B - PAD_T
    width = (W - PAD_L) / max(len(values), 1)
    body = []
    for i, value in enumerate(values):
        if value is None or not math.isfinite(value):
            continue
        h = plot_h * value / y_max
        cls = "bar danger" if danger and danger[i] else "bar"
        body.append(
            f'<rect class="{cls}" x="{PAD_L + width * i + width * 0.1:.1f}" y="{PAD_T + plot_h - h:.1f}" '
            f'width="{width * 0.8:.1f}" height="{h:.1f}"><title>{escape(labels[i])}: {_fmt(value)}</title></rect>'
        )
    return _frame(title, body, y_max, labels)


def line(
    values: Sequence[float | None],
    labels: Sequence[str],
    *,
    title: str,
    thresholds: Sequence[tuple[float, str]] = (),
) -> Markup:
    """A line through the values (gaps at None), with dashed horizontal threshold lines."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    y_max = max([*finite, *(t for t, _ in thresholds)], default=0.0) * 1.1 or 1.0
    plot_h = H - PAD_B - PAD_T
    width = (W - PAD_L) / max(len(values), 1)
    body = []
    for limit, cls in thresholds:
        y = PAD_T + plot_h * (1 - limit / y_max)
        body.append(f'<line class="threshold {escape(cls)}" x1="{PAD_L}" x2="{W}" y1="{y:.1f}" y2="{y:.1f}"><title>{escape(cls)}: {_fmt(limit)}</title></line>')
    segment: list[str] = []
    segments = []
    points = []
    for i, value in enumerate(values):
        if value is None or not math.isfinite(value):
            if segment:
                segments.append(segment)
            segment = []
            continue
        x, y = PAD_L + width * (i + 0.5), PAD_T + plot_h * (1 - value / y_max)
        segment.append(f"{x:.1f},{y:.1f}")
        points.append(f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{escape(labels[i])}: {_fmt(value)}</title></circle>')
    if segment:
        segments.append(segment)
    body += [f'<polyline class="line" points="{" ".join(s)}"/>' for s in segments]
    body += points
    return _frame(title, body, y_max, labels)


def meter(value: float | None, thresholds: Sequence[float], *, title: str) -> Markup:
    """A horizontal bar of `value` against monitor/warning/critical marks (drift per feature)."""
    top: float = max([*(thresholds or [1.0]), value or 0.0]) * 1.15 or 1.0
    parts = [f'<svg class="meter" viewBox="0 0 200 14" role="img" aria-label="{escape(title)}" preserveAspectRatio="none"><title>{escape(title)}</title>']
    parts.append('<rect class="track" x="0" y="3" width="200" height="8" rx="2"/>')
    if value is not None and math.isfinite(value):
        level = sum(value >= t for t in thresholds)
        parts.append(f'<rect class="fill l{level}" x="0" y="3" width="{200 * min(value, top) / top:.1f}" height="8" rx="2"/>')
    for t in thresholds:
        parts.append(f'<line class="mark" x1="{200 * t / top:.1f}" x2="{200 * t / top:.1f}" y1="0" y2="14"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def lines(
    series: Sequence[tuple[str, Sequence[float | None], str]],
    labels: Sequence[str],
    *,
    title: str,
    thresholds: Sequence[tuple[float, str]] = (),
    y_max: float | None = None,
    dots: bool = True,
) -> Markup:
    """Several lines over the same x labels, each `(name, values, css class)`, with a legend under the plot."""
    finite = [v for _, values, _ in series for v in values if v is not None and math.isfinite(v)]
    top = y_max if y_max is not None else (max([*finite, *(t for t, _ in thresholds)], default=0.0) * 1.1 or 1.0)
    plot_h = H - PAD_B - PAD_T
    width = (W - PAD_L) / max(len(labels), 1)
    body = []
    for limit, cls in thresholds:
        y = PAD_T + plot_h * (1 - limit / top)
        body.append(f'<line class="threshold {escape(cls)}" x1="{PAD_L}" x2="{W}" y1="{y:.1f}" y2="{y:.1f}"><title>{escape(cls)}: {_fmt(limit)}</title></line>')
    for name, values, cls in series:
        segment: list[str] = []
        for i, value in enumerate(values):
            if value is None or not math.isfinite(value):
                if len(segment) > 1:
                    body.append(f'<polyline class="line {escape(cls)}" points="{" ".join(segment)}"/>')
                segment = []
                continue
            x, y = PAD_L + width * (i + 0.5), PAD_T + plot_h * (1 - min(value, top) / top)
            segment.append(f"{x:.1f},{y:.1f}")
            if dots:
                body.append(f'<circle class="dot {escape(cls)}" cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{escape(name)} {escape(labels[i])}: {_fmt(value)}</title></circle>')
        if len(segment) > 1:
            body.append(f'<polyline class="line {escape(cls)}" points="{" ".join(segment)}"/>')
    chart = _frame(title, body, top, labels)
    legend = "".join(f'<span class="key {escape(cls)}">{escape(name)}</span>' for name, _, cls in series)
    return Markup(f'{chart}<div class="legend">{legend}</div>')


def histogram(labels: Sequence[str], reference: Sequence[float], current: Sequence[float], *, title: str) -> Markup:
    """Reference vs current share per bin, side by side (the drift page's distributions)."""
    n = max(len(labels), 1)
    top = max([*reference, *current, 0.0]) * 1.1 or 1.0
    width, height, pad_b, pad_t = 300.0, 120.0, 16.0, 6.0
    plot_h = height - pad_b - pad_t
    slot = width / n
    parts = [
        f'<svg class="hist" viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{escape(title)}" preserveAspectRatio="none">',
        f"<title>{escape(title)}</title>",
        f'<line class="grid" x1="0" x2="{width:.0f}" y1="{pad_t + plot_h:.1f}" y2="{pad_t + plot_h:.1f}"/>',
    ]
    for i, label in enumerate(labels):
        for k, (cls, values) in enumerate((("ref", reference), ("cur", current))):
            value = values[i] if i < len(values) else 0.0
            h = plot_h * value / top
            x = slot * i + slot * (0.1 + 0.4 * k)
            parts.append(
                f'<rect class="{cls}" x="{x:.1f}" y="{pad_t + plot_h - h:.1f}" width="{slot * 0.4:.1f}" height="{h:.1f}">'
                f"<title>{escape(label)}: {'reference' if cls == 'ref' else 'current'} {value:.1%}</title></rect>"
            )
    step = max(1, -(-n // 3))
    for i in range(0, n, step):
        parts.append(f'<text class="axis" x="{slot * (i + 0.5):.1f}" y="{height - 3:.0f}" text-anchor="middle">{escape(labels[i][:10])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
