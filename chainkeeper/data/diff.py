"""What changed between two dataset versions (pure, plus one service wrapper).

A row's identity is its origin: (source_id, source_line), the line of the imported file
it came from. Between version A and version B a row is

    added          its origin is in B only
    removed        its origin is in A only
    changed        its origin is in both, with a different text (a cleaning step rewrote it)
    moved          its origin is in both, in a different split

and, keyed by text rather than origin, a *label change* is a text present in both
versions whose label differs (a relabelled or adjudicated row, or the same text imported
again with another label). Counts are given overall and per split (B's split for
added, changed, moved and label changes; A's for removed).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from chainkeeper.governance.actors import Actor
from chainkeeper.governance.permissions import authorize_object

if TYPE_CHECKING:
    from chainkeeper.core.context import Context


__all__ = ["VersionDiff", "diff_tables", "diff_dataset_versions"]

MAX_EXAMPLES = 5
_ORIGIN = ["source_id", "source_line"]
KINDS = ("added", "removed", "changed", "moved", "label_changes")


@dataclass(frozen=True)
class VersionDiff:
    """The difference between two versions' rows.

    Attributes:
        a: the first version's id (0 for tables diffed directly).
        b: the second version's id.
        rows_a, rows_b: row counts.
        counts: kind -> rows, for each of ``KINDS``.
        by_split: split -> kind -> rows.
        examples: kind -> up to five example rows.
    """

    a: int
    b: int
    rows_a: int
    rows_b: int
    counts: dict[str, int]
    by_split: dict[str, dict[str, int]]
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return asdict(self)


def _select(table: pa.Table, mask: pa.ChunkedArray | pa.Array) -> pa.Table:
    return table.filter(pc.fill_null(mask, False))


def _split_counts(table: pa.Table, column: str) -> dict[str, int]:
    if table.num_rows == 0:
        return {}
    counted = pc.value_counts(table.column(column))
    return {str(v): int(n) for v, n in zip(counted.field("values").to_pylist(),
                                           counted.field("counts").to_pylist(), strict=True)}


def diff_tables(a: pa.Table, b: pa.Table, *, a_id: int = 0, b_id: int = 0) -> VersionDiff:
    """Compare two snapshots' rows.

    Args:
        a: the older version's rows (text, label, split, source_id, source_line).
        b: the newer version's rows.
        a_id: the older version's id, for the result.
        b_id: the newer version's id.

    Returns:
        The counts, per-split counts and examples of each kind of change.
    """
    cols = ["text", "label", "split", *_ORIGIN]
    left = a.select(cols).rename_columns(["text_a", "label_a", "split_a", *_ORIGIN]).append_column(
        "in_a", pa.array([True] * a.num_rows, pa.bool_()))
    right = b.select(cols).rename_columns(["text_b", "label_b", "split_b", *_ORIGIN]).append_column(
        "in_b", pa.array([True] * b.num_rows, pa.bool_()))
    joined = left.join(right, keys=_ORIGIN, join_type="full outer", use_threads=False)
    in_a = pc.fill_null(joined.column("in_a"), False)
    in_b = pc.fill_null(joined.column("in_b"), False)
    both = pc.and_(in_a, in_b)
    tables = {
        "added": _select(joined, pc.and_(in_b, pc.invert(in_a))),
        "removed": _select(joined, pc.and_(in_a, pc.invert(in_b))),
        "changed": _select(joined, pc.and_(both, pc.not_equal(joined.column("text_a"), joined.column("text_b")))),
        "moved": _select(joined, pc.and_(both, pc.not_equal(joined.column("split_a"), joined.column("split_b")))),
    }
    # Label changes are keyed by text: one row per distinct (text, label) pair of each side.
    texts_a = a.group_by(["text", "label"], use_threads=False).aggregate([]).rename_columns(["text", "label_a"])
    texts_b = b.group_by(["text", "label", "split"], use_threads=False).aggregate([]).rename_columns(
        ["text", "label_b", "split_b"])
    by_text = texts_b.join(texts_a, keys="text", join_type="inner", use_threads=False)
    relabelled = _select(by_text, pc.not_equal(by_text.column("label_a"), by_text.column("label_b")))
    # A text whose B label also exists in A unchanged is not a change (duplicates across labels).
    unchanged = set(zip(texts_a.column("text").to_pylist(), texts_a.column("label_a").to_pylist(), strict=True))
    keep = [(t, lb) not in unchanged for t, lb in zip(relabelled.column("text").to_pylist(),
                                                       relabelled.column("label_b").to_pylist(), strict=True)]
    relabelled = relabelled.filter(pa.array(keep, pa.bool_())) if relabelled.num_rows else relabelled
    relabelled = relabelled.group_by(["text", "label_b", "split_b"], use_threads=False).aggregate(
        [("label_a", "min")]).rename_columns(["text", "label_b", "split_b", "label_a"])
    tables["label_changes"] = relabelled

    by_split: dict[str, dict[str, int]] = {}
    for kind, table in tables.items():
        for split, n in _split_counts(table, "split_a" if kind == "removed" else "split_b").items():
            by_split.setdefault(split, dict.fromkeys(KINDS, 0))[kind] = n
    examples: dict[str, list[dict[str, Any]]] = {}
    for kind, table in tables.items():
        head = table.slice(0, MAX_EXAMPLES).to_pylist()
        examples[kind] = [{k: v for k, v in row.items() if k not in ("in_a", "in_b")} for row in head]
    return VersionDiff(a=a_id, b=b_id, rows_a=a.num_rows, rows_b=b.num_rows,
                       counts={kind: tables[kind].num_rows for kind in KINDS},
                       by_split=dict(sorted(by_split.items())), examples=examples)


def diff_dataset_versions(ctx: Context, a_id: int, b_id: int, *, actor: Actor) -> VersionDiff:
    """Compare two stored dataset versions (read-only; nothing is recorded).

    Args:
        ctx: the stores.
        a_id: the older version's id.
        b_id: the newer version's id.
        actor: the reader (data.read in both versions' projects).

    Returns:
        See ``diff_tables``.

    Raises:
        Forbidden: the actor may not read either version's dataset.
        NotFound: either version does not exist or its snapshot is missing.
        ArtifactCorrupted: a snapshot no longer matches its digest.
    """
    # versions imports cleaning; keep this module light
    from chainkeeper.data.versions import project_of_dataset_version, read_dataset_rows

    for version_id in (a_id, b_id):
        authorize_object(ctx.db, actor, "data.read", functools.partial(project_of_dataset_version, ctx.db, version_id))
    return diff_tables(read_dataset_rows(ctx, a_id), read_dataset_rows(ctx, b_id), a_id=a_id, b_id=b_id)
