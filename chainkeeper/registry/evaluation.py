"""Evaluate a model version on a file: the check a user runs before trusting a model on
their own data (``chainkeeper models evaluate VERSION FILE``, ``POST
/api/models/{id}/evaluations``).

The file is read by the data stage's readers, as an import reads it (CSV/TSV, JSON
Lines, JSON, Parquet with a text and a label column; CoNLL for a tagger), but nothing is
stored: an evaluation is a reading of the model, not a new source. The numbers are a
run's test report (``training.score_classifier`` / ``score_tagger``); when the label set
holds the out-of-scope label (``oos`` unless told), in-scope accuracy and out-of-scope
recall and precision are reported apart (``training.out_of_scope_metrics``).

Each evaluation is stored (``model_evaluations``: the file's name and SHA-256, the
figures, who and when) and written to the ledger, so a reviewer can cite it; the file
itself is not kept. ``list_model_evaluations`` reads them back.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from chainkeeper.core.errors import InvalidInput, NotFound
from chainkeeper.data import (
    ParsedSource,
    detect_format,
    read_conll,
    read_delimited,
    read_json,
    read_jsonl,
    read_parquet,
)
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.permissions import authorize_object
from chainkeeper.registry.tables import SqlModelEvaluation
from chainkeeper.registry.versions import get_model_version, project_of_model_version
from chainkeeper.training import (
    OUT_OF_SCOPE_LABEL,
    out_of_scope_metrics,
    score_classifier,
    score_tagger,
)

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["ModelEvaluation", "evaluate_model_version", "list_model_evaluations", "read_labelled_file"]


@dataclass(frozen=True)
class ModelEvaluation:
    """One model version scored on one file."""

    id: int
    model_version_id: int
    model: str  # "intents v3"
    file: str
    file_sha256: str
    format: str
    rows: int  # rows (sentences for a tagger) scored
    skipped: int  # rows the reader quarantined (empty text, missing fields), counted apart
    metrics: dict[str, Any]  # the run's test report: classification or entity/token metrics
    out_of_scope: dict[str, Any] | None  # in-scope accuracy, out-of-scope recall/precision; None without the label
    evaluated_by: str
    evaluated_at: datetime


def read_labelled_file(path: Path, *, format: str | None = None, text_column: str = "text",
                       label_column: str = "label", name: str | None = None) -> ParsedSource:
    """Read an evaluation file with the data stage's readers (nothing is stored).

    Args:
        path: the file.
        format: csv, tsv, jsonl, json, parquet or conll; None picks it from the extension.
        text_column: the column/key of the text (not CoNLL).
        label_column: the column/key of the gold label (not CoNLL: its tags are the gold).
        name: how to name the file in messages and origins (default its name).

    Raises:
        NotFound: no such file.
        InvalidInput: an unknown format, a folder, an unreadable file or a missing column.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise NotFound(f"There is no file {path}.", hint="Check the path (relative paths start from the current "
                       "folder).")
    fmt = detect_format(path, format)
    shown = name or path.name
    data = path.read_bytes()
    if fmt in ("csv", "tsv"):
        return read_delimited(data, name=shown, suffix=".tsv" if fmt == "tsv" else path.suffix.lower(),
                              text_column=text_column, label_column=label_column, metadata_columns=[])
    if fmt == "jsonl":
        return read_jsonl(data, name=shown, text_column=text_column, label_column=label_column, metadata_columns=[])
    if fmt == "json":
        return read_json(data, name=shown, text_column=text_column, label_column=label_column, metadata_columns=[])
    if fmt == "parquet":
        return read_parquet(data, name=shown, text_column=text_column, label_column=label_column,
                            metadata_columns=[])
    if fmt == "conll":
        return read_conll(data, name=shown)
    raise InvalidInput(f"A model is evaluated on a file of labelled rows, not a {fmt}.",
                       hint="Give a CSV, TSV, JSON (Lines) or Parquet file with text and label, or a CoNLL file.")


