"""A row's identity across splits and versions, and the leakage check built on it (pure).

A row is identified by its content, not by where it came from: the sha256 of its text
normalised as ``cleaning.normalize_text`` writes it (NFKC, invisible characters removed,
whitespace collapsed, trimmed), or, for a token-classification row, of its tokens. The
same text imported again — from another file, a re-import of a released version, a
feedback label on served traffic — has the same identity, so

- split assignment (``splits.assign_splits``) puts every row of one identity in one
  split, within a version and, through the previous version, across versions;
- ``diff`` matches the rows of two versions by identity, so rows both versions hold show
  as unchanged however they were imported;
- a version's quality report counts the identities found in more than one split
  (``find_leakage``), and the ``dataset.release`` gate refuses a version that has any.

Labels and tags are not part of the identity: a text that carries another label is the
same text, relabelled.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chainkeeper.data.cleaning import normalized

__all__ = ["row_identities", "text_identities", "find_leakage", "MAX_LEAK_EXAMPLES"]

MAX_LEAK_EXAMPLES = 5


def text_identities(texts: Sequence[str | None]) -> list[str]:
    """The identity of each text of text (not token) rows: ``row_identities`` for plain strings."""
    values = pc.fill_null(normalized(pa.array(list(texts), pa.string())), "").to_pylist()
    return [hashlib.sha256(v.encode()).hexdigest() for v in values]


def row_identities(table: pa.Table) -> pa.Array:
    """The identity of every row (see the module docstring), as 64-hex-character strings.

    Args:
        table: rows with a ``text`` column, and a ``tokens`` column for token data (its
            tokens are the identity then; a null text hashes as the empty text).

    Returns:
        A string array, one identity per row, in row order.
    """
    if "tokens" not in table.column_names:
        return pa.array(text_identities(table.column("text").to_pylist()), pa.string())
    values = [json.dumps(t or [], ensure_ascii=False, separators=(",", ":"))
              for t in table.column("tokens").to_pylist()]
    return pa.array([hashlib.sha256(v.encode()).hexdigest() for v in values], pa.string())


def find_leakage(table: pa.Table, identities: pa.Array | None = None) -> dict[str, Any]:
    """The identities found in more than one split: rows a model could train on and be scored on.

    Args:
        table: a version's rows (``text`` and ``split``; ``tokens`` for token data).
        identities: ``row_identities(table)`` when the caller has them already.

    Returns:
        ``{"texts": identities in several splits, "rows": their rows, "splits": {"train+test":
        texts, ...}, "examples": [{"text", "splits"}, ...]}`` (at most ``MAX_LEAK_EXAMPLES``,
        in row order); ``texts`` 0 means no text is in two splits.
    """
    keys = row_identities(table) if identities is None else identities
    if table.num_rows == 0:
        return {"texts": 0, "rows": 0, "splits": {}, "examples": []}
    splits = pc.fill_null(table.column("split").cast(pa.string()), "").to_numpy(zero_copy_only=False)
    codes = np.asarray(pc.index_in(keys, value_set=pc.unique(keys)).to_numpy(zero_copy_only=False), dtype=np.int64)
    per_key: dict[int, set[str]] = {}
    for code, split in zip(codes.tolist(), splits.tolist(), strict=True):
        per_key.setdefault(code, set()).add(split)
    leaking = {code for code, found in per_key.items() if len(found) > 1}
    if not leaking:
        return {"texts": 0, "rows": 0, "splits": {}, "examples": []}
    mask = np.isin(codes, np.fromiter(leaking, dtype=np.int64))
    combos: dict[str, int] = {}
    for code in leaking:
        name = "+".join(sorted(per_key[code], key=_split_order))
        combos[name] = combos.get(name, 0) + 1
    examples, shown = [], set()
    texts = table.column("text")
    for row in np.flatnonzero(mask).tolist():
        if codes[row] in shown:
            continue
        shown.add(codes[row])
        examples.append({"text": texts[row].as_py(), "splits": sorted(per_key[codes[row]], key=_split_order)})
        if len(examples) == MAX_LEAK_EXAMPLES:
            break
    return {"texts": len(leaking), "rows": int(mask.sum()), "splits": dict(sorted(combos.items())),
            "examples": examples}


def _split_order(name: str) -> tuple[int, str]:
    return ({"train": 0, "dev": 1, "test": 2}.get(name, 3), name)
