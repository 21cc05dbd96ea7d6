"""Dataset versions: the cleaned, split and frozen rows that training reads.

``create_dataset_version`` concatenates imported sources, applies a cleaning recipe,
assigns splits and freezes the result as a Parquet snapshot in the artefact store,
named by a content hash. A version is immutable: its rows never change, only its state
(draft -> released). To change the rows, create the next version of the same name.

Task kind. Every version records what its rows are for in ``schema["task"]``, also
``DatasetVersion.task`` (a ``DatasetTask``); training picks its task from it:

    "text_classification"   one label per text (CSV/TSV/JSON Lines/Parquet with a label
                            column). Versions made before the field existed have no
                            ``schema["task"]`` and are this kind.
    "token_classification"  one BIO tag per token (CoNLL sources): columns ``tokens`` and
                            ``tags``, two equal-length lists of strings per row (one row
                            per sentence); ``text`` is the tokens joined by single spaces;
                            ``label`` is null. ``stats["labels"]`` is the tag set.
    "unlabelled"            text only, for (continued) pre-training (a folder of text
                            files, a crawl, a file imported without a label column);
                            ``label`` is null and ``stats["labels"]`` is empty.

The kind is inferred from the sources (a source with ``tokens`` is token-labelled, one
whose rows have no label is unlabelled); sources of different kinds cannot be mixed in
one version. A token-classification version's recipe may only drop rows (steps that
rewrite ``text`` would no longer match its ``tokens``); its default recipe is
``TOKEN_RECIPE``.

Snapshot columns, in row order (the sources in the order given, each in file order):

    row_id       int64         0..n-1, the row's position in the snapshot
    text         string        the cleaned text
    label        string        null in token-classification and unlabelled versions
    split        string        "train", "dev" or "test"
    source_id    int64         the source the row came from
    source_line  int64         the row's line in that source's file (header = line 1)
    tokens       list<string>  token classification only: the sentence's tokens
    tags         list<string>  token classification only: one BIO tag per token

Splits: every row of one text (its identity: ``identity.row_identities``) goes to one
split (``splits.assign_splits``): the split a source declared for it (test over dev over
train when sources disagree; the losing declared rows are removed and reported), else the
split the text had in the previous version of the dataset, else a stratified split per
label. When sources declare a dev or test split, the undeclared rows are not split into
it again: by default its share goes to train, so with a declared test file the rest
splits train 0.9 / dev 0.1. Rows without a label (unlabelled and token-classification
versions) are one stratum. ``stats["split_assignment"]`` says how many rows were decided
which way; ``stats["leakage"]`` (also in the quality report) counts the texts found in
more than one split, which the release gate requires to be none.

Personal data: the default recipes redact it (``redact_pii``); a recipe without the step
gets it unless the caller opts out (``redact=False``), and ``stats["redaction"]`` says
which ("on" or "opted out"; absent on versions not made from sources).

``content_hash`` is the sha256 of a canonical JSON of the rows (the task's columns: text,
label, split for text classification; see ``content_hash``), in row order, not of the
Parquet bytes, whose layout varies with the writer's version. It names the content: the
same rows split the same way always give the same hash.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.orm import Session

from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import Conflict, InvalidInput, NotFound
from chainkeeper.data.cleaning import (
    BASIC_RECIPE,
    REWRITES_TEXT,
    TOKEN_RECIPE,
    RecipeEntry,
    StepReport,
    apply_recipe,
    check_recipe,
    recipe_with_redaction,
)
from chainkeeper.data.identity import find_leakage, row_identities
from chainkeeper.data.ingest import SPLITS
from chainkeeper.data.quality import build_quality_report, store_quality_report
from chainkeeper.data.sources import parquet_from_bytes, read_source_rows
from chainkeeper.data.splits import (
    DEFAULT_FRACTIONS,
    assign_splits,
    validate_fractions,
)
from chainkeeper.data.statistics import dataset_stats
from chainkeeper.data.tables import SqlDatasetVersion, SqlSource
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.permissions import (
    authorize,
    authorize_object,
    projects_allowed,
)

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["DatasetState", "DatasetTask", "DatasetVersion", "SNAPSHOT_FORMAT", "SNAPSHOT_SCHEMA", "snapshot_schema",
           "create_dataset_version", "freeze_sources", "freeze_dataset_version", "release_dataset_version",
           "show_dataset_version", "find_dataset_versions", "read_dataset_page", "get_dataset_version",
           "project_of_dataset_version", "list_dataset_versions", "count_dataset_versions", "read_dataset_rows",
           "content_hash", "undeclared_fractions", "source_task", "choose_task"]

SNAPSHOT_FORMAT = "chainkeeper.dataset/1"
SNAPSHOT_SCHEMA = pa.schema([
    pa.field("row_id", pa.int64(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("label", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("source_id", pa.int64(), nullable=False),
    pa.field("source_line", pa.int64(), nullable=False),
])
_TOKEN_FIELDS = (pa.field("tokens", pa.list_(pa.string()), nullable=False),
                 pa.field("tags", pa.list_(pa.string()), nullable=False))
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# Rows per json.dumps call when hashing: bounds memory, the result does not depend on it.
_HASH_CHUNK = 65_536


class DatasetState(enum.StrEnum):
    DRAFT = "draft"
    RELEASED = "released"


class DatasetTask(enum.StrEnum):
    """What a version's rows are for, stored as ``schema["task"]`` (see the module docstring)."""

    TEXT_CLASSIFICATION = "text_classification"
    TOKEN_CLASSIFICATION = "token_classification"
    UNLABELLED = "unlabelled"


