"""A run's evaluation as one self-contained HTML page: tables and inline SVG plots.

Nothing is fetched when the page opens (no CDN, no script): a reviewer can mail the
file, archive it with the model, or open it on an air-gapped machine. The plots are
drawn here as SVG from the stored metrics — the loss curve, the confusion matrix as a
heatmap and the reliability diagram — so the page shows exactly the stored numbers.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from chainkeeper.training.evaluation import format_report

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}pre{background:#f8f8f8;padding:.5rem}
svg{margin:.5rem 0 1.5rem;background:#fff}h2{border-bottom:1px solid #ddd}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "–"


def line_plot_svg(points: Sequence[Sequence[float]], *, title: str, width: int = 520, height: int = 220) -> str:
    """An SVG polyline of (x, y) points with min/max labels on both axes.

    Args:
        points: (x, y) pairs, e.g. (step, loss).
        title: drawn above the plot.

    Returns:
        An ``<svg>`` element; a note instead of a line when there are no points.
    """
    pad = 40
    if not points:
        return f'<svg width="{width}" height="40"><text x="5" y="25">{_e(title)}: no points</text></svg>'
    xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (width - 2 * pad) / ((x1 - x0) or 1.0)
    sy = (height - 2 * pad) / ((y1 - y0) or 1.0)
    coords = " ".join(f"{pad + (x - x0) * sx:.1f},{height - pad - (y - y0) * sy:.1f}"
                      for x, y in zip(xs, ys, strict=True))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{_e(title)}"><text x="{pad}" y="18" font-weight="bold">{_e(title)}</text>'
        f'<rect x="{pad}" y="{pad}" width="{width - 2 * pad}" height="{height - 2 * pad}" fill="none" stroke="#999"/>'
        f'<polyline points="{coords}" fill="none" stroke="#1f77b4" stroke-width="2"/>'
        f'<text x="{pad}" y="{height - pad + 15}" font-size="11">{x0:g}</text>'
        f'<text x="{width - pad}" y="{height - pad + 15}" font-size="11" text-anchor="end">{x1:g}</text>'
        f'<text x="{pad - 4}" y="{height - pad}" font-size="11" text-anchor="end">{y0:.3g}</text>'
        f'<text x="{pad - 4}" y="{pad + 10}" font-size="11" text-anchor="end">{y1:.3g}</text></svg>'
    )


def confusion_svg(matrix: Sequence[Sequence[int]], labels: Sequence[str], *, cell: int = 0) -> str:
    """The confusion matrix as a heatmap: rows true, columns predicted, darker = more
    rows (each row scaled to its own total, so small classes stay readable)."""
    k = len(labels)
    cell = cell or max(8, min(40, 600 // max(k, 1)))
    margin = 120
    size = margin + k * cell
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size + 10}" height="{size + 10}" role="img" '
             f'aria-label="confusion matrix">']
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        parts.append(f'<text x="{margin - 4}" y="{margin + i * cell + cell * 0.7:.1f}" font-size="10" '
                     f'text-anchor="end">{_e(labels[i])[:18]}</text>')
        for j, count in enumerate(row):
            shade = count / total
            parts.append(
                f'<rect x="{margin + j * cell}" y="{margin + i * cell}" width="{cell}" height="{cell}" '
                f'fill="rgb({int(255 - 224 * shade)},{int(255 - 136 * shade)},{int(255 - 75 * shade)})" '
                f'stroke="#eee"><title>true {_e(labels[i])}, predicted {_e(labels[j])}: {count}</title></rect>')
            if cell >= 24 and count:
                parts.append(f'<text x="{margin + j * cell + cell / 2}" y="{margin + i * cell + cell * 0.65:.1f}" '
                             f'font-size="10" text-anchor="middle">{count}</text>')
    for j, label in enumerate(labels):
        x = margin + j * cell + cell * 0.7
        parts.append(f'<text x="{x:.1f}" y="{margin - 4}" font-size="10" '
                     f'transform="rotate(-60 {x:.1f} {margin - 4})">{_e(label)[:18]}</text>')
    parts.append("</svg>")
    return "".join(parts)


def reliability_svg(calibration: Mapping[str, Any], *, size: int = 260) -> str:
    """The reliability diagram: accuracy per confidence bin against the diagonal of a
    perfectly calibrated model."""
    pad = 30
    inner = size - 2 * pad
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" role="img" '
             f'aria-label="reliability diagram">',
             f'<rect x="{pad}" y="{pad}" width="{inner}" height="{inner}" fill="none" stroke="#999"/>',
             f'<line x1="{pad}" y1="{pad + inner}" x2="{pad + inner}" y2="{pad}" stroke="#aaa" stroke-dasharray="4"/>',
             f'<text x="{pad}" y="18" font-size="12">ECE {_num(calibration.get("ece"))}</text>']
    for b in calibration.get("bins", []):
        if not b["count"]:
            continue
        x = pad + b["lower"] * inner
        w = (b["upper"] - b["lower"]) * inner
        h = b["accuracy"] * inner
        parts.append(f'<rect x="{x:.1f}" y="{pad + inner - h:.1f}" width="{w:.1f}" height="{h:.1f}" '
                     f'fill="#1f77b4" fill-opacity="0.7" stroke="#fff"><title>confidence {b["confidence"]:.3f}, '
                     f'accuracy {b["accuracy"]:.3f}, {b["count"]} rows</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def _entity_section(split: str, m: Mapping[str, Any]) -> str:
    """Token classification: entity-level scores (seqeval) per type, then the token-level report."""
    rows = "".join(f"<tr><td>{_e(kind)}</td><td>{_num(v.get('precision'))}</td><td>{_num(v.get('recall'))}</td>"
                   f"<td>{_num(v.get('f1-score'))}</td><td>{_e(int(v.get('support', 0)))}</td></tr>"
                   for kind, v in (m.get("per_type") or {}).items())
    return (f"<h2>{split} split ({_e(m.get('sentences'))} sentences)</h2><h3>Entity level (seqeval, IOB2)</h3>"
            "<table><tr><th>entity type</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
            f"{rows}<tr><th>micro avg</th><th>{_num(m.get('precision'))}</th><th>{_num(m.get('recall'))}</th>"
            f"<th>{_num(m.get('f1'))}</th><th></th></tr></table>"
            f"<h3>Token level</h3><pre>{_e(format_report(m['token'], digits=4))}</pre>")


def reproducibility_table(record: Mapping[str, Any]) -> str:
    """The run's reproducibility record as a two-column table (empty when none)."""
    if not record:
        return ""
    flat: list[tuple[str, Any]] = []
    for key, value in record.items():
        if isinstance(value, Mapping):
            flat.extend((f"{key}.{k}", v) for k, v in value.items())
        else:
            flat.append((key, value))
    return ("<h2>Reproducibility</h2><table><tr><th>item</th><th>value</th></tr>"
            + "".join(f"<tr><td>{_e(k)}</td><td><code>{_e(v)}</code></td></tr>" for k, v in flat) + "</table>")


