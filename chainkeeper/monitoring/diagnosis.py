"""Diagnosis: where a deployed model fails, from its prediction log and the feedback on it.

``diagnose`` gathers the labelled predictions of a time range and returns one JSON-ready
report: accuracy per slice (text length, script, predicted label), the most confused
(true, predicted) pairs, the lowest-confidence answers, the confidently wrong ones and
the latency outliers. ``render_diagnosis_html`` turns it into a self-contained page
(inline SVG, no script, nothing fetched), like the training stage's evaluation report.

``diagnosis_report`` is the pure part: rows in, report out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chainkeeper.data import detect_script
from chainkeeper.governance.actors import Actor
from chainkeeper.monitoring.access import authorize_for_deployment
from chainkeeper.monitoring.charts import bar_chart_svg
from chainkeeper.monitoring.quality import (
    LabelledPrediction,
    labelled_predictions,
    score_window,
    time_window,
)
from chainkeeper.serving import get_deployment_by_name
from chainkeeper.training import (
    calibration_report,
    length_bucket,
    reliability_svg,
    slice_metrics,
)

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["EXAMPLES", "diagnose", "diagnosis_report", "render_diagnosis_html"]

# How many examples each list of the report shows.
EXAMPLES = 10
# A latency above this many times the median (and above p99) is an outlier.
LATENCY_FACTOR = 3.0
# The page's template sits with the web UI's (packaged with them); it extends nothing, so
# the standalone page and the web route render the same file.
_TEMPLATES = Path(__file__).parent.parent / "web" / "templates"


def _example(row: LabelledPrediction) -> dict[str, Any]:
    return {"request_id": row.request_id, "at": row.at.isoformat(), "text": row.input_text[:300],
            "predicted": row.predicted, "confidence": round(row.confidence, 4), "truth": row.truth,
            "latency_ms": round(row.latency_ms, 2)}


def _script(text: str) -> str:
    import pyarrow as pa

    return str(detect_script(pa.array([text], pa.string()))[0])


def diagnosis_report(rows: Sequence[LabelledPrediction], *, examples: int = EXAMPLES) -> dict[str, Any]:
    """The failure analysis of some logged predictions (pure apart from script detection).

    Args:
        rows: predictions with their true labels where feedback exists.
        examples: how many rows each example list holds.

    Returns:
        ``{"predictions", "labelled", "overall", "slices": {name: {group: {...}}},
        "confused_pairs": [...], "low_confidence": [...], "wrong": [...],
        "latency": {"p50_ms", "p99_ms", "outliers": [...]}, "calibration"}``.
    """
    labelled = [r for r in rows if r.truth is not None]
    truth = [r.truth for r in labelled if r.truth is not None]  # every labelled row's, in order
    predicted = [r.predicted for r in labelled]
    labels = sorted(set(truth) | set(predicted))
    slices: dict[str, Any] = {}
    if labelled:
        groups = {"text length": [length_bucket(r.input_text) for r in labelled],
                  "script": [_script(r.input_text) for r in labelled],
                  "predicted label": predicted}
        slices = {name: slice_metrics(truth, predicted, values, labels)
                  for name, values in groups.items()}
    pairs = Counter((r.truth, r.predicted) for r in labelled if r.truth != r.predicted)
    latencies = np.asarray([r.latency_ms for r in rows], dtype=float)
    p50 = float(np.percentile(latencies, 50)) if len(latencies) else None
    p99 = float(np.percentile(latencies, 99)) if len(latencies) else None
    outliers = sorted((r for r in rows if p50 is not None and p99 is not None
                       and r.latency_ms > max(p99, LATENCY_FACTOR * p50)),
                      key=lambda r: -r.latency_ms)
    wrong = sorted((r for r in labelled if r.truth != r.predicted), key=lambda r: -r.confidence)
    return {
        "predictions": len(rows),
        "labelled": len(labelled),
        "overall": score_window(truth, predicted, [r.confidence for r in labelled]),
        "slices": slices,
        "confused_pairs": [{"truth": t, "predicted": p, "count": n} for (t, p), n in pairs.most_common(examples)],
        "low_confidence": [_example(r) for r in sorted(rows, key=lambda r: r.confidence)[:examples]],
        "wrong": [_example(r) for r in wrong[:examples]],
        "latency": {"p50_ms": p50, "p99_ms": p99, "outliers": [_example(r) for r in outliers[:examples]]},
        "calibration": calibration_report([r.confidence for r in labelled],
                                          [r.truth == r.predicted for r in labelled]) if labelled else None,
    }


def diagnose(ctx: Context, deployment: str, *, actor: Actor, since: datetime | None = None,
             until: datetime | None = None, examples: int = EXAMPLES) -> dict[str, Any]:
    """The diagnosis report of a deployment's traffic in ``(since, until]`` (default: the last 7 days).

    Args:
        actor: who reads (``monitoring.read`` in the deployment's project).

    Raises:
        Forbidden: the actor may not read it. NotFound: no such deployment.
    """
    authorize_for_deployment(ctx.db, actor, "monitoring.read", deployment)
    db = ctx.db
    dep = get_deployment_by_name(db, deployment)
    since, until = time_window(since, until, timedelta(days=1), 7)
    report = diagnosis_report(labelled_predictions(db, dep.id, since=since, until=until), examples=examples)
    return {"deployment": deployment, "model_version_id": dep.model_version_id, "since": since.isoformat(),
            "until": until.isoformat(), **report}


def render_diagnosis_html(report: dict[str, Any]) -> str:
    """The report as a self-contained HTML page with inline SVG plots."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape
    from markupsafe import Markup

    env = Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=select_autoescape(["html"]))
    plots = {"slices": {name: Markup(bar_chart_svg([(g, v["accuracy"]) for g, v in groups.items()],
                                                   title=f"accuracy by {name}", maximum=1.0))
                        for name, groups in report["slices"].items()},
             "pairs": Markup(bar_chart_svg([(f"{p['truth']} → {p['predicted']}", p["count"])
                                            for p in report["confused_pairs"]], title="most confused pairs")),
             "reliability": Markup(reliability_svg(report["calibration"])) if report["calibration"] else None}
    return env.get_template("monitoring_diagnosis.html").render(report=report, plots=plots)
