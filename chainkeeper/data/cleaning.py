"""Cleaning steps: pure functions from a table of rows to a cleaner table and a report.

A step takes a ``pyarrow.Table`` with at least a ``text`` column (string; other columns
ride along untouched) and returns ``(table, StepReport)``. Steps are values in, values
out: no session, file or clock, so the same rows and recipe always give the same result.
They work on whole columns with ``pyarrow.compute`` where they can (about a second per
million rows for ``normalize_text``); ``dedup_exact`` walks the column in Python, which
is still well under a second per million rows.

A recipe is a list of entries applied in order by ``apply_recipe``: a step name
(``"dedup_exact"``) or a step with parameters (``{"step": "filter_length", "min_chars":
3}``). ``check_recipe`` validates every name, parameter name and value before any step
runs. The reports ``apply_recipe`` returns carry the parameters used, serialise to JSON
with ``dataclasses.asdict`` and are stored with the dataset version, so a version says
exactly how it was made.

Steps: normalize_text, strip_html, drop_empty, missing_values, filter_length,
filter_language, normalize_labels, label_conflicts, redact_pii, dedup_exact, dedup_near.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chainkeeper.core.errors import InvalidInput
from chainkeeper.data import near_duplicates, pii
from chainkeeper.data.text import SCRIPTS, detect_script, html_to_text

__all__ = ["StepReport", "Step", "RecipeEntry", "STEPS", "BASIC_RECIPE", "FULL_RECIPE", "TOKEN_RECIPE",
           "REWRITES_TEXT", "SPLIT_RANK", "normalized", "recipe_with_redaction", "normalize_text", "strip_html",
           "drop_empty", "missing_values", "filter_length", "detect_script", "filter_language", "normalize_labels",
           "label_conflicts", "redact_pii", "dedup_exact", "dedup_near", "apply_recipe", "check_recipe",
           "html_to_text"]

MAX_EXAMPLES = 3

# Control characters that carry no text: C0/C1 controls other than the whitespace ones
# (tab, newlines, VT, FF, NEL), and the zero-width characters that make two equal-looking
# texts differ (zero-width space, word joiner, BOM / zero-width no-break space).
_INVISIBLE = r"[\x{00}-\x{08}\x{0E}-\x{1F}\x{7F}-\x{84}\x{86}-\x{9F}\x{200B}\x{2060}\x{FEFF}]"
# Whitespace left after NFKC (which already maps NBSP, ideographic space and the en/em
# spaces to U+0020). The pattern matches only runs that need rewriting: a run starting
# with a non-space whitespace, or a space followed by more whitespace. Replacing every
# single space with itself would double the cost of the step.
_WS = r"\t\n\x{0B}\x{0C}\r\x{85}\x{1680}\x{2028}\x{2029}"
_WHITESPACE_RUN = rf"[{_WS}][ {_WS}]*| [ {_WS}]+"


@dataclass(frozen=True)
class StepReport:
    """What one cleaning step did.

    Attributes:
        name: the step's name in the recipe.
        rows_in: rows before the step.
        rows_out: rows after it.
        changed: rows whose text was rewritten, or rows removed.
        examples: up to three before/after examples (``after`` is None for a removed row).
        details: step-specific counts (e.g. duplicates and label conflicts, PII per type).
        params: the parameters the step ran with (empty for the defaults).
    """

    name: str
    rows_in: int
    rows_out: int
    changed: int
    examples: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


Step = Callable[..., tuple[pa.Table, StepReport]]
RecipeEntry = str | Mapping[str, Any]


def _require_text(table: pa.Table, step: str) -> None:
    if "text" not in table.column_names:
        raise InvalidInput(f"Cleaning step {step!r} needs a 'text' column; the rows have {table.column_names}.",
                           hint="Import the rows naming their text column: --text-column (command line) or "
                           "text_column= (API).")


def normalized(texts: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """The texts as ``normalize_text`` writes them (pure, vectorised; nulls stay null)."""
    out = pc.utf8_normalize(texts, form="NFKC")
    out = pc.replace_substring_regex(out, _INVISIBLE, "")
    out = pc.replace_substring_regex(out, _WHITESPACE_RUN, " ")
    return pc.utf8_trim_whitespace(out)


def normalize_text(table: pa.Table) -> tuple[pa.Table, StepReport]:
    """Normalise every text: Unicode NFKC, invisible characters removed, whitespace collapsed, trimmed.

    NFKC folds compatibility forms, so full-width letters, digits and punctuation become
    their ASCII forms ("ＡＢＣ１２３" -> "ABC123", "，" -> ","), and the many Unicode spaces
    become U+0020. Null texts stay null.

    Args:
        table: rows with a ``text`` column.

    Returns:
        The rows with normalised text, and a report counting the rows that changed.
    """
    _require_text(table, "normalize_text")
    before = table.column("text")
    after = normalized(before)
    differs = pc.fill_null(pc.not_equal(before, after), False)
    changed = int(pc.sum(differs).as_py() or 0)
    examples = []
    if changed:
        positions = pc.indices_nonzero(differs)[:MAX_EXAMPLES].to_pylist()
        examples = [{"before": before[i].as_py(), "after": after[i].as_py()} for i in positions]
    out = table.set_column(table.column_names.index("text"), "text", after)
    return out, StepReport("normalize_text", table.num_rows, out.num_rows, changed, examples)


def drop_empty(table: pa.Table) -> tuple[pa.Table, StepReport]:
    """Drop rows whose text is null, empty or only whitespace.

    Args:
        table: rows with a ``text`` column.

    Returns:
        The rows with a text, and a report counting the rows removed.
    """
    _require_text(table, "drop_empty")
    text = table.column("text")
    keep = pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0), False)
    out = table.filter(keep)
    removed = table.num_rows - out.num_rows
    examples = []
    if removed:
        positions = pc.indices_nonzero(pc.invert(keep))[:MAX_EXAMPLES].to_pylist()
        examples = [{"before": text[i].as_py(), "after": None} for i in positions]
    return out, StepReport("drop_empty", table.num_rows, out.num_rows, removed, examples)


# Which copy of a repeated row stays: a declared split over an undeclared row, and among
# declared splits test over dev over train (rank 0 = undeclared). Keeping the evaluation
# copy leaves a benchmark's test file as published and takes the text out of training.
SPLIT_RANK = {"train": 1, "dev": 2, "test": 3}
_RANK_NAMES = ("undeclared", "train", "dev", "test")


def _split_ranks(table: pa.Table) -> np.ndarray:
    """Each row's rank in SPLIT_RANK (0 where no split is declared)."""
    if "split" not in table.column_names:
        return np.zeros(table.num_rows, dtype=np.int64)
    splits = table.column("split")
    ranks: np.ndarray = np.zeros(table.num_rows, dtype=np.int64)
    for name, rank in SPLIT_RANK.items():
        ranks[pc.fill_null(pc.equal(splits, name), False).to_numpy(zero_copy_only=False)] = rank
    return ranks


