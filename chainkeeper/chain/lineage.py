"""Lineage: from a served prediction back to the files, rows and people behind it.

``lineage_of(ctx, kind, id)`` returns a tree of ``LineageNode``: prediction → deployment →
model version → training run → dataset version → source files (path, sha256, rows and
lines), with the approvals and actors at each step. Every stage is read through its
public functions, which is why the walk lives in the chain layer above them. A dataset
version labelled by an annotation project adds a node naming its annotators and
adjudicators (row by row: ``chainkeeper.annotation.trace``).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from chainkeeper.annotation import row_lineage
from chainkeeper.chain.projects import project_of_object
from chainkeeper.core.errors import InvalidInput
from chainkeeper.data import get_dataset_version, get_source, read_dataset_rows
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.approvals import list_approvals
from chainkeeper.governance.lineage import LineageNode
from chainkeeper.governance.permissions import authorize, authorize_object
from chainkeeper.monitoring import get_prediction
from chainkeeper.registry import get_model_version, stage_history
from chainkeeper.serving import get_deployment
from chainkeeper.training import get_run

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

KINDS = ("prediction", "deployment", "model_version", "run", "dataset_version", "source")


def _approval_nodes(ctx: Context, object_kind: str, object_id: int | str) -> list[LineageNode]:
    nodes = []
    for a in list_approvals(ctx, object_kind=object_kind, object_id=str(object_id)):
        nodes.append(LineageNode(
            "approval", str(a.id), f"{a.action} {a.state}: requested by {a.requested_by}, "
            f"decided by {a.decided_by or '-'}",
            {"action": a.action, "state": a.state, "requested_by": a.requested_by, "decided_by": a.decided_by,
             "comment": a.decision_comment, "decided_at": a.decided_at.isoformat() if a.decided_at else None}))
    return nodes


def _source_node(ctx: Context, source_id: int, rows_used: dict[int, dict[str, Any]]) -> LineageNode:
    s = get_source(ctx.db, source_id)
    used = rows_used.get(source_id, {})
    label = f"{s.uri} (sha256 {s.sha256[:12]}, imported by {s.created_by})"
    if used:
        label += f": {used['rows']:,} rows used, lines {used['first_line']}–{used['last_line']}"
    return LineageNode("source", str(s.id), label, {"uri": s.uri, "sha256": s.sha256, "imported_by": s.created_by,
                                                   "imported_at": s.created_at.isoformat(), **used})


def _dataset_node(ctx: Context, version_id: int, *, split: str | None = "train") -> LineageNode:
    v = get_dataset_version(ctx.db, version_id)
    rows = read_dataset_rows(ctx, version_id, split)
    rows_used: dict[int, dict[str, Any]] = {}
    for source_id, line in zip(rows.column("source_id").to_pylist(), rows.column("source_line").to_pylist(),
                               strict=True):
        entry = rows_used.setdefault(source_id, {"rows": 0, "first_line": line, "last_line": line})
        entry["rows"] += 1
        entry["first_line"] = min(entry["first_line"], line)
        entry["last_line"] = max(entry["last_line"], line)
    node = LineageNode("dataset_version", str(v.id),
                       f"dataset {v.name} v{v.version} ({v.content_hash[:12]}), {v.state}, created by {v.created_by}"
                       + (f", released by {v.released_by}" if v.released_by else ""),
                       {"content_hash": v.content_hash, "state": v.state, "created_by": v.created_by,
                        "released_by": v.released_by, "split_used": split, "rows_used": rows.num_rows,
                        "recipe": [step.get("name") for step in v.recipe]})
    node.children += _approval_nodes(ctx, "dataset_version", v.id)
    annotation = (v.stats or {}).get("annotation")
    if annotation and "annotators" in rows.column_names:
        node.children.append(_annotation_node(annotation, rows))
    node.children += [_source_node(ctx, sid, rows_used) for sid in v.source_ids]
    return node


def _annotation_node(annotation: dict[str, Any], rows: Any) -> LineageNode:
    """Who labelled the rows used, and who settled their disagreements (a labelled version)."""
    labelled_by = Counter(name for names in rows.column("annotators").to_pylist() for name in names or ())
    decided = Counter(rows.column("decided_by").to_pylist()) if "decided_by" in rows.column_names else Counter()
    adjudicators = {name: n for name, n in decided.items() if name not in ("single", "agreed")}
    label = (f"annotation project {annotation.get('project')} ({annotation.get('schema')}): labelled by "
             + ", ".join(f"{name} ({n} rows)" for name, n in sorted(labelled_by.items())))
    if adjudicators:
        label += "; adjudicated by " + ", ".join(f"{name} ({n})" for name, n in sorted(adjudicators.items()))
    return LineageNode("annotation_project", str(annotation.get("project_id")), label,
                       {"project": annotation.get("project"), "schema": annotation.get("schema"),
                        "parent_version_id": annotation.get("parent_version_id"),
                        "annotators": dict(sorted(labelled_by.items())), "adjudicators": adjudicators,
                        "agreement": annotation.get("agreement")})


def _run_node(ctx: Context, run_id: int) -> LineageNode:
    r = get_run(ctx.db, run_id)
    test = (r.metrics or {}).get("test", {})
    node = LineageNode("run", str(r.id), f"training run {r.id} ({r.state}) by {r.created_by}, base {r.base_model}",
                       {"state": r.state, "created_by": r.created_by, "base_model": r.base_model, "config": r.config,
                        "test_accuracy": test.get("accuracy")})
    node.children.append(_dataset_node(ctx, r.dataset_version_id))
    return node


def _model_node(ctx: Context, model_version_id: int) -> LineageNode:
    m = get_model_version(ctx.db, model_version_id)
    history = [f"{t.from_stage or '∅'}→{t.to_stage} by {t.actor}" for t in stage_history(ctx.db, m.id)]
    node = LineageNode("model_version", str(m.id), f"model {m.name} v{m.version} ({m.stage}), registered by "
                       f"{m.created_by}", {"stage": m.stage, "created_by": m.created_by, "history": history,
                                           "artifact": m.model_artifact})
    node.children += _approval_nodes(ctx, "model_version", m.id)
    node.children.append(_run_node(ctx, m.run_id))
    return node


def _deployment_node(ctx: Context, deployment_id: int, model_version_id: int | None = None) -> LineageNode:
    d = get_deployment(ctx.db, deployment_id)
    node = LineageNode("deployment", str(d.id), f"deployment {d.name}, deployed by {d.created_by}",
                       {"name": d.name, "created_by": d.created_by, "state": d.state})
    node.children.append(_model_node(ctx, model_version_id or d.model_version_id))
    return node


def _prediction_node(ctx: Context, request_id: str) -> LineageNode:
    p = get_prediction(ctx.db, request_id)
    node = LineageNode("prediction", p.id, f"prediction {p.id}: {p.label} ({p.score:.2f}) at {p.at:%Y-%m-%d %H:%M:%S} "
                       "UTC", {"label": p.label, "score": p.score, "at": p.at.isoformat(), "input_hash": p.input_hash,
                               "latency_ms": p.latency_ms})
    # The model version that answered, which may differ from the deployment's current one.
    node.children.append(_deployment_node(ctx, p.deployment_id, p.model_version_id))
    return node


def lineage_of(ctx: Context, kind: str, object_id: str, *, actor: Actor) -> LineageNode:
    """The lineage tree of one object, for someone who may read lineage in its project.

    Raises:
        InvalidInput: an unknown kind or a malformed id. Forbidden: not allowed.
        NotFound: no such object.
    """
    builders = {
        "prediction": lambda: _prediction_node(ctx, object_id),
        "deployment": lambda: _deployment_node(ctx, int(object_id)),
        "model_version": lambda: _model_node(ctx, int(object_id)),
        "run": lambda: _run_node(ctx, int(object_id)),
        "dataset_version": lambda: _dataset_node(ctx, int(object_id), split=None),
        "source": lambda: _source_node(ctx, int(object_id), {}),
    }
    if kind not in builders:
        raise InvalidInput(f"Unknown lineage kind {kind!r}.", hint=f"Kinds: {', '.join(KINDS)}.")
    if kind != "prediction" and (not str(object_id).isdigit() or len(str(object_id)) > 18):
        raise InvalidInput(f"{kind} ids are numbers, got {object_id!r}.")
    if kind == "source":  # a source is imported before any project uses it
        authorize(ctx.db, actor, "lineage.read")
    else:
        authorize_object(ctx.db, actor, "lineage.read", lambda: project_of_object(ctx, kind, object_id))
    return builders[kind]()


def run_row_lineage(ctx: Context, run_id: int, row_id: int, actor: Actor) -> LineageNode:
    """``annotation.trace.row_lineage`` of a row of the dataset version a training run read.

    Raises:
        As ``row_lineage``; NotFound: no such run.
    """
    return row_lineage(ctx, get_run(ctx.db, run_id).dataset_version_id, row_id, actor)
