"""Inter-annotator agreement: values in, values out (no database, no clock).

- ``cohen_kappa``: two raters on the same items; optionally weighted (linear or
  quadratic) for ordered categories. Matches ``sklearn.metrics.cohen_kappa_score``.
- ``fleiss_kappa``: many raters, the same number per item, from an items x categories
  count table (``category_counts`` builds it from judgements).
- ``krippendorff_alpha``: any number of raters, missing values allowed; nominal or
  interval distances. Computed from the coincidence matrix as in Krippendorff (2011),
  "Computing Krippendorff's Alpha-Reliability".
- ``span_f1``: entity spans of two annotators, exact match on (start, end, label).
- ``annotator_figures``: per annotator, items/hour from submission times and agreement
  with a consensus label.
- ``agreement_report``: every figure that applies to a project's judgements, at once.

What degenerate input gives (the same in every function):

- Caller errors raise ``InvalidInput``: no items, lengths that differ, fewer than two
  raters, rows with different rater counts in a Fleiss table, an unknown weighting.
- A chance-corrected coefficient whose expected disagreement is zero (every rating in
  one category, so chance agreement is 1 and kappa/alpha is 0/0) raises
  ``AgreementUndefined``, a subclass of ``InvalidInput``; ``agreement_report`` and
  ``annotator_figures`` catch it and report ``None`` with the reason.
- ``span_f1`` with no spans from either annotator is 1.0 (they agree there is nothing).
"""

from __future__ import annotations

import functools
import numbers
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import combinations
from typing import Any, Literal, NamedTuple

import numpy as np

from chainkeeper.core.errors import InvalidInput

__all__ = [
    "AgreementUndefined",
    "Judgement",
    "Span",
    "AnnotatorFigures",
    "cohen_kappa",
    "fleiss_kappa",
    "category_counts",
    "krippendorff_alpha",
    "reliability_matrix",
    "span_f1",
    "percent_agreement",
    "items_per_hour",
    "annotator_figures",
    "agreement_report",
]

Weights = Literal["linear", "quadratic"]
Level = Literal["nominal", "interval"]


class AgreementUndefined(InvalidInput):
    """Chance agreement is 1 (all ratings in one category): the coefficient is 0/0."""

    title = "Agreement undefined"


class Judgement(NamedTuple):
    """One annotator's label for one item; ``at`` is when it was submitted (UTC)."""

    item: Hashable
    annotator: str
    label: Hashable
    at: datetime | None = None


class Span(NamedTuple):
    """An entity span: character offsets ``[start, end)`` and its label."""

    start: int
    end: int
    label: str


@dataclass(frozen=True)
class AnnotatorFigures:
    """What one annotator did: volume, speed and agreement with the consensus.

    Attributes:
        annotator: the annotator's name.
        items: judgements they submitted.
        items_per_hour: from their submission times (see ``items_per_hour``); None
            when fewer than two timed judgements fall within one working session.
        compared: their items that have a consensus label.
        agreement: share of ``compared`` items where they gave the consensus label;
            None when ``compared`` is 0.
        kappa: Cohen's kappa between them and the consensus on ``compared`` items;
            None when undefined (see ``note``).
        note: why a figure is None, or "".
    """

    annotator: str
    items: int
    items_per_hour: float | None
    compared: int
    agreement: float | None
    kappa: float | None
    note: str = ""


# --- two raters -------------------------------------------------------------------------


def cohen_kappa(labels_a: Sequence[Hashable], labels_b: Sequence[Hashable], *,
                weights: Weights | None = None, categories: Sequence[Hashable] | None = None) -> float:
    """Cohen's kappa between two raters who labelled the same items.

    ``kappa = 1 - sum(w * observed) / sum(w * expected)`` over the categories x
    categories table, where ``expected`` is the outer product of the two raters'
    marginal shares and ``w`` is 0 on the diagonal and 1 off it (unweighted), ``|i-j|``
    (linear) or ``(i-j)^2`` (quadratic) for categories at positions i and j.

    Args:
        labels_a: rater A's label per item.
        labels_b: rater B's label for the same items, in the same order.
        weights: None for nominal categories; "linear" or "quadratic" for ordered ones.
        categories: the categories in their order (needed to weight ordered labels
            that do not sort naturally); defaults to the sorted labels seen.

    Returns:
        Kappa in [-1, 1]: 1 is perfect agreement, 0 is what chance alone gives.

    Raises:
        InvalidInput: no items, lengths differ, unknown weights, a label outside
            ``categories``.
        AgreementUndefined: both raters used one and the same single category.
    """
    if len(labels_a) != len(labels_b):
        raise InvalidInput(f"Cohen's kappa needs the same items from both raters: got {len(labels_a)} "
                           f"labels from one and {len(labels_b)} from the other.")
    if len(labels_a) == 0:
        raise InvalidInput("Cohen's kappa needs at least one item labelled by both raters.")
    cats = _categories(list(labels_a) + list(labels_b), categories)
    index = {c: i for i, c in enumerate(cats)}
    k = len(cats)
    table = np.zeros((k, k))
    for a, b in zip(labels_a, labels_b, strict=True):
        table[index[a], index[b]] += 1
    table /= table.sum()
    expected = np.outer(table.sum(axis=1), table.sum(axis=0))
    w = _weight_matrix(k, weights)
    denominator = float((w * expected).sum())
    if denominator == 0.0:
        raise AgreementUndefined(
            f"Cohen's kappa is undefined: both raters gave every item the label {cats[0]!r}, so chance "
            "agreement is 1 (0/0).", hint="Report raw agreement, or measure on items with varied labels.")
    return 1.0 - float((w * table).sum()) / denominator