def _why(kept: int, removed: int) -> str:
    if kept == removed:
        return "repeat within one split: the first row stays"
    if removed == 0:
        return "a row of a declared split wins over an undeclared one"
    return f"declared {_RANK_NAMES[kept]} wins over declared {_RANK_NAMES[removed]}: the text stays in one split"


def _joined(lists: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """Each list of strings as one string (unit separator between items), for grouping."""
    return pc.binary_join(lists, "\x1f")


def dedup_exact(table: pa.Table) -> tuple[pa.Table, StepReport]:
    """Remove rows that repeat another row, within a split and across splits; keep one copy.

    A repeat has the same text; in token data (a ``tokens`` column) the same tokens AND
    the same tags. Run it after ``normalize_text`` so texts that differ only in width or
    spacing count as the same. Which copy stays (``SPLIT_RANK``): a row of a declared split
    (a non-null ``split``, e.g. a benchmark's test file) over an undeclared row, even one
    that came first; among declared splits, test over dev over train, so evaluation rows
    stay as declared and the text leaves training; then the first row. Every other copy is
    removed, declared or not, so no text is in two splits and none is counted twice.

    Label conflicts. Text data: a removed repeat whose label differs from the kept row's
    (the kept label stays; someone should look at it). Token data: a kept sentence whose
    tokens repeat an earlier kept sentence with other tags; both stay (they are not the
    same row) and are counted and shown as examples.

    Args:
        table: rows with a ``text`` column, and ``label`` / ``split`` / ``tokens`` and
            ``tags`` columns when present.

    Returns:
        The rows without repeats, in their order, and a report with ``details``:
        ``duplicates`` (rows removed), ``conflicts`` (see above), ``removed_from`` (split,
        or "undeclared", -> rows removed there) and ``repeats``: one entry per (split kept,
        split removed) with its ``rows`` and ``why`` that copy stayed.
    """
    _require_text(table, "dedup_exact")
    n = table.num_rows
    tokens = "tokens" in table.column_names and "tags" in table.column_names
    if tokens:
        sentences = _codes(_joined(table.column("tokens")))
        keys = _codes(pc.binary_join_element_wise(_joined(table.column("tokens")), _joined(table.column("tags")),
                                                  "\x1e"))
    else:
        keys = _codes(table.column("text"))
    labels = _codes(table.column("label")) if "label" in table.column_names else np.full(n, -1, np.int64)
    ranks = _split_ranks(table)
    # Highest rank first, row order within a rank: the first row of each key in that order stays.
    order = np.argsort(-ranks, kind="stable")
    _, first = np.unique(keys[order], return_index=True)
    kept_row = np.empty(int(keys.max(initial=-1)) + 2, dtype=np.int64)
    kept_row[keys[order[first]] + 1] = order[first]
    is_repeat = np.ones(n, dtype=bool)
    is_repeat[first] = False
    removed = np.sort(order[is_repeat])
    kept_of_removed = kept_row[keys[removed] + 1]
    keep = np.ones(n, dtype=bool)
    keep[removed] = False
    out = table.filter(pa.array(keep))

    text_column = table.column("text")
    label_column = table.column("label") if "label" in table.column_names and not tokens else None
    examples: list[dict[str, Any]] = []
    if tokens:
        # Kept sentences whose tokens an earlier kept sentence has, with other tags.
        kept_rows = np.flatnonzero(keep)
        _, first_sentence = np.unique(sentences[kept_rows], return_index=True)
        clashing = np.ones(len(kept_rows), dtype=bool)
        clashing[first_sentence] = False
        conflict_rows = kept_rows[clashing]
        conflicts = len(conflict_rows)
        tags = table.column("tags")
        first_of = {int(sentences[r]): int(r) for r in kept_rows[np.sort(first_sentence)]}
        examples += [{"text": text_column[int(r)].as_py(), "tags": tags[int(r)].as_py(),
                      "kept_tags": tags[first_of[int(sentences[r])]].as_py(), "conflict": True}
                     for r in conflict_rows[:MAX_EXAMPLES]]
    else:
        conflicts = int((labels[removed] != labels[kept_of_removed]).sum())
    for i, k in zip(removed[:MAX_EXAMPLES].tolist(), kept_of_removed[:MAX_EXAMPLES].tolist(), strict=True):
        examples.append({"before": text_column[i].as_py(), "after": None,
                         "removed_from": _RANK_NAMES[ranks[i]], "kept_in": _RANK_NAMES[ranks[k]],
                         **({"label": label_column[i].as_py(), "kept_label": label_column[k].as_py(),
                             "conflict": label_column[i].as_py() != label_column[k].as_py()}
                            if label_column is not None else {})})
    pairs, counts = (np.unique(np.stack((ranks[kept_of_removed], ranks[removed]), axis=1), axis=0, return_counts=True)
                     if len(removed) else (np.empty((0, 2), np.int64), np.empty(0, np.int64)))
    repeats: list[dict[str, Any]] = []
    removed_from: dict[str, int] = {}
    for (k, r), c in zip(pairs.tolist(), counts.tolist(), strict=True):
        repeats.append({"kept_in": _RANK_NAMES[k], "removed_from": _RANK_NAMES[r], "rows": int(c), "why": _why(k, r)})
        removed_from[_RANK_NAMES[r]] = removed_from.get(_RANK_NAMES[r], 0) + int(c)
    return out, StepReport("dedup_exact", n, out.num_rows, len(removed), examples[:2 * MAX_EXAMPLES],
                           {"duplicates": len(removed), "conflicts": conflicts, "removed_from": removed_from,
                            "repeats": repeats})


def _codes(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Each value's index among the distinct values (null = -1), as int64: equal values, equal codes."""
    distinct = pc.unique(values).drop_null()
    codes: np.ndarray = (pc.fill_null(pc.index_in(values, value_set=distinct), -1)
                         .to_numpy(zero_copy_only=False).astype(np.int64))
    return codes


def _matching(texts: pa.ChunkedArray, pattern: str) -> np.ndarray:
    """Positions of the texts matching a regular expression (a step's vectorised prefilter)."""
    matches = pc.fill_null(pc.match_substring_regex(texts, pattern), False)
    return np.flatnonzero(matches.to_numpy(zero_copy_only=False))


def _replace_rows(texts: pa.ChunkedArray, rows: Sequence[int],
                  values: Sequence[str | None]) -> pa.ChunkedArray | pa.Array:
    """``texts`` with the given rows replaced (ascending positions), leaving the other rows' buffers as they are."""
    if not rows:
        return texts
    mask = np.zeros(len(texts), dtype=bool)
    mask[list(rows)] = True
    return pc.replace_with_mask(texts.combine_chunks(), pa.array(mask), pa.array(values, pa.string()))


def _examples(before: pa.ChunkedArray | pa.Array, after: pa.ChunkedArray | pa.Array | None,
              positions: Sequence[int]) -> list[dict[str, Any]]:
    return [{"before": before[i].as_py(), "after": None if after is None else after[i].as_py()}
            for i in list(positions)[:MAX_EXAMPLES]]


def _fail(step: str, message: str, hint: str) -> InvalidInput:
    return InvalidInput(f"Cleaning step {step!r}: {message}", hint=hint)


def strip_html(table: pa.Table) -> tuple[pa.Table, StepReport]:
    """Strip HTML tags and unescape entities (``&amp;`` -> ``&``, ``&#21345;`` -> ``卡``).

    Only rows containing ``<`` or ``&`` are parsed (html.parser); the rest pass untouched.

    Args:
        table: rows with a ``text`` column.

    Returns:
        The rows with markup removed, and a report counting the rows that changed.
    """
    _require_text(table, "strip_html")
    before = table.column("text")
    suspect = _matching(before, r"[<&]")
    originals = before.take(pa.array(suspect)).to_pylist()
    cleaned = [html_to_text(t) for t in originals]
    changed_local = [k for k, (a, b) in enumerate(zip(originals, cleaned, strict=True)) if a != b]
    changed = suspect[changed_local].tolist()
    after = _replace_rows(before, changed, [cleaned[k] for k in changed_local])
    out = table.set_column(table.column_names.index("text"), "text", after)
    return out, StepReport("strip_html", table.num_rows, out.num_rows, len(changed), _examples(before, after, changed))


def missing_values(table: pa.Table, *, policy: str = "drop", columns: Sequence[str] = ("text", "label"),
                   fill: str = "", flag_column: str = "missing") -> tuple[pa.Table, StepReport]:
    """Handle null or blank values in the given columns.

    Args:
        table: the rows.
        policy: "drop" the row, "fill" the value with ``fill``, or "flag" the row in a new
            boolean column ``flag_column`` (the rows stay as they are).
        columns: the columns to check (they must exist).
        fill: the constant for "fill" (a non-empty string).
        flag_column: the column written by "flag".

    Returns:
        The rows, and a report with ``details`` missing per column.

    Raises:
        InvalidInput: an unknown policy, a missing column, or an empty fill value.
    """
    if policy not in ("drop", "fill", "flag"):
        raise _fail("missing_values", f"unknown policy {policy!r}.", "Use 'drop', 'fill' or 'flag'.")
    if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
        raise _fail("missing_values", f"columns must be a list of column names, got {columns!r}.",
                    "For example: ['text', 'label'].")
    absent = [c for c in columns if c not in table.column_names]
    if absent and table.num_rows:
        raise _fail("missing_values", f"no column(s) {absent}; the rows have {table.column_names}.",
                    "Name existing columns.")
    if policy == "fill" and (not isinstance(fill, str) or not fill.strip()):
        raise _fail("missing_values", f"fill value {fill!r} is empty.", "Give a constant, e.g. 'unknown'.")
    present = [c for c in columns if c in table.column_names]
    blank = {c: pc.fill_null(pc.equal(pc.utf8_trim_whitespace(table.column(c).cast(pa.string())), ""), True)
             for c in present}
    any_blank = pa.array([False] * table.num_rows, pa.bool_())
    for mask in blank.values():
        any_blank = pc.or_(any_blank, mask)
    rows = pc.indices_nonzero(any_blank).to_pylist()
    details: dict[str, Any] = {f"missing_{c}": int(pc.sum(m).as_py() or 0) for c, m in blank.items()}
    first = present[0] if present else "text"
    before = table.column(first) if first in table.column_names else pa.array([None] * table.num_rows, pa.string())
    if policy == "drop":
        out = table.filter(pc.invert(any_blank))
        examples = _examples(before, None, rows)
    elif policy == "fill":
        out = table
        for c, mask in blank.items():
            out = out.set_column(out.column_names.index(c), c, pc.if_else(mask, fill, out.column(c)))
        examples = _examples(before, out.column(first), rows)
    else:
        out = table.append_column(flag_column, any_blank) if flag_column not in table.column_names else \
            table.set_column(table.column_names.index(flag_column), flag_column, any_blank)
        examples = [dict(e, flagged=True) for e in _examples(before, before, rows)]
    return out, StepReport("missing_values", table.num_rows, out.num_rows, len(rows), examples, details)


def filter_length(table: pa.Table, *, min_chars: int = 1, max_chars: int | None = None) -> tuple[pa.Table, StepReport]:
    """Keep rows whose text has ``min_chars`` to ``max_chars`` characters (inclusive).

    Args:
        table: rows with a ``text`` column (a null text has length 0).
        min_chars: the shortest text kept.
        max_chars: the longest text kept (no limit when None).

    Returns:
        The kept rows, and a report with ``details`` too_short and too_long.

    Raises:
        InvalidInput: a negative bound or max below min.
    """
    _require_text(table, "filter_length")
    for name, value in (("min_chars", min_chars), ("max_chars", max_chars)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise _fail("filter_length", f"{name} must be a whole number >= 0, got {value!r}.", "E.g. min_chars=3.")
    if max_chars is not None and max_chars < min_chars:
        raise _fail("filter_length", f"max_chars {max_chars} is below min_chars {min_chars}.", "Swap them.")
    text = table.column("text")
    length = pc.fill_null(pc.utf8_length(text), 0)
    short = pc.less(length, min_chars)
    long = pc.greater(length, max_chars) if max_chars is not None else pc.equal(length, -1)
    drop = pc.or_(short, long)
    out = table.filter(pc.invert(drop))
    details = {"too_short": int(pc.sum(short).as_py() or 0), "too_long": int(pc.sum(long).as_py() or 0)}
    return out, StepReport("filter_length", table.num_rows, out.num_rows, table.num_rows - out.num_rows,
                           _examples(text, None, pc.indices_nonzero(drop).to_pylist()), details)


# Script classes of the language filter, by Unicode block. Han, kana and Hangul are
# "cjk"; Basic Latin letters and Latin-1/Extended letters are "latin"; any other letter
# (Cyrillic, Greek, Arabic, Devanagari, Thai, ...) is "other".
def filter_language(table: pa.Table, *, keep: Sequence[str] = ("cjk", "latin")) -> tuple[pa.Table, StepReport]:
    """Keep rows whose dominant script (see ``detect_script``) is one of ``keep``.

    Args:
        table: rows with a ``text`` column.
        keep: scripts to keep, from "cjk", "latin", "other", "none".

    Returns:
        The kept rows, and a report with ``details`` rows per script before filtering.

    Raises:
        InvalidInput: an unknown script name.
    """
    _require_text(table, "filter_language")
    if isinstance(keep, str) or not keep or any(k not in SCRIPTS for k in keep):
        raise _fail("filter_language", f"keep must list scripts from {list(SCRIPTS)}, got {keep!r}.",
                    "For example: keep=['cjk', 'latin'].")
    scripts = detect_script(table.column("text"))
    mask = pc.is_in(scripts, pa.array(list(keep), pa.string()))
    out = table.filter(mask)
    counts = {k: 0 for k in SCRIPTS}
    for value, n in zip(*_value_counts(scripts), strict=True):
        counts[value] = n
    dropped = pc.indices_nonzero(pc.invert(mask)).to_pylist()
    examples = [dict(e, script=scripts[i].as_py()) for e, i in zip(_examples(table.column("text"), None, dropped),
                                                                      dropped, strict=False)]
    return out, StepReport("filter_language", table.num_rows, out.num_rows, table.num_rows - out.num_rows,
                           examples, {f"script_{k}": v for k, v in counts.items()})


def _value_counts(values: pa.Array) -> tuple[list[str], list[int]]:
    counted = pc.value_counts(values)
    return counted.field("values").to_pylist(), [int(n) for n in counted.field("counts").to_pylist()]


def normalize_labels(table: pa.Table, *, case: str = "lower", aliases: Mapping[str, str] | None = None,
                     ) -> tuple[pa.Table, StepReport]:
    """Normalise labels: trim, fold case, then map aliases to their canonical label.

    Args:
        table: rows with a ``label`` column.
        case: "lower" (Unicode case folding), "upper" or "keep".
        aliases: alias -> canonical label; alias keys are trimmed and case-folded the
            same way before matching (e.g. {"card lost": "lost_card"}).

    Returns:
        The rows with normalised labels, and a report with ``details`` labels_before and
        labels_after (distinct label counts).

    Raises:
        InvalidInput: no label column, an unknown case, or aliases that are not strings.
    """
    if case not in ("lower", "upper", "keep"):
        raise _fail("normalize_labels", f"unknown case {case!r}.", "Use 'lower', 'upper' or 'keep'.")
    aliases = dict(aliases or {})
    if not all(isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in aliases.items()):
        raise _fail("normalize_labels", f"aliases must map label strings to non-empty labels, got {aliases!r}.",
                    "For example: {'Card Lost': 'lost_card'}.")
    if "label" not in table.column_names:
        if table.num_rows == 0:
            return table, StepReport("normalize_labels", 0, 0, 0)
        raise _fail("normalize_labels", f"the rows have no 'label' column ({table.column_names}).",
                    "Import the rows with a label column.")

    def fold(value: str) -> str:
        value = value.strip()
        return value.casefold() if case == "lower" else value.upper() if case == "upper" else value

    folded_aliases = {fold(k): v for k, v in aliases.items()}
    before = table.column("label")
    distinct = before.unique().to_pylist()
    mapping = {v: (folded_aliases.get(fold(v), fold(v)) if v is not None else None) for v in distinct}
    after = pa.array([mapping[v] for v in before.to_pylist()], pa.string())
    differs = pc.fill_null(pc.not_equal(before, after), False)
    changed = pc.indices_nonzero(differs).to_pylist()
    out = table.set_column(table.column_names.index("label"), "label", after)
    details = {"labels_before": len([v for v in distinct if v is not None]),
               "labels_after": len({v for v in mapping.values() if v is not None})}
    return out, StepReport("normalize_labels", table.num_rows, out.num_rows, len(changed),
                           _examples(before, after, changed), details)


def label_conflicts(table: pa.Table, *, policy: str = "flag", flag_column: str = "label_conflict",
                    ) -> tuple[pa.Table, StepReport]:
    """Find identical texts that carry different labels, and apply a policy.

    Run it after ``normalize_text`` (and ``normalize_labels``) so "identical" means
    identical after normalisation.

    Args:
        table: rows with ``text`` and ``label`` columns.
        policy: "flag" keeps every row and marks the conflicting ones in ``flag_column``;
            "keep-first" keeps the first row of each conflicting text and drops the rows
            of that text with another label; "drop-all" drops every row of a conflicting text.
        flag_column: the column written by "flag".

    Returns:
        The rows, and a report with ``details`` conflicts (texts) and conflict_rows.

    Raises:
        InvalidInput: an unknown policy.
    """
    _require_text(table, "label_conflicts")
    if policy not in ("flag", "keep-first", "drop-all"):
        raise _fail("label_conflicts", f"unknown policy {policy!r}.", "Use 'flag', 'keep-first' or 'drop-all'.")
    n = table.num_rows
    texts = table.column("text").to_pylist()
    labels = table.column("label").to_pylist() if "label" in table.column_names else [None] * n
    first_label: dict[Any, Any] = {}
    label_sets: dict[Any, set[Any]] = {}
    for text, label in zip(texts, labels, strict=True):
        first_label.setdefault(text, label)
        label_sets.setdefault(text, set()).add(label)
    conflicting = {t for t, s in label_sets.items() if len(s) > 1 and t is not None}
    in_conflict = [t in conflicting for t in texts]
    if policy == "flag":
        keep = [True] * n
    elif policy == "keep-first":
        keep = [not c or labels[i] == first_label[texts[i]] for i, c in enumerate(in_conflict)]
    else:
        keep = [not c for c in in_conflict]
    mask = pa.array(in_conflict, pa.bool_())
    out = table.filter(pa.array(keep, pa.bool_()))
    if policy == "flag":
        out = out.append_column(flag_column, mask) if flag_column not in out.column_names else \
            out.set_column(out.column_names.index(flag_column), flag_column, mask)
    # In order of first appearance: a set's order would change from run to run.
    first_seen = [t for t in dict.fromkeys(texts) if t in conflicting]
    examples = [{"text": t, "labels": sorted(map(str, label_sets[t]))} for t in first_seen[:MAX_EXAMPLES]]
    affected = sum(in_conflict)
    return out, StepReport("label_conflicts", n, out.num_rows, affected if policy == "flag" else n - out.num_rows,
                           examples, {"conflicts": len(conflicting), "conflict_rows": affected})


def redact_pii(table: pa.Table, *, mode: pii.RedactionMode = "placeholder") -> tuple[pa.Table, StepReport]:
    """Redact personal data (see ``pii.PII_TYPES``): e-mails, phone numbers (international,
    Chinese mobiles, North American), cards, IBANs, IPs, Chinese ID numbers, secret URLs, US
    SSNs, account numbers, sort codes, CVVs and credentials ("password is …").

    Rows that cannot hold any detectable entity (no digit run, "@", "://", dotted quad, hex
    colon pair or naming word such as "password" or "sort code") are skipped by a vectorised
    prefilter (``pii.PREFILTER``). In token data (a
    ``tokens`` column) whole tokens are replaced (``pii.redact_tokens``), so every
    sentence keeps its number of tokens and each tag its token; ``text`` is rebuilt from
    the tokens.

    Args:
        table: rows with a ``text`` column.
        mode: "placeholder" (``[EMAIL]``) or "mask" (``*`` per character).

    Returns:
        The rows with redacted texts, and a report with ``details`` pii_found (type ->
        count) and rows_redacted. Examples show the redacted text only: the originals are
        exactly what must not be stored.

    Raises:
        InvalidInput: an unknown mode.
    """
    _require_text(table, "redact_pii")
    if mode not in ("placeholder", "mask"):
        raise _fail("redact_pii", f"unknown mode {mode!r}.", "Use 'placeholder' or 'mask'.")
    text = table.column("text")
    suspect = _matching(text, pii.PREFILTER)
    if "tokens" in table.column_names:
        out, counts, changed = _redact_token_rows(table, suspect, mode)
    else:
        redacted, counts, changed_local = pii.redact_texts(text.take(pa.array(suspect)).to_pylist(), mode)
        changed = suspect[changed_local].tolist()
        after = _replace_rows(text, changed, [redacted[k] for k in changed_local])
        out = table.set_column(table.column_names.index("text"), "text", after)
    examples = [{"after": out.column("text")[i].as_py()} for i in changed[:MAX_EXAMPLES]]
    return out, StepReport("redact_pii", table.num_rows, out.num_rows, len(changed), examples,
                           {"pii_found": counts, "rows_redacted": len(changed)})


def _redact_token_rows(table: pa.Table, suspect: np.ndarray, mode: pii.RedactionMode,
                       ) -> tuple[pa.Table, dict[str, int], list[int]]:
    """``redact_pii`` on token rows: whole tokens replaced, text rebuilt; (rows, counts, changed rows)."""
    counts = dict.fromkeys(pii.PII_TYPES, 0)
    column = table.column("tokens")
    rewritten: dict[int, list[str]] = {}
    for i in suspect.tolist():
        tokens = column[i].as_py() or []
        redacted, spans = pii.redact_tokens(tokens, mode)
        if spans:
            rewritten[i] = redacted
            for span in spans:
                counts[span.kind] += 1
    if not rewritten:
        return table, counts, []
    changed = sorted(rewritten)
    all_tokens = column.to_pylist()
    for i in changed:
        all_tokens[i] = rewritten[i]
    out = table.set_column(table.column_names.index("tokens"), table.schema.field("tokens"),
                           pa.array(all_tokens, column.type))
    text = _replace_rows(table.column("text"), changed, [" ".join(rewritten[i]) for i in changed])
    return out.set_column(out.column_names.index("text"), "text", text), counts, changed


def dedup_near(table: pa.Table, *, threshold: float = near_duplicates.DEFAULT_THRESHOLD, shingling: str = "char",
               size: int = 5, num_perm: int = near_duplicates.DEFAULT_NUM_PERM) -> tuple[pa.Table, StepReport]:
    """Remove near-duplicate texts (MinHash LSH, see ``near_duplicates``); keep the first of each cluster.

    Rows with a declared split are never removed: a near-copy is a judgement call, which
    ``dedup_exact``'s exact repeats are not.

    Args:
        table: rows with a ``text`` column.
        threshold: Jaccard similarity in (0, 1] at or above which texts are near-duplicates.
        shingling: "char" (works for Chinese) or "word".
        size: characters or words per shingle (1-64).
        num_perm: MinHash permutations (16-1024).

    Returns:
        The rows without near-duplicates, and a report with ``details`` near_duplicates,
        clusters and candidates; examples show removed/kept pairs with their similarity.

    Raises:
        InvalidInput: a parameter out of range.
    """
    _require_text(table, "dedup_near")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise _fail("dedup_near", f"threshold must be in (0, 1], got {threshold!r}.", "E.g. threshold=0.8.")
    if shingling not in ("char", "word"):
        raise _fail("dedup_near", f"unknown shingling {shingling!r}.", "Use 'char' or 'word'.")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 64:
        raise _fail("dedup_near", f"size must be a whole number from 1 to 64, got {size!r}.", "E.g. size=5.")
    if isinstance(num_perm, bool) or not isinstance(num_perm, int) or not 16 <= num_perm <= 1024:
        raise _fail("dedup_near", f"num_perm must be from 16 to 1024, got {num_perm!r}.", "E.g. num_perm=128.")
    texts = table.column("text")
    pinned = (pc.is_valid(table.column("split")).to_numpy(zero_copy_only=False)
              if "split" in table.column_names else None)
    found = near_duplicates.find_near_duplicates(texts, threshold=float(threshold), shingling=shingling,  # type: ignore[arg-type]
                                                 size=size, num_perm=num_perm, pinned=pinned)
    keep = np.ones(table.num_rows, dtype=bool)
    keep[found.removed] = False
    out = table.filter(pa.array(keep))
    examples = [{"before": texts[i].as_py(), "after": None, "kept": texts[j].as_py(), "similarity": sim}
                for i, j, sim in found.pairs[:MAX_EXAMPLES]]
    return out, StepReport("dedup_near", table.num_rows, out.num_rows, len(found.removed), examples,
                           {"near_duplicates": len(found.removed), "clusters": found.clusters,
                            "candidates": found.candidates})


STEPS: dict[str, Step] = {
    "normalize_text": normalize_text,
    "strip_html": strip_html,
    "drop_empty": drop_empty,
    "missing_values": missing_values,
    "filter_length": filter_length,
    "filter_language": filter_language,
    "normalize_labels": normalize_labels,
    "label_conflicts": label_conflicts,
    "redact_pii": redact_pii,
    "dedup_exact": dedup_exact,
    "dedup_near": dedup_near,
}
# The defaults redact personal data (issue 14): a version made without it says so
# (``recipe_with_redaction``, the ``--no-redact`` / ``redact=false`` opt-out).
BASIC_RECIPE: list[str] = ["normalize_text", "drop_empty", "redact_pii", "dedup_exact"]
# Steps that rewrite ``text`` without keeping it the tokens joined: a token-labelled row's
# text must keep matching its tokens, so its recipe may use only the other steps (which
# drop rows, add a flag column, or, as redact_pii does there, replace whole tokens).
REWRITES_TEXT = frozenset({"normalize_text", "strip_html", "missing_values"})
TOKEN_RECIPE: list[str] = ["drop_empty", "redact_pii", "dedup_exact"]
# Every step that changes rows without a judgement call about the data's content.
FULL_RECIPE: list[RecipeEntry] = ["normalize_text", "strip_html", "drop_empty", "redact_pii", "normalize_labels",
                                  "dedup_exact", "dedup_near", {"step": "filter_length", "min_chars": 2}]
# An empty table of the columns a recipe sees: check_recipe runs each step on it once,
# so a bad parameter value is refused before any real step runs.
_PROBE = pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.string()),
                   "split": pa.array([], pa.string())})


