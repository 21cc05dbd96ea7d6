"""Pure formatting for the overview page: values in, text out (the model is
``chainkeeper.chain.overview``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime


def format_age(then: datetime, now: datetime) -> str:
    """How long ago ``then`` was, in the largest unit that fits: ``"4 s ago"``, ``"12 min ago"``.

    Args:
        then: an aware datetime in the past.
        now: the reference time (aware).

    Returns:
        A short human text; a time in the future (clock skew between machines) reads
        ``"just now"`` rather than a negative age.
    """
    seconds = int((now - then).total_seconds())
    if seconds < 1:
        return "just now"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def format_count(value: int) -> str:
    """A count with thousands separators and a compact form past a million: ``1.2M``."""
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    return f"{value:,}"


def state_totals(counts: Mapping[str, int], order: Sequence[str]) -> list[tuple[str, int]]:
    """The per-state job counts in a fixed order, leaving out states with no job.

    Args:
        counts: jobs per state, as ``count_jobs_by_state`` returns them.
        order: the states in display order.

    Returns:
        ``(state, count)`` pairs for display.
    """
    return [(state, counts[state]) for state in order if counts.get(state)]