def percent_agreement(labels_a: Sequence[Hashable], labels_b: Sequence[Hashable]) -> float:
    """Share of items on which two raters gave the same label (no chance correction).

    Raises:
        InvalidInput: no items, or lengths differ.
    """
    if len(labels_a) != len(labels_b) or len(labels_a) == 0:
        raise InvalidInput(f"Percent agreement needs the same, non-empty items from both raters: got "
                           f"{len(labels_a)} and {len(labels_b)} labels.")
    return sum(a == b for a, b in zip(labels_a, labels_b, strict=True)) / len(labels_a)


# --- many raters ------------------------------------------------------------------------


def fleiss_kappa(counts: Sequence[Sequence[int]] | np.ndarray) -> float:
    """Fleiss' kappa (Fleiss 1971) for items each rated by the same number of raters.

    ``P_i = (sum_j n_ij^2 - n) / (n (n - 1))`` is the agreement on item i,
    ``p_j`` the share of all ratings in category j, and
    ``kappa = (mean(P_i) - sum_j p_j^2) / (1 - sum_j p_j^2)``.

    Args:
        counts: items x categories; ``counts[i][j]`` raters put item i in category j.
            Every row must sum to the same n >= 2 (the raters need not be the same people).

    Returns:
        Kappa (at most 1; 0 is chance agreement).

    Raises:
        InvalidInput: no items, a negative count, fewer than two raters per item, or
            rows with different rater counts (use ``krippendorff_alpha`` for those).
        AgreementUndefined: every rating falls in one category.
    """
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2 or table.shape[0] == 0 or table.shape[1] == 0:
        raise InvalidInput(f"Fleiss' kappa needs an items x categories table of counts, got shape {table.shape}.")
    if (table < 0).any():
        raise InvalidInput("Fleiss' kappa counts must be non-negative.")
    per_item = table.sum(axis=1)
    n = per_item[0]
    if not np.all(per_item == n):
        raise InvalidInput(
            f"Fleiss' kappa needs the same number of raters on every item; rows sum to "
            f"{sorted(set(per_item.astype(int).tolist()))}.",
            hint="Keep only the items with the full overlap, or use Krippendorff's alpha "
                 "(missing ratings allowed).")
    if n < 2:
        raise InvalidInput(f"Fleiss' kappa needs at least two raters per item, got {int(n)}.")
    p_item = ((table ** 2).sum(axis=1) - n) / (n * (n - 1))
    p_cat = table.sum(axis=0) / table.sum()
    expected = float((p_cat ** 2).sum())
    if expected >= 1.0:
        raise AgreementUndefined("Fleiss' kappa is undefined: every rating is in one category, so chance "
                                 "agreement is 1 (0/0).", hint="Report raw agreement instead.")
    return (float(p_item.mean()) - expected) / (1.0 - expected)


def category_counts(judgements: Iterable[Judgement], categories: Sequence[Hashable] | None = None,
                    ) -> tuple[list[Hashable], list[Hashable], np.ndarray]:
    """The items x categories count table of ``fleiss_kappa`` from judgements.

    Args:
        judgements: (item, annotator, label[, at]) records.
        categories: the column order; defaults to the sorted labels seen.

    Returns:
        ``(items, categories, counts)`` with items in first-seen order.

    Raises:
        InvalidInput: a label outside ``categories``.
    """
    by_item: dict[Hashable, list[Hashable]] = defaultdict(list)
    for j in judgements:
        by_item[j[0]].append(j[2])
    cats = _categories([lab for labels in by_item.values() for lab in labels], categories)
    index = {c: i for i, c in enumerate(cats)}
    table = np.zeros((len(by_item), len(cats)), dtype=int)
    for row, labels in enumerate(by_item.values()):
        for lab in labels:
            table[row, index[lab]] += 1
    return list(by_item), cats, table