def _parameters(step: Step) -> dict[str, inspect.Parameter]:
    return {name: p for name, p in inspect.signature(step).parameters.items() if p.kind is p.KEYWORD_ONLY}


def check_recipe(recipe: Sequence[RecipeEntry]) -> list[dict[str, Any]]:
    """Validate a recipe before any step runs: names, parameter names and parameter values.

    Args:
        recipe: entries in order; each a step name or ``{"step": name, **params}``.

    Returns:
        The recipe as a list of ``{"step": name, **params}``.

    Raises:
        InvalidInput: the recipe is a bare string, an entry is malformed, a step or a
            parameter is unknown (all named in the message), or a parameter value is bad.
    """
    if isinstance(recipe, (str, bytes)) or isinstance(recipe, Mapping):
        raise InvalidInput(f"A recipe is a list of step names, not the {type(recipe).__name__} {recipe!r}.",
                           hint=f"For example: {BASIC_RECIPE}.")
    entries: list[dict[str, Any]] = []
    for entry in recipe:
        if isinstance(entry, str):
            entries.append({"step": entry})
        elif isinstance(entry, Mapping) and isinstance(entry.get("step"), str):
            entries.append(dict(entry))
        else:
            raise InvalidInput(f"Recipe entry {entry!r} is neither a step name nor {{'step': name, ...}}.",
                               hint='For example: "dedup_exact" or {"step": "filter_length", "min_chars": 3}.')
    unknown = [e["step"] for e in entries if e["step"] not in STEPS]
    if unknown:
        raise InvalidInput(f"Unknown cleaning step(s): {', '.join(map(repr, unknown))}.",
                           hint=f"Known steps: {', '.join(STEPS)}.")
    for entry in entries:
        allowed = _parameters(STEPS[entry["step"]])
        bad = [k for k in entry if k != "step" and k not in allowed]
        if bad:
            raise InvalidInput(f"Unknown parameter(s) {', '.join(map(repr, bad))} for cleaning step "
                               f"{entry['step']!r}.", hint=f"Its parameters: {', '.join(allowed) or 'none'}.")
        try:
            STEPS[entry["step"]](_PROBE, **{k: v for k, v in entry.items() if k != "step"})
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"Bad parameter for cleaning step {entry['step']!r}: {exc}.",
                               hint=f"Its parameters: {', '.join(allowed)}.") from exc
    return entries


