"""The statistics stored with a dataset version (pure).

They are what a steward reviews before releasing a version, and what later stages read
instead of re-scanning the snapshot: row counts per split, the label set, label counts
per split, a histogram of text lengths, and what cleaning removed. Everything is plain
JSON (str keys, int/float values) so it can be stored as-is in the ``stats`` column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chainkeeper.data.cleaning import StepReport

__all__ = ["SPLIT_ORDER", "LENGTH_BUCKETS", "split_key", "length_histogram", "dataset_stats"]

# Splits are listed in this order; other names (a custom split) follow alphabetically.
SPLIT_ORDER = ("train", "dev", "test")
# Text length buckets in characters: lower edges, the last one open-ended. Fixed, so two
# versions' histograms compare bucket by bucket.
LENGTH_BUCKETS = (0, 16, 32, 64, 128, 256, 512, 1024)


def _bucket_names() -> list[str]:
    names = [f"{lo}-{hi - 1}" for lo, hi in zip(LENGTH_BUCKETS, LENGTH_BUCKETS[1:], strict=False)]
    return names + [f"{LENGTH_BUCKETS[-1]}+"]


def split_key(name: str) -> tuple[int, str]:
    """Sort key of split names: train, dev, test, then others alphabetically (pure)."""
    return (SPLIT_ORDER.index(name) if name in SPLIT_ORDER else len(SPLIT_ORDER), name)


def length_histogram(texts: pa.Array | pa.ChunkedArray) -> dict[str, Any]:
    """Histogram of text lengths in characters over ``LENGTH_BUCKETS``, plus min/mean/max.

    Args:
        texts: the texts (nulls count as length 0).

    Returns:
        {"buckets": {"0-15": n, ..., "1024+": n}, "min": int, "mean": float, "max": int}.
    """
    lengths = pc.fill_null(pc.utf8_length(texts), 0).to_numpy(zero_copy_only=False)
    counts = np.bincount(np.digitize(lengths, LENGTH_BUCKETS[1:]), minlength=len(LENGTH_BUCKETS))
    summary: dict[str, Any] = {"buckets": {name: int(c) for name, c in zip(_bucket_names(), counts, strict=True)}}
    if len(lengths):
        summary.update(min=int(lengths.min()), mean=round(float(lengths.mean()), 2), max=int(lengths.max()))
    else:
        summary.update(min=0, mean=0.0, max=0)
    return summary


def _value_counts(values: pa.ChunkedArray) -> tuple[list[Any], list[int]]:
    counted = pc.value_counts(values)
    return counted.field("values").to_pylist(), counted.field("counts").to_pylist()


def dataset_stats(table: pa.Table, reports: Sequence[StepReport]) -> dict[str, Any]:
    """The statistics of a dataset version's rows.

    Args:
        table: the final rows, with ``text``, ``label`` and ``split`` columns (and
            ``tags`` for token classification).
        reports: the cleaning reports that produced them.

    Returns:
        rows, rows_per_split, labels (sorted), label_counts (split -> label -> rows; for
        token classification, split -> tag -> tokens; unlabelled rows count in no label),
        text_length (see ``length_histogram``), and from the cleaning reports:
        rows_before_cleaning, empty_removed, duplicates_removed, conflicts (label
        conflicts among exact repeats, or the label_conflicts step's count when it ran),
        near_duplicates_removed, pii_found (type -> count, summed over redact_pii steps)
        and steps (name, rows_in, rows_out, changed of each step, in order).
    """
    rows_per_split = {str(v): int(n) for v, n in zip(*_value_counts(table.column("split")), strict=True)}
    splits = sorted(rows_per_split, key=split_key)
    if "tags" in table.column_names:
        # Token classification: count tags (tokens), each token in its sentence's split.
        tags = table.column("tags").combine_chunks()
        pairs = pa.table({"split": table.column("split").take(pc.list_parent_indices(tags)),
                          "label": pc.list_flatten(tags)})
    else:
        pairs = table.select(["split", "label"]).filter(pc.is_valid(table.column("label")))
    grouped = pairs.group_by(["split", "label"], use_threads=False).aggregate([("label", "count")])
    label_counts: dict[str, dict[str, int]] = {split: {} for split in splits}
    for split, label, count in zip(grouped.column("split").to_pylist(), grouped.column("label").to_pylist(),
                                   grouped.column("label_count").to_pylist(), strict=True):
        label_counts[split][label] = int(count)
    by_name = {r.name: r for r in reports}
    dedup = by_name.get("dedup_exact")
    empty = by_name.get("drop_empty")
    conflict_step = by_name.get("label_conflicts")
    pii_found: dict[str, int] = {}
    for r in reports:
        for kind, count in (r.details.get("pii_found") or {}).items() if r.name == "redact_pii" else ():
            pii_found[kind] = pii_found.get(kind, 0) + int(count)
    return {
        "rows": table.num_rows,
        "rows_per_split": {s: rows_per_split[s] for s in splits},
        "labels": sorted({label for counts in label_counts.values() for label in counts}),
        "label_counts": {s: dict(sorted(label_counts[s].items())) for s in splits},
        "text_length": length_histogram(table.column("text")),
        "rows_before_cleaning": reports[0].rows_in if reports else table.num_rows,
        "empty_removed": empty.changed if empty else 0,
        "duplicates_removed": dedup.details.get("duplicates", 0) if dedup else 0,
        "conflicts": (conflict_step.details.get("conflicts", 0) if conflict_step
                      else dedup.details.get("conflicts", 0) if dedup else 0),
        "near_duplicates_removed": sum(r.details.get("near_duplicates", 0) for r in reports if r.name == "dedup_near"),
        "pii_found": pii_found,
        "steps": [{"name": r.name, "rows_in": r.rows_in, "rows_out": r.rows_out, "changed": r.changed}
                  for r in reports],
    }