def krippendorff_alpha(data: Sequence[Sequence[Any]] | np.ndarray, *, level: Level = "nominal") -> float:
    """Krippendorff's alpha for any number of raters, with missing ratings.

    Pairable values are those in units (items) with at least two ratings. From them the
    coincidence matrix ``o[c, k] = sum_u (number of c-k pairs in u) / (m_u - 1)`` with
    marginals ``n_c`` and total ``n`` gives
    ``alpha = 1 - (n - 1) * sum(o * d) / sum(n_c n_k d)``, ``d`` the squared distance
    between values: 0/1 for nominal, ``(c - k)^2`` for interval.

    Args:
        data: raters x units (as in Krippendorff's reliability-data matrix); a missing
            rating is None or NaN.
        level: "nominal" (labels) or "interval" (numbers).

    Returns:
        Alpha (at most 1; 0 is chance agreement).

    Raises:
        InvalidInput: not a 2-D table, an unknown level, a non-numeric value at the
            interval level, or fewer than two pairable values.
        AgreementUndefined: every pairable value is the same.
    """
    if level not in ("nominal", "interval"):
        raise InvalidInput(f"Unknown level {level!r} for Krippendorff's alpha.", hint="Use 'nominal' or 'interval'.")
    rows = [list(r) for r in data]
    if not rows or len({len(r) for r in rows}) != 1:
        raise InvalidInput("Krippendorff's alpha needs a raters x units table with one row per rater, "
                           "all rows the same length (None for a missing rating).")
    units = [[v for v in column if not _missing(v)] for column in zip(*rows, strict=True)]
    units = [u for u in units if len(u) >= 2]  # a lone rating has no pair to disagree with
    values = sorted({v for u in units for v in u}, key=_sort_key)
    if sum(len(u) for u in units) < 2:
        raise InvalidInput("Krippendorff's alpha needs at least one unit rated by two or more raters.")
    index = {v: i for i, v in enumerate(values)}
    coincidence = np.zeros((len(values), len(values)))
    for u in units:
        counts = np.zeros(len(values))
        for v in u:
            counts[index[v]] += 1
        # pairs (i, j), i != j, within the unit: n_c n_k off the diagonal, n_c (n_c - 1) on it
        coincidence += (np.outer(counts, counts) - np.diag(counts)) / (len(u) - 1)
    marginal = coincidence.sum(axis=1)
    n: float = marginal.sum()
    if level == "nominal":
        distance = 1.0 - np.eye(len(values))
    else:
        try:
            numbers = np.array(values, dtype=float)
        except (TypeError, ValueError):
            raise InvalidInput("Krippendorff's alpha at the interval level needs numeric ratings.",
                               hint="Use level='nominal' for labels.") from None
        distance = (numbers[:, None] - numbers[None, :]) ** 2
    expected = float((np.outer(marginal, marginal) * distance).sum())
    if expected == 0.0:
        raise AgreementUndefined(f"Krippendorff's alpha is undefined: every pairable rating is {values[0]!r}, "
                                 "so there is no variation to agree on (0/0).", hint="Report raw agreement instead.")
    return 1.0 - (n - 1) * float((coincidence * distance).sum()) / expected


def reliability_matrix(judgements: Iterable[Judgement]) -> tuple[list[str], list[Hashable], list[list[Any]]]:
    """The raters x units table of ``krippendorff_alpha`` from judgements.

    Returns:
        ``(annotators, items, rows)``: annotators sorted, items in first-seen order,
        ``rows[a][i]`` the label of annotator a on item i or None.

    Raises:
        InvalidInput: an annotator judged the same item twice.
    """
    cells: dict[tuple[str, Hashable], Hashable] = {}
    items: dict[Hashable, None] = {}
    for j in judgements:
        if (j[1], j[0]) in cells:
            raise InvalidInput(f"Annotator {j[1]!r} judged item {j[0]!r} twice.",
                               hint="Keep one judgement per annotator and item (their latest).")
        cells[(j[1], j[0])] = j[2]
        items[j[0]] = None
    annotators = sorted({a for a, _ in cells})
    return annotators, list(items), [[cells.get((a, i)) for i in items] for a in annotators]


# --- spans ------------------------------------------------------------------------------