# The columns the content hash covers, per task: what training reads.
_HASHED_COLUMNS = {DatasetTask.TEXT_CLASSIFICATION: ("text", "label", "split"),
                   DatasetTask.TOKEN_CLASSIFICATION: ("text", "tokens", "tags", "split"),
                   DatasetTask.UNLABELLED: ("text", "split")}


def snapshot_schema(task: DatasetTask) -> pa.Schema:
    """The Parquet schema of a snapshot of this task kind (pure)."""
    if task == DatasetTask.TEXT_CLASSIFICATION:
        return SNAPSHOT_SCHEMA
    schema = SNAPSHOT_SCHEMA.set(SNAPSHOT_SCHEMA.get_field_index("label"), pa.field("label", pa.string()))
    if task == DatasetTask.TOKEN_CLASSIFICATION:
        for f in _TOKEN_FIELDS:
            schema = schema.append(f)
    return schema


@dataclass(frozen=True)
class DatasetVersion:
    """A frozen dataset version (mirrors ``SqlDatasetVersion``)."""

    id: int
    name: str
    version: int
    content_hash: str
    snapshot_artifact: str
    source_ids: tuple[int, ...]
    schema: dict[str, Any]
    stats: dict[str, Any]
    recipe: list[dict[str, Any]]
    split_seed: int
    state: DatasetState
    owner: str
    created_by: str
    created_at: datetime
    released_by: str | None
    released_at: datetime | None

    @property
    def labels(self) -> list[str]:
        """The label set, sorted (the BIO tag set of a token-classification version; empty when unlabelled)."""
        return sorted(self.stats.get("labels", []))

    @property
    def task(self) -> DatasetTask:
        """What the rows are for; versions made before task kinds existed are text classification."""
        return DatasetTask(self.schema.get("task", DatasetTask.TEXT_CLASSIFICATION))

    def to_dict(self) -> dict[str, Any]:
        """The version as JSON values (times in ISO 8601), with its ``task``: what the API and ``--json`` print."""
        return {**asdict(self), "source_ids": list(self.source_ids), "state": self.state.value,
                "created_at": self.created_at.isoformat(),
                "released_at": self.released_at.isoformat() if self.released_at else None, "task": self.task.value}


def _to_version(row: SqlDatasetVersion) -> DatasetVersion:
    return DatasetVersion(
        id=row.id, name=row.name, version=row.version, content_hash=row.content_hash,
        snapshot_artifact=row.snapshot_artifact, source_ids=tuple(row.source_ids or ()), schema=dict(row.schema or {}),
        stats=dict(row.stats or {}), recipe=list(row.recipe or []), split_seed=row.split_seed,
        state=DatasetState(row.state), owner=row.owner, created_by=row.created_by, created_at=row.created_at,
        released_by=row.released_by, released_at=row.released_at)


