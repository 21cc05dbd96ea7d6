"""``chainkeeper monitor``: feedback, live quality, drift checks and the diagnosis report.

Each command acts as the user behind --token / CHAINKEEPER_TOKEN; the monitoring functions
decide, in the project of the deployment, as they do for the API (reading needs ``monitoring.read``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from chainkeeper import monitoring
from chainkeeper.cli.alerts import alerts_app, tickets_app
from chainkeeper.cli.jobs import job_json
from chainkeeper.cli.schedules import describe, schedule_json
from chainkeeper.cli.state import (
    JSON_OPTION,
    console,
    current_actor,
    new_table,
    open_context,
    parse_spans,
    print_json,
)
from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import InvalidInput

# What the help pages list, written out so that '--help' loads neither the drift checks
# (scipy) nor the feedback module (tests/cli/test_conventions.py keeps them equal to
# monitoring.CHECKS and monitoring.SOURCES).
CHECKS_HELP = "label_psi, label_chi2, confidence_ks, length_ks, oov_rate, script_chi2, embedding_mmd"
SOURCES_HELP = "reviewer, system"

app = typer.Typer(help="Feedback, live quality, drift checks and diagnosis of deployments.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
app.add_typer(tickets_app, name="tickets")


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


@app.command("feedback")
def monitor_feedback(ctx: typer.Context, request_id: str,
                     label: str | None = typer.Argument(None, help="The true label (a classifier's prediction)."),
                     spans: str | None = typer.Option(
                         None, "--spans", metavar="TYPE:START:END,...",
                         help="A tagger's prediction: the true entities as character offsets into the served text "
                         "('none': it has no entity)."),
                     source: str = typer.Option("reviewer",
                                                help=f"Who knows the truth: {SOURCES_HELP}."),
                     ) -> None:
    """Attach the true LABEL (or a tagger's true --spans) to the prediction REQUEST_ID
    (re-sending is safe; a new answer corrects)."""
    if (label is None) == (spans is None):
        raise InvalidInput("Give the true LABEL (a classifier's prediction) or --spans (a tagger's), not both or "
                           "neither.", hint="e.g. 'chainkeeper monitor feedback REQUEST_ID lost_card' or "
                           "'chainkeeper monitor feedback REQUEST_ID --spans ORG:0:13'.")
    truth: str | list[dict[str, Any]] = label if label is not None else parse_spans(spans or "")
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        [outcome] = monitoring.submit_feedback(c, [(request_id, truth)], actor=actor, source=source)
    f = outcome.feedback
    if f.spans is not None:
        verdict = "found exactly those" if f.correct else f"found {len(f.predicted_spans or [])} other(s)"
        console.print(f"{outcome.status}: {request_id} has {len(f.spans)} true entities — the model {verdict}")
        return
    verdict = "right" if f.correct else f"wrong (predicted {f.predicted})"
    console.print(f"{outcome.status}: {request_id} is {f.label!r} — the model was {verdict}"
                  + (f"; was {f.previous_label!r}" if outcome.status == "corrected" else ""))


@app.command("quality")
def monitor_quality(ctx: typer.Context, deployment: str,
                    window: str = typer.Option("1h", help="Window length: 30m, 1h, 1d …"),
                    since: datetime | None = typer.Option(None, help="From this UTC time (default: 24 windows back)."),
                    as_json: bool = JSON_OPTION) -> None:
    """Live accuracy, macro-F1 and ECE of DEPLOYMENT per window, against the offline test numbers."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        live = monitoring.live_quality(c, deployment, actor=actor, window=monitoring.parse_window(window), since=since)
    if as_json:
        print_json(live)
        return
    table = new_table("window start (UTC)", "version", "predictions", "labelled", "accuracy", "macro-F1", "ECE",
                  title=f"{deployment}: live quality per {window}")
    for w in live.windows:
        table.add_row(f"{w.start:%Y-%m-%d %H:%M}", str(w.model_version_id), str(w.predictions), str(w.labelled),
                      _num(w.accuracy), _num(w.macro_f1), _num(w.ece))
    for w in live.overall:
        table.add_row("[bold]all windows[/]", str(w.model_version_id), str(w.predictions), str(w.labelled),
                      _num(w.accuracy), _num(w.macro_f1), _num(w.ece))
    for version_id, offline in live.offline.items():
        table.add_row("[italic]offline test[/]", str(version_id), "", "", _num(offline["accuracy"]),
                      _num(offline["macro_f1"]), _num(offline["ece"]))
    console.print(table)


@app.command("drift")
def monitor_drift(ctx: typer.Context, deployment: str,
                  last: int | None = typer.Option(None, help="Check the latest N predictions."),
                  window: str | None = typer.Option(None, help="Check the predictions of the last 30m, 1h …"),
                  check: list[str] | None = typer.Option(None, help=f"Only these checks ({CHECKS_HELP})."),
                  job: bool = typer.Option(False, "--job", help="Queue it as a job instead of checking now."),
                  every: str | None = typer.Option(None, help="Check every 15m, 1h …: creates a schedule "
                                                   "(see 'chainkeeper schedules list')."),
                  history: bool = typer.Option(False, "--history", help="Show stored results instead of checking."),
                  as_json: bool = JSON_OPTION) -> None:
    """Check DEPLOYMENT's recent traffic against its model's training data (or queue/show checks)."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        if history:
            results, _ = monitoring.show_drift_results(c, deployment, actor=actor, limit=len(monitoring.CHECKS) * 10)
        else:
            span = monitoring.parse_window(window) if window else None
            if every:
                schedule = monitoring.schedule_drift_checks(
                    c, deployment, actor=actor, every_s=monitoring.parse_window(every).total_seconds(), last=last,
                    window_s=span.total_seconds() if span else None, checks=check or None)
                if as_json:
                    print_json(schedule_json(schedule))
                    return
                console.print(describe(schedule))
                return
            if job:
                queued = monitoring.submit_drift_job(
                    c, deployment, actor=actor, last=last, window_s=span.total_seconds() if span else None,
                    checks=check or None)
                if as_json:
                    print_json(job_json(queued))
                    return
                console.print(f"queued drift job {queued.id}; follow it with 'chainkeeper jobs show {queued.id}'")
                return
            end = utcnow()
            results = monitoring.check_drift(c, deployment, actor=actor, last=last, end=end,
                                             start=end - span if span else None, checks=check or None)
    if as_json:
        print_json({"deployment": deployment, "checks": list(monitoring.CHECKS), "results": results})
        return
    if not results:
        console.print(f"{deployment}: no drift results yet (run 'chainkeeper monitor drift {deployment}')")
        return
    table = new_table("window end (UTC)", "check", "statistic", "threshold", "p-value", "drift", "window", title=(
        f"{deployment}: drift against {results[0].reference}"))
    for r in results:
        table.add_row(f"{r.window_end:%Y-%m-%d %H:%M:%S}", r.check, f"{r.statistic:.4g}", f"{r.threshold:.4g}",
                      "—" if r.p_value is None else f"{r.p_value:.3g}", "[red]YES[/]" if r.drifted else "no",
                      str(r.window_size))
    console.print(table)


@app.command("report")
def monitor_report(ctx: typer.Context, deployment: str,
                   html: Path | None = typer.Option(None, "--html", help="Write the HTML report to this file."),
                   as_json: bool = JSON_OPTION,
                   since: datetime | None = typer.Option(None, help="From this UTC time (default: 7 days back)."),
                   ) -> None:
    """Where DEPLOYMENT fails: slices, confused pairs, low-confidence, wrong and slow examples."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        report = monitoring.diagnose(c, deployment, actor=actor, since=since)
    if html is not None:
        html.write_text(monitoring.render_diagnosis_html(report), encoding="utf-8")
        console.print(f"wrote {html}")
    if as_json:
        print_json(report)
        return
    o = report["overall"]
    console.print(f"{deployment}: {report['predictions']} predictions, {report['labelled']} with feedback; "
                  f"accuracy {_num(o['accuracy'])}, macro-F1 {_num(o['macro_f1'])}, ECE {_num(o['ece'])}; "
                  f"latency p50 {_num(report['latency']['p50_ms'], 1)} ms, "
                  f"p99 {_num(report['latency']['p99_ms'], 1)} ms")
    if report["confused_pairs"]:
        table = new_table("true label", "predicted", "count", title="most confused pairs")
        for p in report["confused_pairs"]:
            table.add_row(p["truth"], p["predicted"], str(p["count"]))
        console.print(table)
