"""Cleaning steps: pure functions from a table of rows to a cleaner table and a report.

A step takes a ``pyarrow.Table`` with at least a ``text`` column (string; other columns
ride along untouched) and returns ``(table, StepReport)``. Steps are values in, values
out: no session, file or clock, so the same rows and recipe always give the same result.
They work on whole columns with ``pyarrow.compute`` where they can (about a second per
million rows for ``normalize_text``); ``dedup_exact`` walks the column in Python, which
is still well under a second per million rows.

A recipe is a list of step names, applied in order by ``apply_recipe``; the reports it
returns serialise to JSON with ``dataclasses.asdict`` and are stored with the dataset
version.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from chainkeeper.core.errors import InvalidInput

__all__ = ["StepReport", "Step", "STEPS", "BASIC_RECIPE", "normalize_text", "drop_empty", "dedup_exact",
           "apply_recipe", "check_recipe"]

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
        details: step-specific counts (e.g. duplicates and label conflicts).
    """

    name: str
    rows_in: int
    rows_out: int
    changed: int
    examples: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, int] = field(default_factory=dict)


Step = Callable[[pa.Table], tuple[pa.Table, StepReport]]


def _require_text(table: pa.Table, step: str) -> None:
    if "text" not in table.column_names:
        raise InvalidInput(f"Cleaning step {step!r} needs a 'text' column; the rows have {table.column_names}.",
                           hint="Import the rows with text_column= naming the text column.")


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
    after = pc.utf8_normalize(before, form="NFKC")
    after = pc.replace_substring_regex(after, _INVISIBLE, "")
    after = pc.replace_substring_regex(after, _WHITESPACE_RUN, " ")
    after = pc.utf8_trim_whitespace(after)
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


def dedup_exact(table: pa.Table) -> tuple[pa.Table, StepReport]:
    """Remove rows whose text repeats an earlier row's text; keep the first.

    Run it after ``normalize_text`` so texts that differ only in width or spacing count as
    the same. When the repeated text carries another label, the first row's label is kept
    and the pair is counted as a conflict: someone should look at it.

    Rows with a declared split (a non-null ``split`` column, e.g. a benchmark's test file)
    are never removed: they stay comparable with results published on that file. Instead
    an undeclared row repeating one of their texts is removed even if it came first, which
    also keeps test texts out of training. Repeats among declared rows are counted only.

    Args:
        table: rows with a ``text`` column, and ``label`` / ``split`` columns when present.

    Returns:
        The rows without repeats, in their order, and a report with ``details``:
        ``duplicates`` (rows removed), ``conflicts`` (repeats whose label differed from the
        kept row's) and ``declared_repeats`` (repeats kept because their split was declared).
    """
    _require_text(table, "dedup_exact")
    texts = table.column("text").to_pylist()
    n = len(texts)
    labels = table.column("label").to_pylist() if "label" in table.column_names else [None] * n
    pinned = (pc.is_valid(table.column("split")).to_pylist() if "split" in table.column_names else [False] * n)

    kept_label: dict[str | None, str | None] = {}
    keep = [True] * n
    conflicts = declared_repeats = 0
    examples: list[dict[str, Any]] = []
    # Declared rows first, so they win over undeclared ones wherever those stand.
    for i in [i for i in range(n) if pinned[i]] + [i for i in range(n) if not pinned[i]]:
        text = texts[i]
        if text not in kept_label:
            kept_label[text] = labels[i]
            continue
        conflict = labels[i] != kept_label[text]
        conflicts += conflict
        if pinned[i]:
            declared_repeats += 1
            continue
        keep[i] = False
        if len(examples) < MAX_EXAMPLES:
            examples.append({"before": text, "after": None, "label": labels[i], "kept_label": kept_label[text],
                             "conflict": conflict})
    out = table.filter(pa.array(keep, type=pa.bool_()))
    removed = n - out.num_rows
    return out, StepReport("dedup_exact", n, out.num_rows, removed, examples,
                           {"duplicates": removed, "conflicts": conflicts, "declared_repeats": declared_repeats})


STEPS: dict[str, Step] = {
    "normalize_text": normalize_text,
    "drop_empty": drop_empty,
    "dedup_exact": dedup_exact,
}
BASIC_RECIPE: list[str] = ["normalize_text", "drop_empty", "dedup_exact"]


def check_recipe(recipe: Sequence[str]) -> list[str]:
    """Validate a recipe's step names before any step runs.

    Args:
        recipe: step names, in order.

    Returns:
        The recipe as a list.

    Raises:
        InvalidInput: a name is not a known step, or the recipe is a bare string.
    """
    if isinstance(recipe, str):
        raise InvalidInput(f"A recipe is a list of step names, not the string {recipe!r}.",
                           hint=f"For example: {BASIC_RECIPE}.")
    unknown = [name for name in recipe if name not in STEPS]
    if unknown:
        raise InvalidInput(f"Unknown cleaning step(s): {', '.join(map(repr, unknown))}.",
                           hint=f"Known steps: {', '.join(STEPS)}.")
    return list(recipe)


def apply_recipe(table: pa.Table, recipe: Sequence[str]) -> tuple[pa.Table, list[StepReport]]:
    """Apply cleaning steps in order.

    Args:
        table: rows with a ``text`` column.
        recipe: step names, e.g. ``BASIC_RECIPE``.

    Returns:
        The cleaned rows and one report per step.

    Raises:
        InvalidInput: an unknown step name (checked before any step runs).
    """
    reports = []
    for name in check_recipe(recipe):
        table, report = STEPS[name](table)
        reports.append(report)
    return table, reports