def content_hash(table: pa.Table, task: DatasetTask = DatasetTask.TEXT_CLASSIFICATION) -> str:
    """sha256 of the canonical JSON of a snapshot's rows (pure).

    The canonical form is ``{"format": ..., "columns": [...], "rows": [[text, label,
    split], ...]}`` with sorted keys, no spaces and UTF-8 text; it is hashed in chunks,
    which gives the same bytes as one ``json.dumps`` of the whole value. The columns are
    the task's: text, label, split (text classification); text, tokens, tags, split
    (token classification); text, split (unlabelled).

    Args:
        table: the snapshot's rows.
        task: the version's task kind.

    Returns:
        64 hex characters.
    """
    hashed = _HASHED_COLUMNS[task]
    digest = hashlib.sha256()
    head = json.dumps({"columns": list(hashed), "format": SNAPSHOT_FORMAT}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)
    digest.update(head[:-1].encode() + b',"rows":[')
    for start in range(0, table.num_rows, _HASH_CHUNK):
        # Column by column, one chunk at a time: a million rows never become Python objects at once.
        part = table.slice(start, _HASH_CHUNK)
        # json writes tuples as arrays, so the zipped rows need no conversion.
        chunk = list(zip(*(part.column(c).to_pylist() for c in hashed), strict=True))
        if start:
            digest.update(b",")
        digest.update(json.dumps(chunk, separators=(",", ":"), ensure_ascii=False)[1:-1].encode())
    digest.update(b"]}")
    return digest.hexdigest()


def source_task(rows: pa.Table) -> DatasetTask | None:
    """The task kind a source's accepted rows can serve (pure).

    Args:
        rows: a source's rows (``sources.read_source_rows``).

    Returns:
        Token classification when the rows carry ``tokens``; unlabelled when no row has
        a label; text classification when every row has one; None for a mix of labelled
        and unlabelled rows.
    """
    if "tokens" in rows.column_names:
        return DatasetTask.TOKEN_CLASSIFICATION
    missing = rows.column("label").null_count
    if missing == rows.num_rows:
        return DatasetTask.UNLABELLED
    return DatasetTask.TEXT_CLASSIFICATION if missing == 0 else None


def choose_task(found: Mapping[int, DatasetTask | None], declared: str | None) -> DatasetTask:
    """The task kind of a new version from its sources' kinds and the caller's choice (pure).

    Args:
        found: source id -> that source's kind (``source_task``).
        declared: the task kind asked for, or None to infer it.

    Returns:
        The kind: the sources' common kind, or the declared one. Any source can feed an
        unlabelled version (its labels and tags are left out).

    Raises:
        InvalidInput: an unknown kind, sources of different kinds, a source mixing
            labelled and unlabelled rows, or a declared kind the sources cannot give.
    """
    if declared is not None and declared not in tuple(DatasetTask):
        raise InvalidInput(f"Unknown task kind {declared!r}.",
                           hint=f"Use one of: {', '.join(DatasetTask)} (or leave it out to infer it from the sources).")
    if declared == DatasetTask.UNLABELLED:
        return DatasetTask.UNLABELLED
    mixed = [i for i, kind in found.items() if kind is None]
    if mixed:
        raise InvalidInput(f"Source(s) {', '.join(map(str, mixed))} hold both labelled and unlabelled rows, so "
                           "the version's task is unclear.", hint="Create an unlabelled version (task "
                           "'unlabelled'), or re-import the file so every row has a label.")
    kinds = sorted(set(found.values()))  # type: ignore[type-var]
    if len(kinds) > 1:
        listing = "; ".join(f"source {i}: {kind}" for i, kind in found.items())
        raise InvalidInput(f"The sources hold different kinds of rows ({listing}); one version has one task.",
                           hint="Create one version per kind, or task='unlabelled' to keep only the texts.")
    kind = kinds[0]
    if declared is not None and declared != kind:
        raise InvalidInput(f"The sources hold {kind} rows, not {declared} rows.",
                           hint=f"Leave the task out (it is {kind}), or use 'unlabelled' to keep only the texts.")
    return kind  # type: ignore[return-value]