def span_f1(spans_a: Mapping[Hashable, Iterable[Sequence[Any]]],
            spans_b: Mapping[Hashable, Iterable[Sequence[Any]]]) -> dict[str, Any]:
    """Entity-level agreement of two annotators: exact match on (start, end, label).

    Counted over the items both annotated (an item with no entities is an empty list).
    F1 is symmetric: ``2 * matched / (spans_a + spans_b)``; precision and recall take A
    as the reference.

    Args:
        spans_a: item -> annotator A's spans, each (start, end, label).
        spans_b: item -> annotator B's spans.

    Returns:
        ``{"items", "spans_a", "spans_b", "matched", "precision", "recall", "f1",
        "per_label": {label: {"spans_a", "spans_b", "matched", "f1"}}}``. With no spans
        on either side, precision, recall and F1 are 1.0.

    Raises:
        InvalidInput: no item annotated by both, or a span that is not (start, end, label)
            with 0 <= start < end.
    """
    common = [item for item in spans_a if item in spans_b]
    if not common:
        raise InvalidInput("Span F1 needs at least one item annotated by both annotators.")
    per_label: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # a, b, matched
    for item in common:
        a = {_span(s, item) for s in spans_a[item]}
        b = {_span(s, item) for s in spans_b[item]}
        for s in a:
            per_label[s.label][0] += 1
        for s in b:
            per_label[s.label][1] += 1
        for s in a & b:
            per_label[s.label][2] += 1
    total_a = sum(v[0] for v in per_label.values())
    total_b = sum(v[1] for v in per_label.values())
    matched = sum(v[2] for v in per_label.values())
    return {
        "items": len(common), "spans_a": total_a, "spans_b": total_b, "matched": matched,
        "precision": matched / total_b if total_b else float(total_a == 0),
        "recall": matched / total_a if total_a else float(total_b == 0),
        "f1": _f1(total_a, total_b, matched),
        "per_label": {label: {"spans_a": a, "spans_b": b, "matched": m, "f1": _f1(a, b, m)}
                      for label, (a, b, m) in sorted(per_label.items())},
    }


# --- per annotator ----------------------------------------------------------------------


def items_per_hour(times: Iterable[datetime], *, idle_after: timedelta = timedelta(minutes=10)) -> float | None:
    """An annotator's labelling speed from the times they submitted judgements.

    Each gap between consecutive submissions is the time spent on the next item; a gap
    longer than ``idle_after`` is a break and is left out (with the item after it, whose
    working time is unknown). Speed = timed items / working hours.

    Returns:
        Items per hour, or None when no gap is within ``idle_after`` (fewer than two
        submissions in one sitting) or all gaps are zero.
    """
    ordered = sorted(times)
    gaps = [(b - a).total_seconds() for a, b in zip(ordered, ordered[1:], strict=False)]
    worked = [g for g in gaps if g <= idle_after.total_seconds()]
    seconds = sum(worked)
    return len(worked) * 3600.0 / seconds if worked and seconds > 0 else None


def annotator_figures(judgements: Iterable[Judgement], consensus: Mapping[Hashable, Hashable], *,
                      idle_after: timedelta = timedelta(minutes=10)) -> dict[str, AnnotatorFigures]:
    """Per annotator: items, items/hour, and agreement and kappa with the consensus.

    Args:
        judgements: (item, annotator, label, at) records; ``at`` may be None.
        consensus: item -> the decided label (majority vote, Dawid-Skene or a steward);
            items without one are left out of the agreement figures.
        idle_after: a longer gap between two submissions is a break (see ``items_per_hour``).

    Returns:
        annotator -> ``AnnotatorFigures``, annotators sorted by name.
    """
    by_annotator: dict[str, list[Judgement]] = defaultdict(list)
    for j in judgements:
        by_annotator[j[1]].append(Judgement(*j))
    figures = {}
    for name in sorted(by_annotator):
        own = by_annotator[name]
        pairs = [(j.label, consensus[j.item]) for j in own if j.item in consensus]
        kappa, note = None, ""
        if pairs:
            mine, decided = zip(*pairs, strict=True)
            try:
                kappa = cohen_kappa(mine, decided)
            except AgreementUndefined as exc:
                note = exc.message
        else:
            note = "no item with a consensus label"
        figures[name] = AnnotatorFigures(
            annotator=name, items=len(own),
            items_per_hour=items_per_hour([j.at for j in own if j.at is not None], idle_after=idle_after),
            compared=len(pairs), agreement=sum(a == b for a, b in pairs) / len(pairs) if pairs else None,
            kappa=kappa, note=note)
    return figures


