"""Model cards: a Markdown page about one model version, generated from the registry.

Nothing in a card is typed by hand: the data section comes from the dataset version,
the training section from the run, the metrics from the version's evaluation, the
release section from the gate results and the approval requests, the exports section
from serving's latest export (read through the ``LATEST_EXPORT_HOOK`` the chain's wiring
registers: serving sits above the registry). ``collect_card_facts`` gathers those records
for an actor who may read the version; ``render_model_card`` is pure and turns them into Markdown, so
the same facts always give the same card. ``render_card_html`` turns the Markdown into
safe HTML for the web UI (raw HTML in any stored value is escaped, never rendered).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from markdown_it import MarkdownIt

from chainkeeper.core.errors import NotFound
from chainkeeper.data import get_dataset_version
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.approvals import list_approvals
from chainkeeper.governance.permissions import authorize_object
from chainkeeper.registry.gates import (
    GateResult,
    flat_slices,
    get_gate_thresholds,
    latest_gate_results,
)
from chainkeeper.registry.hooks import LATEST_EXPORT_HOOK
from chainkeeper.registry.versions import (
    ModelVersion,
    StageTransition,
    get_model_version,
    project_of_model_version,
    stage_history,
)
from chainkeeper.training import get_run

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["CardFacts", "collect_card_facts", "model_card", "render_card_html",
           "render_model_card"]


# How many of the weakest classes the limitations section names.
_WEAKEST = 3


@dataclass(frozen=True)
class CardFacts:
    """Everything a card says, read from the store (plain values)."""

    version: ModelVersion
    run: dict[str, Any]
    dataset: dict[str, Any] | None
    gates: list[GateResult] = field(default_factory=list)
    thresholds: dict[str, float | None] = field(default_factory=dict)
    approvals: list[dict[str, Any]] = field(default_factory=list)
    history: list[StageTransition] = field(default_factory=list)
    # serving's ExportResult (typed there: the registry sits below serving), or None.
    export: Any = None


def collect_card_facts(ctx: Context, model_version_id: int, *, actor: Actor) -> CardFacts:
    """Read what a version's card needs from the registry, training, data, governance and
    serving, for an actor who may read the version (``model.read`` in its project).

    Raises:
        Forbidden: the actor may not read models of the version's project.
        NotFound: no such model version.
        ConfigError: the context was opened without the chain's wiring (no export hook).
    """
    authorize_object(ctx.db, actor, "model.read", lambda: project_of_model_version(ctx.db, model_version_id))
    version = get_model_version(ctx.db, model_version_id)
    run = get_run(ctx.db, version.run_id)
    try:
        ds = get_dataset_version(ctx.db, run.dataset_version_id)
        dataset: dict[str, Any] | None = {
            "id": ds.id, "name": ds.name, "version": ds.version, "content_hash": ds.content_hash,
            "state": str(ds.state), "rows": ds.stats.get("rows"), "rows_per_split": ds.stats.get("rows_per_split", {}),
            "labels": ds.labels, "released_by": ds.released_by,
        }
    except NotFound:  # a card still renders when its dataset row is gone; it says so
        dataset = None
    thresholds = get_gate_thresholds(ctx.db, version.name)
    approvals = [
        {"id": a.id, "action": a.action, "state": str(a.state), "requested_by": a.requested_by,
         "decided_by": a.decided_by, "decided_at": a.decided_at, "comment": a.decision_comment}
        for a in list_approvals(ctx, object_kind="model_version", object_id=str(version.id))
    ]
    return CardFacts(
        version=version,
        run={"id": run.id, "task": run.task, "base_model": run.base_model, "config": dict(run.config),
             "created_by": run.created_by, "created_at": run.created_at, "finished_at": run.finished_at},
        dataset=dataset,
        gates=latest_gate_results(ctx.db, version.id),
        thresholds={"min_macro_f1": thresholds.min_macro_f1, "min_slice_macro_f1": thresholds.min_slice_macro_f1,
                    "max_drop_vs_production": thresholds.max_drop_vs_production},
        approvals=sorted(approvals, key=lambda a: a["id"]),
        history=stage_history(ctx.db, version.id),
        export=ctx.wiring.hook(LATEST_EXPORT_HOOK)(ctx, version.id, version.model_artifact),
    )


def model_card(ctx: Context, model_version_id: int, *, actor: Actor) -> str:
    """The Markdown card of one model version (``model.read`` in its project).

    Raises:
        Forbidden: the actor may not read models of the version's project.
        NotFound: no such model version.
    """
    return render_model_card(collect_card_facts(ctx, model_version_id, actor=actor))


# --- rendering (pure) ------------------------------------------------------------------


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "—" if value is None else str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    # A cell holding "|" or a line break would split the row: escape the one, flatten the other.
    lines += ["| " + " | ".join(_fmt(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |"
              for row in rows]
    return lines


def render_model_card(facts: CardFacts) -> str:
    """Turn a version's facts into a Markdown model card (pure).

    Args:
        facts: what ``collect_card_facts`` read.

    Returns:
        The card: intended use, data, training, metrics, limitations, release.
    """
    v, run, ds = facts.version, facts.run, facts.dataset
    test: Mapping[str, Any] = v.metrics.get("test") or {}
    labels = (ds or {}).get("labels") or list(test.get("labels") or [])
    out = [f"# Model card: {v.name} v{v.version}", "",
           f"Model version {v.id}, stage **{v.stage}**, registered by {v.created_by} on "
           f"{v.created_at:%Y-%m-%d %H:%M} UTC; owner {v.owner}. Artefact `{v.model_artifact}`.", ""]

    out += ["## Intended use", "",
            f"Classifies short texts into {len(labels) or 'its'} labels ({run['task']}), served behind a "
            "Chainkeeper deployment. Use it only for texts like those of its dataset; it was not evaluated "
            "on other languages, domains or label sets, and it should not make decisions about people on its "
            "own.", ""]

    out += ["## Data", ""]
    if ds is None:
        out += ["The dataset version of the training run is no longer in the store.", ""]
    else:
        splits = ", ".join(f"{k} {n:,}" for k, n in ds["rows_per_split"].items()) or "—"
        out += [f"- dataset version: {ds['name']} v{ds['version']} (id {ds['id']}, {ds['state']})",
                f"- content hash: `{ds['content_hash']}`",
                f"- rows: {_fmt(ds['rows'])}; splits: {splits}",
                f"- labels ({len(labels)}): {', '.join(labels) or '—'}", ""]

    out += ["## Training", "",
            f"- run {run['id']} by {run['created_by']}, base model `{run['base_model']}`",
            f"- finished: {run['finished_at']:%Y-%m-%d %H:%M} UTC" if run["finished_at"] else "- finished: —"]
    config = run["config"]
    if config:
        out += ["- config: " + ", ".join(f"{k}={config[k]}" for k in sorted(config))]
    out.append("")

    out += ["## Metrics", ""]
    if not test:
        out += ["No evaluation on a held-out test split is recorded.", ""]
    else:
        out += _table(["split", "accuracy", "macro-F1", "weighted-F1", "rows"],
                      [[split, m.get("accuracy"), m.get("macro_f1"), m.get("weighted_f1"), m.get("support")]
                       for split, m in v.metrics.items() if isinstance(m, Mapping) and "accuracy" in m])
        out.append("")
        per_class: Mapping[str, Mapping[str, Any]] = test.get("per_class") or {}
        if per_class:
            out += ["Per class (test):", ""]
            out += _table(["label", "precision", "recall", "F1", "support"],
                          [[k, c.get("precision"), c.get("recall"), c.get("f1-score"), c.get("support")]
                           for k, c in sorted(per_class.items())])
            out.append("")
        slices = flat_slices(test.get("slices"))
        if slices:
            out += ["Slices (test):", ""]
            out += _table(["slice", "macro-F1", "accuracy", "rows"],
                          [[k, s.get("macro_f1"), s.get("accuracy"), s.get("support")]
                           for k, s in sorted(slices.items())])
            out.append("")

    out += ["## Limitations", ""]
    per_class = test.get("per_class") or {}
    if per_class:
        weakest = sorted(per_class.items(), key=lambda kv: float(kv[1].get("f1-score", 0.0)))[:_WEAKEST]
        out += ["- weakest classes (test F1): " + ", ".join(f"{k} {float(c.get('f1-score', 0)):.4f}"
                                                              for k, c in weakest)]
    else:
        out += ["- no per-class evaluation is recorded, so weak classes are unknown"]
    # Training stores {"calibration": {"ece", "bins"}}; a bare "ece" is read too.
    stored = test.get("calibration")
    calibration = stored.get("ece") if isinstance(stored, Mapping) else test.get("ece")
    if calibration is not None:
        out += [f"- calibration (expected calibration error, test): {_fmt(calibration)}"]
    else:
        out += ["- calibration was not measured: treat scores as rankings, not probabilities"]
    out.append("")

    out += ["## Exports", ""]
    if facts.export is None:
        out += ["Not exported yet: it is served by PyTorch until an export passes its accuracy check.", ""]
    else:
        e = facts.export
        out += [f"Exported by {e.created_by} on {e.created_at[:16].replace('T', ' ')} UTC, scored on "
                f"{e.evaluated_rows:,} test rows (PyTorch accuracy {e.torch_accuracy:.4f}, p50 "
                f"{e.torch_latency_ms_p50:.2f} ms); a form may lose at most {e.max_delta_points:g} points. "
                f"Served form: {e.best_engine()}.", ""]
        out += _table(["form", "accuracy", "delta (points)", "p50 ms", "size (bytes)", "passed"],
                      [[f.engine, f.accuracy, f"{f.delta_points:+.3f}", f"{f.latency_ms_p50:.2f}", f"{f.size_bytes:,}",
                        "yes" if f.passed else "NO"] for f in e.forms])
        out.append("")

    out += ["## Release", ""]
    set_thresholds = {k: t for k, t in facts.thresholds.items() if t is not None}
    out += ["Thresholds: " + (", ".join(f"{k} {t}" for k, t in set_thresholds.items()) or "none set"), ""]
    if facts.gates:
        out += _table(["gate", "passed", "value", "threshold", "detail"],
                      [[g.gate, "yes" if g.passed else "NO", g.value, g.threshold, g.detail] for g in facts.gates])
        out.append("")
    out += [f"- trained by: {run['created_by']}"]
    approved = [a for a in facts.approvals if a["state"] == "executed"]
    out += ["- approved by: " + (", ".join(
        f"{a['decided_by']} ({a['action']}, request {a['id']}, {a['decided_at']:%Y-%m-%d %H:%M} UTC)"
        for a in approved) or "nobody yet")]
    out += ["- stage history: " + " → ".join(
        f"{t.to_stage} ({t.actor}, {t.at:%Y-%m-%d %H:%M})" for t in facts.history)]
    return "\n".join(out) + "\n"


def render_card_html(markdown: str) -> str:
    """A card's Markdown as HTML (pure): CommonMark with tables, raw HTML escaped.

    markdown-it-py is already installed as Rich's Markdown parser; with ``html`` off,
    a label or comment holding ``<script>`` shows as text.
    """
    html: str = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return html