def undeclared_fractions(declared: set[str], fractions: Mapping[str, float] | None) -> dict[str, float]:
    """The fractions that split the rows without a declared split (pure).

    Args:
        declared: the splits some source declared.
        fractions: the caller's fractions, or None for the default.

    Returns:
        With None: the default (train 0.8, dev 0.1, test 0.1) with each declared dev or
        test share moved to train. Otherwise the caller's fractions, validated.

    Raises:
        InvalidInput: an unknown split name, invalid fractions, or a share of rows for a
            split that a source already declares.
    """
    if fractions is None:
        out = dict(DEFAULT_FRACTIONS)
        for name in declared - {"train"}:
            out["train"] += out.pop(name, 0.0)
        return {name: round(value, 10) for name, value in out.items()}
    out = validate_fractions(fractions)
    unknown = [name for name in out if name not in SPLITS]
    if unknown:
        raise InvalidInput(f"Unknown split(s) in fractions: {', '.join(map(repr, unknown))}.",
                           hint=f"Splits are {', '.join(SPLITS)}.")
    clash = sorted(name for name in declared - {"train"} if out.get(name, 0) > 0)
    if clash:
        raise InvalidInput(f"A source already declares the {', '.join(clash)} split, and fractions {out} would "
                           "add undeclared rows to it.", hint="Give fractions for the other splits only, e.g. "
                           "{'train': 0.9, 'dev': 0.1} with a declared test file.")
    return out


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(f"Dataset name {name!r} is not valid.",
                           hint="Use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit.")


def _check_request(name: str, source_ids: Sequence[int]) -> list[int]:
    _check_name(name)
    if isinstance(source_ids, (str, bytes)) or not source_ids:
        raise InvalidInput("A dataset version needs at least one source id.", hint="Import a file first, then "
                           "pass its source id.")
    ids = list(source_ids)
    if any(isinstance(i, bool) or not isinstance(i, int) for i in ids):
        raise InvalidInput(f"Source ids must be integers, got {ids!r}.", hint="Pass the ids of imported sources.")
    if len(set(ids)) != len(ids):
        raise InvalidInput(f"Source ids {ids} repeat an id.", hint="Name each source once.")
    return ids


def create_dataset_version(ctx: Context, *, name: str, source_ids: list[int], actor: Actor,
                           recipe: Sequence[RecipeEntry] | None = None, seed: int = 13,
                           fractions: dict[str, float] | None = None, task: str | None = None,
                           redact: bool = True) -> DatasetVersion:
    """Clean, split and freeze imported sources as the next version of a dataset.

    The dataset's name is its project: the actor needs ``dataset.create`` there.

    Args:
        ctx: the stores.
        name: the dataset's name; the version number is the next one for that name.
        source_ids: the sources to include, in order (earlier rows win ties in dedup).
        actor: who creates it (dataset.create in project ``name``; recorded as created_by
            and owner, and in the audit ledger).
        recipe: the cleaning steps to apply: names or ``{"step": name, **params}`` (see
            ``cleaning.STEPS``); stored with the version, each with its parameters. None
            applies ``BASIC_RECIPE`` (``TOKEN_RECIPE`` for token classification).
        seed: the seed of the stratified split.
        fractions: how to split rows without a declared split; see ``undeclared_fractions``.
        task: the task kind (see ``DatasetTask``); None infers it from the sources.
        redact: redact personal data (the default): a recipe without ``redact_pii`` gets it
            (``cleaning.recipe_with_redaction``). False opts out, recorded on the version
            (``stats["redaction"]`` "opted out", shown in its quality report).

    Returns:
        The new version, in state "draft".

    Raises:
        Forbidden: the actor may not create versions of this dataset.
        InvalidInput, NotFound: as ``freeze_sources``. Nothing is stored.
    """
    authorize(ctx.db, actor, "dataset.create", project=name)
    return freeze_sources(ctx, name=name, source_ids=source_ids, actor=actor, recipe=recipe, seed=seed,
                          fractions=fractions, task=task, redact=redact)


