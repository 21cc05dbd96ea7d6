"""What changed between two dataset versions (pure, plus one service wrapper).

A row's identity is its content (``identity.row_identities``: the hash of its normalised
text, of its tokens for token data), not where it was imported from, so the same text
imported again — a re-import of a released version in the retraining loop, another file
holding it — is the same row. Rows of the two versions are matched by identity (the k-th
row of an identity in A with the k-th in B, in row order, where a version holds it more
than once). Between version A and version B a row is

    added          its identity is in B only
    removed        its identity is in A only
    unchanged      in both, with the same text, label (tags for token data) and split
    changed        in both, with a different text (e.g. a cleaning step now rewrites it)
    moved          in both, in a different split
    label_changes  in both, with a different label (tags): relabelled or adjudicated

A matched row can be changed, moved and relabelled at once (counted under each). Counts
are given overall and per split (B's split for all but removed, A's for removed).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chainkeeper.data.identity import row_identities
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.permissions import authorize_object

if TYPE_CHECKING:
    from chainkeeper.core.context import Context


__all__ = ["VersionDiff", "diff_tables", "diff_dataset_versions"]

MAX_EXAMPLES = 5
_KEY = ["identity", "occurrence"]
KINDS = ("added", "removed", "unchanged", "changed", "moved", "label_changes")


@dataclass(frozen=True)
class VersionDiff:
    """The difference between two versions' rows.

    Attributes:
        a: the first version's id (0 for tables diffed directly).
        b: the second version's id.
        rows_a, rows_b: row counts.
        counts: kind -> rows, for each of ``KINDS``.
        by_split: split -> kind -> rows.
        examples: kind -> up to five example rows (text, label and split on each side,
            with each side's source and line; tags for token data are in the label, space-joined).
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


def _keyed(table: pa.Table, side: str) -> pa.Table:
    """The columns a diff compares, with each row's identity and its occurrence among that identity's rows."""
    identities = row_identities(table)
    codes = np.asarray(pc.index_in(identities, value_set=pc.unique(identities)).to_numpy(zero_copy_only=False))
    # The k-th row of an identity gets occurrence k: a stable sort groups the codes in row order.
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_codes)) + 1] if len(codes) else np.empty(0, np.int64)
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(codes)]))
    occurrence = np.empty(len(codes), dtype=np.int64)
    occurrence[order] = np.arange(len(codes)) - group_start
    # Token data: the tags are the labels.
    label = (pc.binary_join(table.column("tags"), " ") if "tags" in table.column_names
             else table.column("label"))
    origin = [table.column(c) if c in table.column_names else pa.nulls(table.num_rows, pa.int64())
              for c in ("source_id", "source_line")]
    return pa.table({"identity": identities, "occurrence": pa.array(occurrence, pa.int64()),
                     f"text_{side}": table.column("text"), f"label_{side}": label.cast(pa.string()),
                     f"split_{side}": table.column("split"), f"source_{side}": origin[0], f"line_{side}": origin[1],
                     f"in_{side}": pa.array(np.ones(table.num_rows, dtype=bool))})


def _differs(joined: pa.Table, column: str) -> pa.ChunkedArray:
    """True where the two sides' values differ (a null on one side only counts as a difference)."""
    a, b = joined.column(f"{column}_a"), joined.column(f"{column}_b")
    return pc.fill_null(pc.not_equal(a, b), False) if column != "label" else pc.or_(
        pc.fill_null(pc.not_equal(a, b), False), pc.xor(pc.is_null(a), pc.is_null(b)))


def diff_tables(a: pa.Table, b: pa.Table, *, a_id: int = 0, b_id: int = 0) -> VersionDiff:
    """Compare two snapshots' rows by identity.

    Args:
        a: the older version's rows (text, label, split; tokens and tags for token data;
            source_id and source_line when known).
        b: the newer version's rows.
        a_id: the older version's id, for the result.
        b_id: the newer version's id.

    Returns:
        The counts, per-split counts and examples of each kind of change.
    """
    joined = _keyed(a, "a").join(_keyed(b, "b"), keys=_KEY, join_type="full outer", use_threads=False)
    joined = joined.sort_by([("source_b", "ascending"), ("line_b", "ascending"), ("source_a", "ascending"),
                             ("line_a", "ascending")])
    in_a = pc.fill_null(joined.column("in_a"), False)
    in_b = pc.fill_null(joined.column("in_b"), False)
    both = pc.and_(in_a, in_b)
    changed, moved, relabelled = (_differs(joined, c) for c in ("text", "split", "label"))
    tables = {
        "added": _select(joined, pc.and_(in_b, pc.invert(in_a))),
        "removed": _select(joined, pc.and_(in_a, pc.invert(in_b))),
        "unchanged": _select(joined, pc.and_(both, pc.invert(pc.or_(pc.or_(changed, moved), relabelled)))),
        "changed": _select(joined, pc.and_(both, changed)),
        "moved": _select(joined, pc.and_(both, moved)),
        "label_changes": _select(joined, pc.and_(both, relabelled)),
    }
    by_split: dict[str, dict[str, int]] = {}
    for kind, table in tables.items():
        for split, n in _split_counts(table, "split_a" if kind == "removed" else "split_b").items():
            by_split.setdefault(split, dict.fromkeys(KINDS, 0))[kind] = n
    examples: dict[str, list[dict[str, Any]]] = {}
    for kind, table in tables.items():
        # An added row has no A side, a removed row no B side.
        absent = "_a" if kind == "added" else "_b" if kind == "removed" else None
        examples[kind] = [{k: v for k, v in row.items() if k not in ("in_a", "in_b", "identity", "occurrence")
                           and not (absent and k.endswith(absent))} for row in table.slice(0, MAX_EXAMPLES).to_pylist()]
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