# Redaction inserted into a recipe goes before the first of these, so texts that differ
# only in their personal data count as repeats.
_DEDUP_STEPS = ("dedup_exact", "dedup_near", "label_conflicts")


def recipe_with_redaction(steps: Sequence[Mapping[str, Any]], *, redact: bool) -> list[dict[str, Any]]:
    """A checked recipe with ``redact_pii`` in it, or without it when redaction is turned off (pure).

    Args:
        steps: the recipe as ``check_recipe`` returns it.
        redact: True (the default everywhere): a recipe without ``redact_pii`` gets it
            before its first de-duplication step (at the end when it has none); False: the
            caller opted out, and the recipe must not redact.

    Returns:
        The recipe to run.

    Raises:
        InvalidInput: redaction turned off and the recipe has a ``redact_pii`` step.
    """
    entries = [dict(e) for e in steps]
    has = any(e["step"] == "redact_pii" for e in entries)
    if not redact:
        if has:
            raise InvalidInput("The recipe has a redact_pii step, but redaction is turned off (--no-redact / "
                               "redact=false).", hint="Leave out either the redact_pii step or the opt-out.")
        return entries
    if has:
        return entries
    at = next((i for i, e in enumerate(entries) if e["step"] in _DEDUP_STEPS), len(entries))
    return [*entries[:at], {"step": "redact_pii"}, *entries[at:]]


def apply_recipe(table: pa.Table, recipe: Sequence[RecipeEntry]) -> tuple[pa.Table, list[StepReport]]:
    """Apply cleaning steps in order.

    Args:
        table: rows with a ``text`` column.
        recipe: step names or ``{"step": name, **params}`` entries, e.g. ``BASIC_RECIPE``.

    Returns:
        The cleaned rows and one report per step (carrying the parameters it ran with).

    Raises:
        InvalidInput: an unknown step or parameter, or a bad value (checked before any step runs).
    """
    reports = []
    for entry in check_recipe(recipe):
        params = {k: v for k, v in entry.items() if k != "step"}
        table, report = STEPS[entry["step"]](table, **params)
        reports.append(replace(report, params=params))
    return table, reports