def freeze_sources(ctx: Context, *, name: str, source_ids: list[int], actor: Actor,
                   recipe: Sequence[RecipeEntry] | None = None, seed: int = 13,
                   fractions: dict[str, float] | None = None, task: str | None = None,
                   redact: bool = True) -> DatasetVersion:
    """Clean, split and freeze sources, for a service that has authorised the caller.

    ``create_dataset_version`` is this behind ``dataset.create``; the retraining loop
    (``maintenance.retrain``) builds its versions with it too.

    Args:
        As ``create_dataset_version``; ``actor`` is recorded, not checked.

    Returns:
        The new version, in state "draft".

    Raises:
        InvalidInput: a bad name, recipe, task or fractions; sources of different kinds;
            a step that rewrites text in a token-classification recipe; a ``redact_pii``
            step with ``redact=False``; no rows left after cleaning; no training rows (too
            few rows). Nothing is stored.
        NotFound: an unknown source id.
    """
    ids = _check_request(name, source_ids)
    if recipe is not None:
        recipe_with_redaction(check_recipe(recipe), redact=redact)
    with ctx.db.session() as s:
        # Also the existence check: a missing id has no row here.
        quarantined_by_source = {row.id: row.rows_quarantined for row in s.execute(
            sa.select(SqlSource.id, SqlSource.rows_quarantined).where(SqlSource.id.in_(ids)))}
    found = set(quarantined_by_source)
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFound(f"Unknown source id(s): {', '.join(map(str, missing))}.",
                       hint="Import the files first; check the ids against the list of sources.")

    parts = {source_id: read_source_rows(ctx, source_id) for source_id in ids}
    kind = choose_task({i: source_task(rows) for i, rows in parts.items()}, task)
    steps = _task_recipe(kind, recipe, redact=redact)
    table, reports = apply_recipe(_concat_sources(parts, kind), steps)
    del parts
    if table.num_rows == 0:
        raise InvalidInput(f"No rows are left in sources {ids} after cleaning with {steps}.",
                           hint="Check the sources' rows (are the texts empty?).")

    declared = table.column("split")
    declared_names = set(declared.unique().drop_null().to_pylist())
    used_fractions = undeclared_fractions(declared_names, fractions)
    open_rows = declared.null_count > 0
    identities = row_identities(table)
    previous = _previous_identities(ctx, name)
    assignment = assign_splits(identities, declared, table.column("label").to_pylist(), seed=seed,
                               fractions=used_fractions, previous=previous[1] if previous else None,
                               texts=table.column("text"))
    kept = pa.array(assignment.keep)
    table, split_column = table.filter(kept), assignment.splits.filter(kept)
    train_rows = int(pc.sum(pc.equal(split_column, "train")).as_py() or 0)
    if train_rows == 0:
        raise InvalidInput(f"Too few rows for a training split: {table.num_rows} rows after cleaning, none in train.",
                           hint="Add rows without a declared split, or import the training file with --split train "
                           "(command line) or split=train (API).")

    columns = {
        "row_id": pa.array(np.arange(table.num_rows, dtype=np.int64)),
        "text": table.column("text"),
        "label": table.column("label"),
        "split": split_column,
        "source_id": table.column("source_id"),
        "source_line": table.column("line"),
    }
    if kind == DatasetTask.TOKEN_CLASSIFICATION:
        columns.update(tokens=table.column("tokens"), tags=table.column("tags"))
    del table
    return freeze_dataset_version(
        ctx, pa.table(columns, schema=snapshot_schema(kind)), name=name, task=kind, actor=actor, source_ids=ids,
        split_seed=seed, reports=reports,
        stats={"split_fractions": used_fractions if open_rows else {}, "declared_splits": sorted(declared_names),
               "quarantined": {str(i): int(quarantined_by_source[i] or 0) for i in ids},
               "redaction": "on" if redact else "opted out",
               "split_assignment": {**assignment.report, "previous_version": previous[0] if previous else None}},
        details={"recipe": steps, "redaction": "on" if redact else "opted out"})


def _previous_identities(ctx: Context, name: str) -> tuple[int, pa.Table] | None:
    """The newest version of dataset ``name`` (its id) with its rows' identities and splits, or None."""
    with ctx.db.session() as s:
        latest = s.scalar(sa.select(SqlDatasetVersion.id).where(SqlDatasetVersion.name == name)
                          .order_by(SqlDatasetVersion.version.desc()).limit(1))
    if latest is None:
        return None
    rows = read_dataset_rows(ctx, latest)
    return latest, pa.table({"identity": row_identities(rows), "split": rows.column("split")})