def render_report_html(run: Mapping[str, Any]) -> str:
    """The evaluation report of one run as a self-contained HTML page.

    Args:
        run: ``{"id", "state", "task", "dataset_version_id", "base_model", "config",
            "metrics"}`` (``dataclasses.asdict`` of a ``Run`` works).

    Returns:
        The page, UTF-8 text, with no external references.
    """
    metrics: Mapping[str, Any] = run.get("metrics") or {}
    train = metrics.get("train") or {}
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>Run {_e(run['id'])} report</title>"
           f"<style>{_STYLE}</style></head><body>",
           f"<h1>Training run {_e(run['id'])}</h1>",
           f"<p>State <b>{_e(run.get('state'))}</b> · task {_e(run.get('task'))} · dataset version "
           f"{_e(run.get('dataset_version_id'))} · base model <code>{_e(run.get('base_model'))}</code></p>"]
    if metrics.get("error"):
        out.append(f"<p><b>Error:</b> {_e(metrics['error'])}</p>")
    out.append("<h2>Training</h2><table><tr><th>steps</th><th>rows</th><th>seconds</th><th>samples/s</th>"
               "<th>final loss</th><th>stopped</th><th>resumed from step</th></tr>"
               f"<tr><td>{_e(train.get('steps', '–'))}</td><td>{_e(train.get('rows', '–'))}</td>"
               f"<td>{_num(train.get('seconds'), 1)}</td><td>{_num(train.get('samples_per_s'), 1)}</td>"
               f"<td>{_num(train.get('final_loss'))}</td><td>{_e(train.get('stop_reason') or 'no')}</td>"
               f"<td>{_e(train.get('resumed_from_step') or '–')}</td></tr></table>")
    out.append(line_plot_svg(train.get("loss_curve") or [], title="training loss by step"))
    dev_curve = train.get("dev_curve") or []
    if dev_curve:
        key = next((k for k in ("f1", "macro_f1", "loss") if k in dev_curve[0]), None)
        if key is not None:
            out.append(line_plot_svg([(p["step"], p[key]) for p in dev_curve], title=f"dev {key} by step"))
    for split in ("dev", "test"):
        m = metrics.get(split)
        if not m:
            continue
        if "token" in m:
            out.append(_entity_section(split, m))
            continue
        if "perplexity" in m:
            out.append(f"<h2>{split} split ({_e(m.get('texts'))} texts)</h2><table><tr><th>metric</th>"
                       f"<th>value</th></tr><tr><td>loss</td><td>{_num(m.get('loss'))}</td></tr><tr><td>perplexity"
                       f"</td><td>{_num(m.get('perplexity'), 2)}</td></tr><tr><td>tokens scored</td>"
                       f"<td>{_e(m.get('tokens'))}</td></tr></table>")
            continue
        out.append(f"<h2>{split} split ({_e(m.get('support'))} rows)</h2>")
        out.append("<table><tr><th>metric</th><th>value</th></tr>" + "".join(
            f"<tr><td>{key}</td><td>{_num(m.get(key))}</td></tr>"
            for key in ("accuracy", "micro_f1", "macro_f1", "weighted_f1", "macro_precision", "macro_recall")
            if key in m) + "</table>")
        if "per_class" in m:
            out.append(f"<h3>Per class</h3><pre>{_e(format_report(m, digits=3))}</pre>")
        if "confusion_matrix" in m:
            out.append("<h3>Confusion matrix</h3>" + confusion_svg(m["confusion_matrix"], m["labels"]))
        if "calibration" in m:
            out.append("<h3>Calibration</h3>" + reliability_svg(m["calibration"]))
        if m.get("by_language"):
            out.append("<h3>By language</h3><table><tr><th>language</th><th>rows</th><th>accuracy</th>"
                       "<th>macro-F1</th></tr>" + "".join(
                           f"<tr><td>{_e(lang)}</td><td>{_e(v['count'])}</td><td>{_num(v['accuracy'])}</td>"
                           f"<td>{_num(v['macro_f1'])}</td></tr>" for lang, v in m["by_language"].items())
                       + "</table>")
        for name, groups in (m.get("slices") or {}).items():
            out.append(f"<h3>By {_e(name)}</h3><table><tr><th>slice</th><th>rows</th><th>accuracy</th>"
                       "<th>macro-F1</th></tr>" + "".join(
                           f"<tr><td>{_e(g)}</td><td>{v['support']}</td><td>{_num(v['accuracy'])}</td>"
                           f"<td>{_num(v['macro_f1'])}</td></tr>" for g, v in groups.items()) + "</table>")
    out.append(reproducibility_table(run.get("reproducibility") or {}))
    out.append("<h2>Config</h2><table><tr><th>key</th><th>value</th></tr>" + "".join(
        f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in sorted((run.get("config") or {}).items()))
        + "</table></body></html>")
    return "\n".join(out)
