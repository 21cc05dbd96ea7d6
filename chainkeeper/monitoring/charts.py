"""Inline SVG charts of monitoring: values in, an ``<svg>`` string out (no script, no CDN).

- ``bar_chart_svg``: horizontal bars (accuracy per slice, confused pairs, statistic /
  threshold per drift check with a line at 1).
- ``series_svg``: one or more time series on a shared time axis, with optional
  horizontal reference lines (live accuracy against the offline number).

Text is escaped; every chart has ``role="img"`` and an ``aria-label`` naming it.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import datetime

__all__ = ["bar_chart_svg", "series_svg"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
# A bar chart shows at most this many bars (the first ones given).
MAX_BARS = 30


def _e(value: object) -> str:
    return html.escape(str(value))


def bar_chart_svg(items: Sequence[tuple[str, float]], *, title: str, maximum: float | None = None,
                  marker: float | None = None, highlight: Sequence[bool] | None = None, width: int = 560) -> str:
    """Horizontal bars, one per (name, value).

    Args:
        maximum: the value of a full bar (default: the largest value).
        marker: draw a dashed vertical line at this value (e.g. 1.0 = the threshold).
        highlight: per item, draw its bar in the alarm colour.
    """
    items = list(items)[:MAX_BARS]
    if not items:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="30" role="img" ' \
               f'aria-label="{_e(title)}"><text x="4" y="20">{_e(title)}: nothing to show</text></svg>'
    label_w, bar_h, top = 190, 18, 26
    scale_max = maximum or max([v for _, v in items] + [marker or 0.0]) or 1.0
    inner = width - label_w - 60
    height = top + len(items) * (bar_h + 4) + 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{_e(title)}"><text x="4" y="16" font-weight="bold">{_e(title)}</text>']
    for i, (name, value) in enumerate(items):
        y = top + i * (bar_h + 4)
        w = max(0.0, min(1.0, value / scale_max)) * inner
        color = PALETTE[1] if highlight and highlight[i] else PALETTE[0]
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" font-size="11" text-anchor="end">{_e(name)[:30]}</text>'
                     f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}">'
                     f'<title>{_e(name)}: {value:.4g}</title></rect>'
                     f'<text x="{label_w + w + 4:.1f}" y="{y + 13}" font-size="11">{value:.3g}</text>')
    if marker is not None:
        x = label_w + min(1.0, marker / scale_max) * inner
        parts.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 4}" stroke="#555" '
                     f'stroke-dasharray="4"/>')
    parts.append("</svg>")
    return "".join(parts)


def series_svg(series: Mapping[str, Sequence[tuple[datetime, float]]], *, title: str,
               references: Mapping[str, float] | None = None, low: float | None = None, high: float | None = None,
               width: int = 640, height: int = 240) -> str:
    """Time series as polylines (with a dot per point) and dashed reference lines.

    Args:
        series: name -> (time, value) points.
        references: name -> a constant drawn across the chart (e.g. the offline accuracy).
        low, high: the value axis (default: the data's range, references included).
    """
    points = [p for values in series.values() for p in values]
    refs = dict(references or {})
    if not points:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="30" role="img" ' \
               f'aria-label="{_e(title)}"><text x="4" y="20">{_e(title)}: no points yet</text></svg>'
    pad_l, pad_r, pad_t, pad_b = 50, 150, 26, 28
    t0 = min(t for t, _ in points).timestamp()
    t1 = max(t for t, _ in points).timestamp()
    values = [v for _, v in points] + list(refs.values())
    y0 = min(values) if low is None else low
    y1 = max(values) if high is None else high
    sx = (width - pad_l - pad_r) / ((t1 - t0) or 1.0)
    sy = (height - pad_t - pad_b) / ((y1 - y0) or 1.0)

    def xy(t: datetime, v: float) -> str:
        x = pad_l + (t.timestamp() - t0) * sx if t1 > t0 else (width - pad_r + pad_l) / 2
        return f"{x:.1f},{height - pad_b - (v - y0) * sy:.1f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{_e(title)}"><text x="4" y="16" font-weight="bold">{_e(title)}</text>',
             f'<rect x="{pad_l}" y="{pad_t}" width="{width - pad_l - pad_r}" height="{height - pad_t - pad_b}" '
             f'fill="none" stroke="#bbb"/>',
             f'<text x="{pad_l - 4}" y="{pad_t + 10}" font-size="11" text-anchor="end">{y1:.3g}</text>',
             f'<text x="{pad_l - 4}" y="{height - pad_b}" font-size="11" text-anchor="end">{y0:.3g}</text>',
             f'<text x="{pad_l}" y="{height - 8}" font-size="11">{min(t for t, _ in points):%m-%d %H:%M}</text>',
             f'<text x="{width - pad_r}" y="{height - 8}" font-size="11" text-anchor="end">'
             f'{max(t for t, _ in points):%m-%d %H:%M}</text>']
    legend_y = pad_t + 10
    for i, (name, value) in enumerate(refs.items()):
        y = height - pad_b - (value - y0) * sy
        color = PALETTE[(i + len(series)) % len(PALETTE)]
        parts.append(f'<line x1="{pad_l}" y1="{y:.1f}" x2="{width - pad_r}" y2="{y:.1f}" stroke="{color}" '
                     f'stroke-dasharray="5"><title>{_e(name)}: {value:.4g}</title></line>'
                     f'<text x="{width - pad_r + 8}" y="{legend_y}" font-size="11" fill="{color}">'
                     f'- - {_e(name)}</text>')
        legend_y += 16
    for i, (name, line) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        coords = " ".join(xy(t, v) for t, v in line)
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>')
        for t, v in line:
            cx, cy = xy(t, v).split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{color}"><title>{_e(name)} {t:%Y-%m-%d %H:%M}: '
                         f'{v:.4g}</title></circle>')
        parts.append(f'<text x="{width - pad_r + 8}" y="{legend_y}" font-size="11" fill="{color}">— {_e(name)}</text>')
        legend_y += 16
    parts.append("</svg>")
    return "".join(parts)