def freeze_dataset_version(ctx: Context, snapshot: pa.Table, *, name: str, task: DatasetTask, actor: Actor,
                           source_ids: Sequence[int], split_seed: int, reports: Sequence[StepReport] = (),
                           stats: Mapping[str, Any] | None = None, details: Mapping[str, Any] | None = None,
                           in_transaction: Callable[[Session, DatasetVersion], None] | None = None,
                           ) -> DatasetVersion:
    """Freeze rows as the next version of a dataset: the one way a version is made.

    Every producer of dataset versions — ``create_dataset_version``, the annotation
    export, the retraining loop — ends here, so each version records its task kind
    (``schema["task"]``), its columns, statistics, content hash, leakage check (texts
    found in more than one split, ``stats["leakage"]``: the release gate refuses any),
    quality report and a ``dataset.create`` ledger entry the same way. The caller has authorised ``actor``.

    Args:
        ctx: the stores.
        snapshot: the rows, in order, with at least the columns of ``snapshot_schema(task)``
            (``row_id`` numbering them 0..n-1); other columns (an export's lineage) are
            kept as they are.
        name: the dataset's name; the version number is the next one for that name.
        task: what the rows are for.
        actor: who makes it (recorded as created_by and owner, and in the ledger).
        source_ids: the sources the rows came from.
        split_seed: the seed the splits were drawn with.
        reports: the cleaning steps' reports, in order (stored as the recipe).
        stats: statistics to store besides ``dataset_stats`` (e.g. ``split_fractions``,
            ``declared_splits``, ``quarantined``, an export's ``annotation`` figures).
        details: more details for the ledger entry.
        in_transaction: called with the session and the new version before it commits
            (a producer's own bookkeeping; raising there stores nothing).

    Returns:
        The new version, in state "draft".

    Raises:
        InvalidInput: a bad name, or rows missing a column the task needs (or of the
            wrong type). Nothing is stored.
    """
    _check_name(name)
    task = DatasetTask(task)
    wrong = [f"{f.name} ({f.type})" for f in snapshot_schema(task)
             if f.name not in snapshot.column_names or snapshot.schema.field(f.name).type != f.type]
    if wrong:
        raise InvalidInput(f"The rows of a {task} dataset version need the column(s) {', '.join(wrong)}.",
                           hint="Build the rows with data.versions.snapshot_schema(task).")
    snapshot = snapshot.replace_schema_metadata({**(snapshot.schema.metadata or {}),
                                                 b"chainkeeper.format": SNAPSHOT_FORMAT.encode(),
                                                 b"chainkeeper.task": task.value.encode()})
    digest = content_hash(snapshot, task)
    leakage = find_leakage(snapshot)
    # Tags are counted as labels only where they are the labels (token classification).
    counted = snapshot if task == DatasetTask.TOKEN_CLASSIFICATION or "tags" not in snapshot.column_names \
        else snapshot.drop_columns(["tags"])
    all_stats = {**dataset_stats(counted, reports), "split_fractions": {}, "declared_splits": [], "quarantined": {},
                 **(stats or {}), "leakage": leakage}
    del counted
    columns = {f.name: str(f.type) for f in snapshot.schema}
    sink = pa.BufferOutputStream()
    pq.write_table(snapshot, sink, compression="zstd")
    rows = snapshot.num_rows
    del snapshot
    artifact = ctx.artifacts.put_bytes(sink.getvalue().to_pybytes())
    del sink
    steps = [asdict(r) for r in reports]

    with ctx.db.session() as s:
        latest = s.scalar(sa.select(sa.func.max(SqlDatasetVersion.version)).where(SqlDatasetVersion.name == name))
        row = SqlDatasetVersion(
            name=name, version=(latest or 0) + 1, content_hash=digest, snapshot_artifact=artifact,
            source_ids=list(source_ids), schema={"format": SNAPSHOT_FORMAT, "task": task.value, "columns": columns},
            stats=all_stats, recipe=steps, split_seed=split_seed, state=DatasetState.DRAFT.value,
            owner=actor.name, created_by=actor.name)
        s.add(row)
        s.flush()
        # The report names the version number, known only now; a blob left by a rolled
        # back transaction is harmless in a content-addressed store.
        report = build_quality_report(name=name, version=row.version, content_hash=digest, stats=all_stats,
                                      steps=steps, task=task.value)
        row.stats = {**all_stats, "quality_report": store_quality_report(ctx.artifacts, report)}
        append_entry(s, actor, "dataset.create", "dataset_version", row.id,
                     after={"name": name, "version": row.version, "content_hash": digest},
                     details={"source_ids": list(source_ids), "seed": split_seed, "task": task.value, "rows": rows,
                              "rows_per_split": all_stats["rows_per_split"], **(details or {})})
        version = _to_version(row)
        if in_transaction is not None:
            in_transaction(s, version)
        return version


