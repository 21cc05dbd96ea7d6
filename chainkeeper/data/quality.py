"""The quality report of a dataset version: JSON, and a self-contained HTML page.

The report is what a second data steward reads before releasing a version: how many
rows each cleaning step took in and let out, what was removed (empty, duplicates,
near-duplicates, too short or long, other scripts), the personal data redacted per
type (or that redaction was turned off), label conflicts, rows quarantined at import,
how the splits were assigned, the leakage check (texts found in more than one split:
the release gate refuses a version with any), the label distribution per split and the
text-length histogram.

``build_quality_report`` is pure (the version's stats and step reports in, a JSON-able
dict out); ``render_quality_html`` turns it into one HTML page whose plots are inline
SVG, so it opens offline, from a file or an e-mail, with no script and no CDN. When a
version is created the report is stored as an artefact (canonical JSON) and its digest
kept in the version's ``stats["quality_report"]``, so what the approver saw is fixed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from chainkeeper.core.artifacts import ArtifactStore
from chainkeeper.data.identity import find_leakage
from chainkeeper.data.statistics import split_key
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.permissions import authorize_object

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["REPORT_FORMAT", "build_quality_report", "store_quality_report", "render_quality_html", "report_sections",
           "get_quality_report", "show_quality_report", "report_bytes", "get_split_leakage"]

REPORT_FORMAT = "chainkeeper.quality/1"
_PALETTE = ("#2b6cb0", "#2f855a", "#b7791f", "#9b2c2c", "#6b46c1", "#2c7a7b")


def build_quality_report(*, name: str, version: int, content_hash: str, stats: Mapping[str, Any],
                         steps: Sequence[Mapping[str, Any]], task: str = "text_classification") -> dict[str, Any]:
    """The quality report of a version (pure).

    Args:
        name: the dataset's name.
        version: its version number.
        content_hash: the snapshot's content hash.
        stats: the version's statistics (``statistics.dataset_stats`` plus quarantined).
        steps: the stored step reports (``asdict(StepReport)``), in order.
        task: the version's task kind (for token classification the label
            distribution counts tags, token by token).

    Returns:
        A JSON-able dict: format, dataset, task, rows, rows_per_split, label_distribution,
        text_length, steps (name, rows_in, rows_out, changed, params, details),
        removed (duplicates, near_duplicates, empty, conflicts), pii_found, redaction ("on",
        "opted out", or None when not recorded), quarantined, split_assignment (see
        ``splits.SplitAssignment``; empty when not recorded) and leakage (see
        ``identity.find_leakage``; None for versions made before the check).
    """
    quarantined = stats.get("quarantined") or {}
    return {
        "format": REPORT_FORMAT,
        "dataset": {"name": name, "version": version, "content_hash": content_hash},
        "task": task,
        "rows": int(stats.get("rows", 0)),
        "rows_before_cleaning": int(stats.get("rows_before_cleaning", 0)),
        "rows_per_split": dict(stats.get("rows_per_split") or {}),
        "labels": list(stats.get("labels") or []),
        "label_distribution": {s: dict(c) for s, c in (stats.get("label_counts") or {}).items()},
        "text_length": dict(stats.get("text_length") or {}),
        "steps": [{"name": s.get("name"), "rows_in": s.get("rows_in", 0), "rows_out": s.get("rows_out", 0),
                   "changed": s.get("changed", 0), "params": dict(s.get("params") or {}),
                   "details": dict(s.get("details") or {})} for s in steps],
        "removed": {"empty": int(stats.get("empty_removed", 0)),
                    "duplicates": int(stats.get("duplicates_removed", 0)),
                    "near_duplicates": int(stats.get("near_duplicates_removed", 0))},
        "conflicts": int(stats.get("conflicts", 0)),
        "pii_found": {k: int(v) for k, v in (stats.get("pii_found") or {}).items()},
        "redaction": stats.get("redaction"),
        "quarantined": {"total": sum(int(v) for v in quarantined.values()),
                        "by_source": {str(k): int(v) for k, v in quarantined.items()}},
        "split_assignment": dict(stats.get("split_assignment") or {}),
        "leakage": dict(stats["leakage"]) if stats.get("leakage") is not None else None,
    }


def report_bytes(report: Mapping[str, Any]) -> bytes:
    """The canonical JSON of a report (sorted keys, UTF-8): what is stored and hashed."""
    return json.dumps(report, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def store_quality_report(artifacts: ArtifactStore, report: Mapping[str, Any]) -> str:
    """Store a report in the artefact store.

    Args:
        artifacts: the artefact store.
        report: from ``build_quality_report``.

    Returns:
        The sha256 digest naming the stored JSON.
    """
    return artifacts.put_bytes(report_bytes(report))


def get_quality_report(ctx: Context, version_id: int) -> dict[str, Any]:
    """The quality report of a stored version.

    The stored artefact when the version has one (re-checked against its digest);
    otherwise (versions made before reports were stored) built from its stats.

    Args:
        ctx: the stores.
        version_id: the dataset version's id.

    Returns:
        The report (see ``build_quality_report``).

    Raises:
        NotFound: no such version, or its stored report is missing.
        ArtifactCorrupted: the stored report no longer matches its digest.
    """
    from chainkeeper.data.versions import (
        get_dataset_version,  # versions imports this module
    )

    version = get_dataset_version(ctx.db, version_id)
    digest = version.stats.get("quality_report")
    if digest:
        return dict(json.loads(ctx.artifacts.get_bytes(digest)))
    return build_quality_report(name=version.name, version=version.version, content_hash=version.content_hash,
                                stats=version.stats, steps=version.recipe, task=version.task.value)


def show_quality_report(ctx: Context, version_id: int, *, actor: Actor) -> dict[str, Any]:
    """The quality report of a version, for a reader (data.read in its project).

    Raises:
        Forbidden: the actor may not read this dataset. As ``get_quality_report`` otherwise.
    """
    from chainkeeper.data.versions import (
        project_of_dataset_version,  # versions imports this module
    )

    authorize_object(ctx.db, actor, "data.read", lambda: project_of_dataset_version(ctx.db, version_id))
    return get_quality_report(ctx, version_id)


def get_split_leakage(ctx: Context, version_id: int) -> dict[str, Any]:
    """The texts of a stored version found in more than one split (``identity.find_leakage``).

    From the version's stats when it recorded them; computed from its snapshot for
    versions made before the check existed.

    Args:
        ctx: the stores.
        version_id: the dataset version's id.

    Returns:
        See ``identity.find_leakage``.

    Raises:
        NotFound: no such version, or its snapshot is missing.
        ArtifactCorrupted: the snapshot no longer matches its digest.
    """
    from chainkeeper.data.versions import get_dataset_version, read_dataset_rows  # versions imports this module

    version = get_dataset_version(ctx.db, version_id)
    if version.stats.get("leakage") is not None:
        return dict(version.stats["leakage"])
    return find_leakage(read_dataset_rows(ctx, version_id))


# --- HTML ------------------------------------------------------------------------------


def _hbars(items: Sequence[tuple[str, int]], *, width: int = 560, bar_height: int = 18, color: str = _PALETTE[0],
           label_width: int = 180, title: str) -> str:
    """Horizontal bars, one per item, scaled to the largest value."""
    top = max((v for _, v in items), default=0) or 1
    height = bar_height * len(items) + 8
    parts = [f'<svg role="img" aria-label="{escape(title)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">']
    room = width - label_width - 70
    for i, (label, value) in enumerate(items):
        y = 4 + i * bar_height
        w = max(1, round(room * value / top)) if value else 0
        parts.append(f'<text x="{label_width - 6}" y="{y + bar_height - 5}" text-anchor="end" font-size="12">'
                     f'{escape(label[:28])}</text>')
        parts.append(f'<rect x="{label_width}" y="{y + 2}" width="{w}" height="{bar_height - 4}" fill="{color}">'
                     f'<title>{escape(label)}: {value:,}</title></rect>')
        parts.append(f'<text x="{label_width + w + 4}" y="{y + bar_height - 5}" font-size="12">{value:,}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _columns(items: Sequence[tuple[str, int]], *, width: int = 560, height: int = 200, title: str) -> str:
    """Vertical columns (a histogram), one per bucket, scaled to the largest value."""
    top = max((v for _, v in items), default=0) or 1
    slot = (width - 20) / max(1, len(items))
    plot = height - 40
    parts = [f'<svg role="img" aria-label="{escape(title)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">']
    for i, (label, value) in enumerate(items):
        h = round(plot * value / top)
        x = 10 + i * slot
        parts.append(f'<rect x="{x + 3:.1f}" y="{10 + plot - h}" width="{slot - 6:.1f}" height="{h}" '
                     f'fill="{_PALETTE[1]}"><title>{escape(label)} characters: {value:,}</title></rect>')
        parts.append(f'<text x="{x + slot / 2:.1f}" y="{height - 14}" text-anchor="middle" font-size="11">'
                     f'{escape(label)}</text>')
        parts.append(f'<text x="{x + slot / 2:.1f}" y="{max(10, 6 + plot - h)}" text-anchor="middle" '
                     f'font-size="10">{value:,}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _funnel(steps: Sequence[Mapping[str, Any]], *, width: int = 560, title: str) -> str:
    """Rows going into each step (light) and coming out (dark), step by step."""
    items = [(str(s["name"]), int(s["rows_in"]), int(s["rows_out"])) for s in steps]
    top = max((r for _, r, _ in items), default=0) or 1
    bar, label_width = 22, 150
    room = width - label_width - 130
    height = bar * len(items) + 8
    parts = [f'<svg role="img" aria-label="{escape(title)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">']
    for i, (name, rows_in, rows_out) in enumerate(items):
        y = 4 + i * bar
        w_in, w_out = round(room * rows_in / top), round(room * rows_out / top)
        parts.append(f'<text x="{label_width - 6}" y="{y + bar - 7}" text-anchor="end" font-size="12">'
                     f'{escape(name)}</text>')
        parts.append(f'<rect x="{label_width}" y="{y + 2}" width="{w_in}" height="{bar - 4}" fill="#cbd5e0"/>')
        parts.append(f'<rect x="{label_width}" y="{y + 2}" width="{w_out}" height="{bar - 4}" fill="{_PALETTE[0]}">'
                     f'<title>{escape(name)}: {rows_in:,} in, {rows_out:,} out</title></rect>')
        parts.append(f'<text x="{label_width + w_in + 4}" y="{y + bar - 7}" font-size="12">{rows_out:,} '
                     f'(−{rows_in - rows_out:,})</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(f'{c:,}' if isinstance(c, int) else str(c))}</td>" for c in row)
                   + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _title(report: Mapping[str, Any]) -> str:
    return f"Quality report: {report['dataset']['name']} v{report['dataset']['version']}"


def report_sections(report: Mapping[str, Any]) -> str:
    """The body of a report as HTML (title, tables and inline SVG plots), for embedding.

    Args:
        report: from ``build_quality_report``.

    Returns:
        HTML; every value from the data is escaped.
    """
    ds = report["dataset"]
    title = _title(report)
    # Reports stored before task kinds existed are text classification.
    task = str(report.get("task", "text_classification"))
    tokens = task == "token_classification"
    totals: dict[str, int] = {}
    for counts in report["label_distribution"].values():
        for label, n in counts.items():
            totals[label] = totals.get(label, 0) + int(n)
    # The stored JSON has sorted keys: put splits and length buckets back in their natural order.
    splits = sorted(report["rows_per_split"], key=split_key)
    label_rows = [[label] + [int(report["label_distribution"].get(s, {}).get(label, 0)) for s in splits]
                  for label in sorted(totals)]
    buckets = sorted((report["text_length"].get("buckets") or {}).items(),
                     key=lambda item: int(item[0].split("-")[0].rstrip("+")))
    removed = report["removed"]
    summary = [("rows", report["rows"]), ("rows before cleaning", report["rows_before_cleaning"]),
               ("empty removed", removed["empty"]), ("duplicates removed", removed["duplicates"]),
               ("near-duplicates removed", removed["near_duplicates"]), ("label conflicts", report["conflicts"]),
               ("rows quarantined at import", report["quarantined"]["total"]),
               ("personal data redacted", sum(report["pii_found"].values()))]
    leakage = report.get("leakage")
    if leakage is not None:
        summary.append(("texts in more than one split", int(leakage.get("texts", 0))))
    step_rows = [[s["name"], s["rows_in"], s["rows_out"], s["changed"],
                  json.dumps(s["params"], ensure_ascii=False) if s["params"] else ""] for s in report["steps"]]
    pii_rows = [[kind, n] for kind, n in report["pii_found"].items()]
    length = report["text_length"]
    sections = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">{escape(task.replace("_", " "))} · content hash <code>{escape(ds["content_hash"])}</code>'
        "</p>",
        "<h2>Summary</h2>", _table(["", "rows"], summary),
        "<h2>Rows through the cleaning steps</h2>",
        _funnel(report["steps"], title="rows in and out of each cleaning step") if report["steps"] else "<p>none</p>",
        _table(["step", "rows in", "rows out", "changed", "parameters"], step_rows),
        f"<h2>{'Tag distribution (tokens)' if tokens else 'Label distribution'}</h2>",
        (_hbars(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])),
                title="tokens per tag" if tokens else "rows per label")
         + _table(["tag" if tokens else "label", *splits], label_rows)) if totals
        else "<p>No labels: the rows are unlabelled text.</p>",
        "<h2>Text length (characters)</h2>",
        _columns(buckets, title="text length histogram"),
        f"<p>min {length.get('min', 0):,} · mean {length.get('mean', 0)} · max {length.get('max', 0):,}</p>",
        "<h2>Splits</h2>", _splits_section(report),
        "<h2>Personal data redacted</h2>",
        "<p><strong>Redaction was turned off for this version</strong> (--no-redact / redact=false): personal "
        "data in the rows was kept.</p>" if report.get("redaction") == "opted out"
        else _table(["type", "found"], pii_rows) if pii_rows else "<p>No redaction step in the recipe.</p>",
    ]
    return "".join(sections)


def _splits_section(report: Mapping[str, Any]) -> str:
    """The leakage check and how the splits were assigned."""
    leakage = report.get("leakage")
    if leakage is None:
        check = "<p>Leakage: not checked (the version was made before the check; the release gate checks it).</p>"
    elif not leakage.get("texts"):
        check = '<p class="check-ok">Leakage: no text is in more than one split.</p>'
    else:
        combos = ", ".join(f"{k} {v:,}" for k, v in leakage.get("splits", {}).items())
        check = (f'<p class="check-failed"><strong>Leakage: {int(leakage["texts"]):,} texts ({int(leakage["rows"]):,} '
                 f"rows) are in more than one split</strong> ({escape(combos)}); the release gate refuses this "
                 "version.</p>" + _table(["text", "splits"], [[str(e.get("text")), ", ".join(e.get("splits", []))]
                                                             for e in leakage.get("examples", [])]))
    assigned = report.get("split_assignment") or {}
    rows = [(label, int(assigned.get(key, 0))) for key, label in (
        ("rows_declared", "declared by their source"),
        ("rows_following_declared", "following their text's declared split"),
        ("rows_inherited", "kept their split of the previous version"), ("rows_assigned", "split anew by label"),
        ("rows_reassigned", "… of which the previous version had in a split now closed to them"),
        ("declared_over_previous", "declared rows the previous version had in another split"),
        ("conflicts", "removed: declared in a split their text lost to"))] if assigned else []
    return check + (_table(["rows", ""], [[n, label] for label, n in rows]) if rows else "")


def render_quality_html(report: Mapping[str, Any]) -> str:
    """A self-contained HTML page of a report: no script, no external resource.

    Args:
        report: from ``build_quality_report``.

    Returns:
        The page; every value from the data is HTML-escaped.
    """
    title = _title(report)
    style = ("body{font-family:system-ui,sans-serif;max-width:760px;margin:2em auto;color:#1a202c}"
             "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #cbd5e0;padding:2px 8px;"
             "text-align:left}td:not(:first-child){text-align:right}.meta{color:#4a5568}svg{display:block}")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{style}</style></head><body>{report_sections(report)}</body></html>")