def evaluate_model_version(ctx: Context, model_version_id: int, path: Path, *, actor: Actor,
                           format: str | None = None, text_column: str = "text", label_column: str = "label",
                           out_of_scope_label: str = OUT_OF_SCOPE_LABEL, name: str | None = None,
                           batch_size: int = 64) -> ModelEvaluation:
    """Score a model version on a file of labelled rows and store the reading (not the file).

    Args:
        model_version_id: the version whose model answers.
        path: the file (see ``read_labelled_file``): texts and labels for a classifier,
            CoNLL sentences for a tagger.
        actor: who asks (``model.read`` in the version's project).
        format: the file's format; None picks it from the extension.
        text_column: the column/key of the text.
        label_column: the column/key of the gold label.
        out_of_scope_label: the label of out-of-scope rows; when the model's labels hold
            it, its figures are reported apart.
        name: how to name the file in the result and messages (an upload's name).
        batch_size: texts scored at once.

    Returns:
        The stored evaluation: the run's test-report metrics on the file, and
        out-of-scope figures when the label set has the label.

    Raises:
        Forbidden: the actor may not read models of the version's project.
        NotFound: no such version, or no such file.
        InvalidInput: an unreadable file, a missing column, rows without a label, a
            label (or tag) the model does not know (each named, with how many rows), or
            a file of the wrong kind for the model (texts for a tagger, CoNLL for a
            classifier).
    """
    authorize_object(ctx.db, actor, "model.read", lambda: project_of_model_version(ctx.db, model_version_id))
    version = get_model_version(ctx.db, model_version_id)
    parsed = read_labelled_file(path, format=format, text_column=text_column, label_column=label_column, name=name)
    usable = [r for r in parsed.records if r.quarantine_reason is None]
    folder = ctx.artifacts.get_tree(version.model_artifact,
                                    ctx.settings.home / "cache" / "models" / version.model_artifact)
    if parsed.format == "conll":
        metrics = score_tagger(folder, [r.tokens or [] for r in usable], [r.tags or [] for r in usable],
                               batch_size=batch_size)
        oos = None
    else:
        unlabelled = [r.origin for r in usable if not r.label]
        if unlabelled:
            raise InvalidInput(f"{len(unlabelled)} row(s) of {name or Path(path).name} have no "
                               f"{label_column!r}: {', '.join(unlabelled[:5])}.",
                               hint="An evaluation needs the gold label of every row; label them or drop them.")
        metrics = score_classifier(folder, [r.text for r in usable], [str(r.label) for r in usable],
                                   batch_size=batch_size)
        oos = out_of_scope_metrics(metrics, out_of_scope_label)
    with ctx.db.session() as s:
        row = SqlModelEvaluation(model_version_id=version.id, file=(name or Path(path).name)[:255],
                                 file_sha256=hashlib.sha256(Path(path).read_bytes()).hexdigest(),
                                 format=parsed.format, rows=len(usable), skipped=len(parsed.records) - len(usable),
                                 metrics=metrics, out_of_scope=oos, evaluated_by=actor.name)
        s.add(row)
        s.flush()
        append_entry(s, actor, "model.evaluate", "model_version", version.id,
                     details={"evaluation_id": row.id, "file": row.file, "file_sha256": row.file_sha256,
                              "rows": row.rows})
        return _to_evaluation(row, version.label)


def list_model_evaluations(ctx: Context, model_version_id: int, *, actor: Actor) -> list[ModelEvaluation]:
    """The stored evaluations of a model version, newest first.

    Raises:
        Forbidden: the actor may not read models of the version's project.
        NotFound: no such version.
    """
    authorize_object(ctx.db, actor, "model.read", lambda: project_of_model_version(ctx.db, model_version_id))
    version = get_model_version(ctx.db, model_version_id)
    with ctx.db.session(readonly=True) as s:
        rows = s.scalars(sa.select(SqlModelEvaluation).where(SqlModelEvaluation.model_version_id == version.id)
                         .order_by(SqlModelEvaluation.id.desc())).all()
        return [_to_evaluation(row, version.label) for row in rows]


def _to_evaluation(row: SqlModelEvaluation, model: str) -> ModelEvaluation:
    return ModelEvaluation(id=row.id, model_version_id=row.model_version_id, model=model, file=row.file,
                           file_sha256=row.file_sha256, format=row.format, rows=row.rows, skipped=row.skipped,
                           metrics=row.metrics, out_of_scope=row.out_of_scope, evaluated_by=row.evaluated_by,
                           evaluated_at=row.evaluated_at)