def _task_recipe(kind: DatasetTask, recipe: Sequence[RecipeEntry] | None, *, redact: bool) -> list[dict[str, Any]]:
    default = TOKEN_RECIPE if kind == DatasetTask.TOKEN_CLASSIFICATION else BASIC_RECIPE
    if recipe is None and not redact:
        recipe = [step for step in default if step != "redact_pii"]
    steps = recipe_with_redaction(check_recipe(default if recipe is None else recipe), redact=redact)
    if kind != DatasetTask.TOKEN_CLASSIFICATION:
        return steps
    rewriting = [e["step"] for e in steps if e["step"] in REWRITES_TEXT]
    if rewriting:
        raise InvalidInput(f"Cleaning step(s) {', '.join(map(repr, rewriting))} rewrite the text, which would no "
                           "longer match the tokens of a token-classification version.",
                           hint=f"Use steps that drop rows or replace whole tokens, e.g. {TOKEN_RECIPE} (the default "
                           "for this task).")
    return steps


def _concat_sources(parts: Mapping[int, pa.Table], kind: DatasetTask) -> pa.Table:
    """The sources' rows one after another, with the columns the task keeps and a source_id."""
    tables = []
    for source_id, rows in parts.items():
        n = rows.num_rows
        columns = {"text": rows.column("text"), "label": rows.column("label"), "line": rows.column("line"),
                   "split": rows.column("split"), "source_id": pa.array(np.full(n, source_id, dtype=np.int64))}
        if kind == DatasetTask.UNLABELLED:
            columns["label"] = pa.nulls(n, pa.string())
        if kind == DatasetTask.TOKEN_CLASSIFICATION:
            columns.update(tokens=rows.column("tokens"), tags=rows.column("tags"))
        tables.append(pa.table(columns))
    return pa.concat_tables(tables)


def release_dataset_version(ctx: Context, version_id: int, *, actor: Actor) -> DatasetVersion:
    """Release a draft version: it becomes the one training may rely on.

    The chain's gate calls this as the executor of the approved "dataset.release"
    request; the gate decides who may approve (not the last editor).

    Args:
        ctx: the stores.
        version_id: the version's id.
        actor: who releases it: the approver (dataset.release.approve in the version's
            project; recorded as released_by and in the audit ledger).

    Returns:
        The released version.

    Raises:
        Forbidden: the actor may not approve releases of this dataset.
        NotFound: there is no such version.
        Conflict: the version is not a draft (it was released already).
    """
    authorize_object(ctx.db, actor, "dataset.release.approve", lambda: project_of_dataset_version(ctx.db, version_id))
    with ctx.db.session() as s:
        row = s.get(SqlDatasetVersion, version_id)
        if row is None:
            raise _not_found(version_id)
        if row.state != DatasetState.DRAFT:
            raise Conflict(f"Dataset version {row.name} v{row.version} (id {row.id}) is already {row.state} "
                           f"(by {row.released_by}).", hint="A released version is final; create a new version to "
                           "change its rows.")
        row.state, row.released_by, row.released_at = DatasetState.RELEASED.value, actor.name, utcnow()
        append_entry(s, actor, "dataset.release", "dataset_version", row.id, before={"state": "draft"},
                     after={"state": row.state, "content_hash": row.content_hash})
        return _to_version(row)


def _not_found(version_id: int) -> NotFound:
    return NotFound(f"There is no dataset version with id {version_id}.",
                    hint="Check the id against the list of dataset versions.")


def get_dataset_version(db: Database, version_id: int) -> DatasetVersion:
    """Return one dataset version.

    Args:
        db: the metadata store.
        version_id: the version's id.

    Returns:
        The version.

    Raises:
        NotFound: there is no such version.
    """
    with db.session() as s:
        row = s.get(SqlDatasetVersion, version_id)
        if row is None:
            raise _not_found(version_id)
        return _to_version(row)


def project_of_dataset_version(db: Database, version_id: int) -> str:
    """The project a dataset version belongs to: its dataset's name.

    A project is the name the versions of one dataset share; runs, models and
    deployments built from them belong to it too. Project-scoped roles hold there.

    Raises:
        NotFound: there is no such version.
    """
    return get_dataset_version(db, version_id).name