def agreement_report(judgements: Iterable[Judgement]) -> dict[str, Any]:
    """Every agreement figure that applies to a project's classification judgements.

    - ``percent_agreement``: over all pairs of annotators on shared items.
    - ``cohen_kappa``: per pair of annotators with shared items (key "a|b"), and their mean.
    - ``fleiss_kappa``: over the items rated by the most common number (>= 2) of raters.
    - ``krippendorff_alpha``: nominal, over every item (missing ratings allowed).

    A figure that cannot be computed is None, and ``notes`` says why.

    Returns:
        ``{"items", "annotators", "overlap_items", "percent_agreement", "cohen_kappa",
        "cohen_kappa_mean", "fleiss_kappa", "fleiss_items", "krippendorff_alpha", "notes"}``.
    """
    annotators, items, rows = reliability_matrix(judgements)
    notes: list[str] = []
    columns = list(zip(*rows, strict=True)) if rows else []
    overlap = [c for c in columns if sum(v is not None for v in c) >= 2]
    pair_kappas: dict[str, float | None] = {}
    agree = total = 0
    for (ia, a), (ib, b) in combinations(enumerate(annotators), 2):
        shared = [(x, y) for x, y in zip(rows[ia], rows[ib], strict=True) if x is not None and y is not None]
        if not shared:
            continue
        agree += sum(x == y for x, y in shared)
        total += len(shared)
        la, lb = zip(*shared, strict=True)
        pair_kappas[f"{a}|{b}"] = _or_note(functools.partial(cohen_kappa, la, lb), f"Cohen {a}|{b}", notes)
    defined = [k for k in pair_kappas.values() if k is not None]
    fleiss, fleiss_items = None, 0
    sizes = [sum(v is not None for v in c) for c in overlap]
    if sizes:
        n = max(set(sizes), key=lambda s: (sizes.count(s), s))
        full = [Judgement(i, a, v) for i, (c, s) in enumerate(zip(overlap, sizes, strict=True)) if s == n
                for a, v in zip(annotators, c, strict=True) if v is not None]
        fleiss_items = sizes.count(n)
        _, _, table = category_counts(full)
        fleiss = _or_note(lambda: fleiss_kappa(table), "Fleiss", notes)
    else:
        notes.append("No item was labelled by two or more annotators: set an overlap to measure agreement.")
    alpha = _or_note(lambda: krippendorff_alpha(rows), "Krippendorff", notes) if overlap else None
    return {
        "items": len(items), "annotators": annotators, "overlap_items": len(overlap),
        "percent_agreement": agree / total if total else None,
        "cohen_kappa": pair_kappas, "cohen_kappa_mean": sum(defined) / len(defined) if defined else None,
        "fleiss_kappa": fleiss, "fleiss_items": fleiss_items, "krippendorff_alpha": alpha, "notes": notes,
    }


# --- helpers ----------------------------------------------------------------------------


def _categories(seen: Sequence[Hashable], given: Sequence[Hashable] | None) -> list[Hashable]:
    if given is None:
        return sorted(set(seen), key=_sort_key)
    cats = list(given)
    unknown = set(seen) - set(cats)
    if unknown:
        raise InvalidInput(f"Labels {sorted(unknown, key=_sort_key)!r} are not among the categories {cats!r}.",
                           hint="Pass every category the raters could use.")
    return cats


def _weight_matrix(k: int, weights: Weights | None) -> np.ndarray:
    positions = np.arange(k)
    diff: np.ndarray = np.abs(positions[:, None] - positions[None, :]).astype(float)
    if weights is None:
        return (diff > 0).astype(float)
    if weights == "linear":
        return diff
    if weights == "quadratic":
        return diff ** 2
    raise InvalidInput(f"Unknown kappa weights {weights!r}.", hint="Use None, 'linear' or 'quadratic'.")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, numbers.Real) and value != value)  # NaN != NaN


def _sort_key(value: Any) -> tuple[str, Any]:
    # numbers sort as numbers, everything else by its text: mixed labels never fail to sort
    return ("0", value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else ("1", str(value))


def _span(raw: Sequence[Any], item: Hashable) -> Span:
    try:
        start, end, label = raw
        span = Span(int(start), int(end), str(label))
    except (TypeError, ValueError):
        raise InvalidInput(f"Span {raw!r} on item {item!r} is not (start, end, label).") from None
    if not 0 <= span.start < span.end:
        raise InvalidInput(f"Span {raw!r} on item {item!r} needs 0 <= start < end.")
    return span


def _f1(a: int, b: int, matched: int) -> float:
    return 2 * matched / (a + b) if a + b else 1.0


def _or_note(compute: Callable[[], float], name: str, notes: list[str]) -> float | None:
    try:
        return float(compute())
    except AgreementUndefined as exc:
        notes.append(f"{name}: {exc.message}")
        return None