def show_dataset_version(ctx: Context, version_id: int, *, actor: Actor) -> DatasetVersion:
    """One dataset version, for a reader (data.read in its project).

    Raises:
        Forbidden: the actor may not read this dataset. NotFound: there is no such version.
    """
    authorize_object(ctx.db, actor, "data.read", lambda: project_of_dataset_version(ctx.db, version_id))
    return get_dataset_version(ctx.db, version_id)


def find_dataset_versions(ctx: Context, *, actor: Actor, name: str | None = None,
                          limit: int | None = None) -> list[DatasetVersion]:
    """The dataset versions the actor may read (data.read), newest first.

    Args:
        ctx: the stores.
        actor: the reader; roles bound to a project show that project's versions.
        name: only the versions of this dataset (the actor must be allowed to read it).
        limit: at most this many (all when None).

    Raises:
        Forbidden: the actor may read no dataset, or not dataset ``name``.
    """
    if name is not None:
        authorize(ctx.db, actor, "data.read", project=name)
        return list_dataset_versions(ctx.db, name=name, limit=limit)
    return list_dataset_versions(ctx.db, limit=limit, projects=projects_allowed(ctx.db, actor, "data.read"))


def read_dataset_page(ctx: Context, version_id: int, *, actor: Actor, split: str | None = None, offset: int = 0,
                      limit: int = 100) -> tuple[int, list[dict[str, Any]]]:
    """A page of a version's rows, for a reader (data.read in its project).

    Args:
        ctx: the stores.
        version_id: the version's id.
        actor: the reader.
        split: only this split; all rows when None.
        offset: the first row of the page (0-based, in snapshot order).
        limit: at most this many rows.

    Returns:
        The number of rows (of the split) and the page's rows as dicts.

    Raises:
        Forbidden: the actor may not read this dataset. As ``read_dataset_rows`` otherwise.
    """
    authorize_object(ctx.db, actor, "data.read", lambda: project_of_dataset_version(ctx.db, version_id))
    table = read_dataset_rows(ctx, version_id, split)
    return table.num_rows, table.slice(offset, limit).to_pylist()


def list_dataset_versions(db: Database, *, name: str | None = None, limit: int | None = None,
                          projects: Collection[str] | None = None) -> list[DatasetVersion]:
    """Return dataset versions, newest first.

    Args:
        db: the metadata store.
        name: only the versions of this dataset.
        limit: at most this many (all when None).
        projects: only the versions of these datasets (all when None).

    Returns:
        The versions, newest first.
    """
    query = sa.select(SqlDatasetVersion).order_by(SqlDatasetVersion.id.desc())
    if name is not None:
        query = query.where(SqlDatasetVersion.name == name)
    if projects is not None:
        query = query.where(SqlDatasetVersion.name.in_(sorted(projects)))
    if limit is not None:
        query = query.limit(limit)
    with db.session() as s:
        return [_to_version(r) for r in s.scalars(query)]


def count_dataset_versions(db: Database, *, name: str | None = None) -> int:
    """Return how many dataset versions exist (of one dataset when ``name`` is given).

    Args:
        db: the metadata store.
        name: only count the versions of this dataset.

    Returns:
        The count.
    """
    query = sa.select(sa.func.count()).select_from(SqlDatasetVersion)
    if name is not None:
        query = query.where(SqlDatasetVersion.name == name)
    with db.session() as s:
        return int(s.scalar(query) or 0)


def read_dataset_rows(ctx: Context, version_id: int, split: str | None = None) -> pa.Table:
    """Return a version's rows, read back from the artefact store (which re-checks their sha256).

    Args:
        ctx: the stores.
        version_id: the version's id.
        split: only this split ("train", "dev" or "test"); all rows when None.

    Returns:
        The snapshot's rows (columns row_id, text, label, split, source_id, source_line), in row order.

    Raises:
        InvalidInput: an unknown split name.
        NotFound: no such version, or its snapshot is missing from the store.
        ArtifactCorrupted: the snapshot no longer matches its digest.
    """
    if split is not None and split not in SPLITS:
        raise InvalidInput(f"Unknown split {split!r}.", hint=f"Use one of: {', '.join(SPLITS)}.")
    version = get_dataset_version(ctx.db, version_id)
    table = parquet_from_bytes(ctx.artifacts.get_bytes(version.snapshot_artifact),
                               what=f"dataset version {version_id}")
    if split is not None:
        table = table.filter(pc.equal(table.column("split"), split))
    return table
