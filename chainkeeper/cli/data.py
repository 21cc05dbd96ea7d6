"""``chainkeeper data``: import and crawl sources, create, compare, report on and release dataset versions.

Each command acts as the user behind --token / CHAINKEEPER_TOKEN; the service it calls
decides what that user may do, as it does for the API. Thin: parse options, call
``chainkeeper.data``, print.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from chainkeeper import data, governance
from chainkeeper.cli.state import JSON_OPTION, console, current_actor, open_context, print_json
from chainkeeper.core.errors import InvalidInput

if TYPE_CHECKING:
    from chainkeeper.data import Source, VersionDiff

app = typer.Typer(help="Sources (imported files) and dataset versions.", no_args_is_help=True)


@app.command("import")
def data_import(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="A file (.csv, .tsv, .jsonl, .json, .parquet, CoNLL) or a folder of .txt "
                                "files."),
    format: str | None = typer.Option(None, "--format", help="csv, tsv, jsonl, json (an array of objects or an "
                                      "object of lists), parquet, folder or conll (default: by extension)."),
    text_column: str = typer.Option("text", "--text-column", help="Column or key holding the text."),
    label_column: str | None = typer.Option("label", "--label-column", help="Column or key holding the label."),
    no_label: bool = typer.Option(False, "--no-label", help="The rows are unlabelled text."),
    metadata_column: list[str] | None = typer.Option(
        None, "--metadata-column", help="A field kept as row metadata (repeat; default: every other field)."),
    split: str | None = typer.Option(None, "--split", help="Split of every row: train, dev or test."),
    limit: int | None = typer.Option(None, "--limit", help="Keep a seeded random sample of this many rows."),
) -> None:
    """Import PATH as a source; bad rows are quarantined (kept, with a reason) and counted."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        with console.status(f"importing {path} ..."):
            source = data.import_file(c, path, actor=actor, format=format, text_column=text_column,
                                        label_column=None if no_label else label_column, split=split, limit=limit,
                                        metadata_columns=metadata_column or None)
    _print_source(source)


def _print_source(source: Source) -> None:
    reasons = source.options.get("quarantine_reasons") or {}
    why = f" ({', '.join(f'{r} {n:,}' for r, n in reasons.items())})" if reasons else ""
    console.print(f"source [bold]{source.id}[/]: {source.name} ({source.format}, {source.encoding or 'binary'}) — "
                  f"{source.rows_accepted:,} rows accepted, {source.rows_quarantined:,} quarantined{why}; "
                  f"sha256 {source.sha256[:12]}")


@app.command("sources")
def data_sources(ctx: typer.Context, limit: int = typer.Option(50, help="Show at most this many."),
                 as_json: bool = JSON_OPTION) -> None:
    """Imported sources, newest first."""
    with open_context(ctx) as c:
        found = data.find_sources(c, actor=current_actor(ctx, c), limit=limit)
    if as_json:
        print_json([s.to_dict() for s in found])
        return
    table = Table("id", "name", "format", "encoding", "accepted", "quarantined", "by", "imported (UTC)")
    for s in found:
        table.add_row(str(s.id), s.name, s.format or s.kind, s.encoding or "—", f"{s.rows_accepted:,}",
                      f"{s.rows_quarantined:,}", s.created_by, f"{s.created_at:%Y-%m-%d %H:%M}")
    console.print(table)


@app.command("source")
def data_source(ctx: typer.Context, source_id: int = typer.Argument(..., metavar="ID"),
                as_json: bool = JSON_OPTION) -> None:
    """One source: where it came from, its checksum, how it was read."""
    with open_context(ctx) as c:
        s = data.show_source(c, source_id, actor=current_actor(ctx, c))
    if as_json:
        print_json(s.to_dict())
        return
    console.print(f"source {s.id}: {s.uri}\n  format {s.format or s.kind}, encoding {s.encoding or '—'}, "
                  f"sha256 {s.sha256}\n  {s.rows_accepted:,} accepted, {s.rows_quarantined:,} quarantined; "
                  f"imported by {s.created_by} at {s.created_at:%Y-%m-%d %H:%M} UTC\n"
                  f"  options {json.dumps(s.options, sort_keys=True)}", markup=False)


@app.command("versions")
def data_versions(ctx: typer.Context, name: str | None = typer.Option(None, help="Only versions of this dataset."),
                  limit: int | None = typer.Option(None, "--limit", help="Show at most this many (default: all)."),
                  as_json: bool = JSON_OPTION) -> None:
    """Dataset versions, newest first."""
    with open_context(ctx) as c:
        found = data.find_dataset_versions(c, actor=current_actor(ctx, c), name=name, limit=limit)
    if as_json:
        print_json([v.to_dict() for v in found])
        return
    table = Table("id", "dataset", "version", "task", "state", "rows", "sources", "owner", "created (UTC)")
    for v in found:
        table.add_row(str(v.id), v.name, str(v.version), str(v.task), str(v.state), f"{v.stats.get('rows', 0):,}",
                      ",".join(str(i) for i in v.source_ids), v.owner, f"{v.created_at:%Y-%m-%d %H:%M}")
    console.print(table)


@app.command("show")
def data_show(ctx: typer.Context, version_id: int = typer.Argument(..., metavar="VERSION"),
              as_json: bool = JSON_OPTION) -> None:
    """A dataset version: stats, splits and the report of each cleaning step."""
    with open_context(ctx) as c:
        v = data.show_dataset_version(c, version_id, actor=current_actor(ctx, c))
    if as_json:
        print_json(v.to_dict())
        return
    console.print(f"dataset [bold]{v.name}[/] v{v.version} (id {v.id}), {v.task}, {v.state}, "
                  f"content {v.content_hash[:12]}, "
                  f"sources {list(v.source_ids)}, split seed {v.split_seed}, owner {v.owner}")
    splits = Table("split", "rows", title="splits")
    for split, count in (v.stats.get("rows_per_split") or {}).items():
        splits.add_row(str(split), f"{count:,}")
    console.print(splits)
    console.print(f"{v.stats.get('rows', 0):,} rows, {len(v.labels)} labels: {', '.join(v.labels[:20])}"
                  f"{' ...' if len(v.labels) > 20 else ''}", markup=False)
    leakage = v.stats.get("leakage")
    if leakage is not None:
        console.print("no text is in two splits" if not leakage["texts"] else
                      f"[bold red]{leakage['texts']:,} texts are in more than one split[/] "
                      f"({', '.join(f'{k} {n:,}' for k, n in leakage['splits'].items())}): the release gate refuses it")
    if v.stats.get("redaction") == "opted out":
        console.print("personal data [bold]not redacted[/] (created with --no-redact)")
    recipe = Table("step", "rows in", "rows out", "changed", title="recipe")
    for step in v.recipe:
        recipe.add_row(str(step.get("name")), f"{step.get('rows_in', 0):,}", f"{step.get('rows_out', 0):,}",
                       f"{step.get('changed', 0):,}")
    console.print(recipe)


@app.command("create")
def data_create(ctx: typer.Context, name: str,
                source: list[int] = typer.Option(..., "--source", help="A source id (repeat for several)."),
                seed: int = typer.Option(13, "--seed", help="Seed of the split assignment."),
                task: str | None = typer.Option(None, "--task", help="text_classification, token_classification or "
                                                "unlabelled (default: from the sources)."),
                step: list[str] | None = typer.Option(None, "--step", help="A cleaning step, in order (repeat; "
                                                      "default: the task's basic recipe)."),
                no_redact: bool = typer.Option(False, "--no-redact", help="Keep personal data (e-mails, phone "
                                               "numbers, ...) in the rows; recorded on the version and shown in "
                                               "its quality report. By default it is redacted.")) -> None:
    """Clean, split and freeze sources as the next version of dataset NAME."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        with console.status(f"creating dataset {name} ..."):
            v = data.create_dataset_version(c, name=name, source_ids=list(source), actor=actor, seed=seed,
                                       task=task, recipe=list(step) if step else None, redact=not no_redact)
    per_split = ", ".join(f"{k} {n:,}" for k, n in (v.stats.get("rows_per_split") or {}).items())
    pii = sum((v.stats.get("pii_found") or {}).values())
    privacy = ("personal data NOT redacted (--no-redact)" if v.stats.get("redaction") == "opted out"
               else f"{pii:,} personal data redacted")
    console.print(f"dataset [bold]{v.name}[/] v{v.version} (id {v.id}): {v.stats.get('rows', 0):,} rows "
                  f"({per_split}), {v.task}, {privacy}, content {v.content_hash[:12]}")


@app.command("diff")
def data_diff(ctx: typer.Context, a: int = typer.Argument(..., metavar="A", help="The older version's id."),
              b: int = typer.Argument(..., metavar="B", help="The newer version's id."),
              as_json: bool = JSON_OPTION) -> None:
    """What changed from dataset version A to B: rows added, removed, unchanged, changed, moved, relabelled.

    Rows are matched by their content (the normalised text, the tokens of token data), not
    by the file they were imported from.
    """
    with open_context(ctx) as c:
        diff = data.diff_dataset_versions(c, a, b, actor=current_actor(ctx, c))
    if as_json:
        print_json(diff.to_dict())
        return
    _print_diff(diff)


def _print_diff(diff: VersionDiff) -> None:
    console.print(f"version {diff.a} ({diff.rows_a:,} rows) -> version {diff.b} ({diff.rows_b:,} rows): "
                  + ", ".join(f"{diff.counts[k]:,} {k.replace('_', ' ')}" for k in data.KINDS))
    table = Table("split", *(k.replace("_", " ") for k in data.KINDS), title="per split")
    for split, counts in diff.by_split.items():
        table.add_row(split, *(f"{counts.get(k, 0):,}" for k in data.KINDS))
    console.print(table)
    for kind in data.KINDS:
        for row in diff.examples.get(kind, [])[:3]:
            text = row.get("text_b") or row.get("text_a") or row.get("text") or ""
            labels = (f" [{row.get('label_a')} -> {row.get('label_b')}]" if kind == "label_changes" else "")
            console.print(f"  {kind}: {text[:100]!r}{labels}", markup=False)


@app.command("report")
def data_report(ctx: typer.Context, version_id: int = typer.Argument(..., metavar="VERSION"),
                html: Path | None = typer.Option(None, "--html", help="Write the self-contained HTML report here."),
                as_json: bool = JSON_OPTION) -> None:
    """The quality report of dataset version VERSION (the one a release approver reads)."""
    with open_context(ctx) as c:
        report = data.show_quality_report(c, version_id, actor=current_actor(ctx, c))
    if html is not None:
        try:
            html.write_text(data.render_quality_html(report), encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"Cannot write {html}: {exc.strerror}.", hint="Pick a writable path.") from None
        console.print(f"wrote {html} ({html.stat().st_size:,} bytes)")
    if as_json:
        print_json(report)
        return
    ds, removed = report["dataset"], report["removed"]
    pii = "NOT redacted (--no-redact)" if report.get("redaction") == "opted out" else \
        report["pii_found"] or "not checked"
    console.print(f"quality report of [bold]{ds['name']}[/] v{ds['version']} ({report.get('task', '')}): "
                  f"{report['rows']:,} rows from {report['rows_before_cleaning']:,}; removed {removed['empty']:,} "
                  f"empty, {removed['duplicates']:,} duplicates, {removed['near_duplicates']:,} near-duplicates; "
                  f"{report['conflicts']:,} label conflicts; {report['quarantined']['total']:,} rows quarantined "
                  f"at import; personal data {pii}")
    leakage = report.get("leakage")
    if leakage is not None:
        console.print("leakage: no text is in two splits" if not leakage["texts"] else
                      f"leakage: [bold red]{leakage['texts']:,} texts ({leakage['rows']:,} rows) are in more than "
                      f"one split[/] ({', '.join(f'{k} {n:,}' for k, n in leakage['splits'].items())}); the "
                      "release gate refuses this version")
    steps = Table("step", "rows in", "rows out", "changed", title="cleaning steps")
    for step in report["steps"]:
        steps.add_row(str(step["name"]), f"{step['rows_in']:,}", f"{step['rows_out']:,}", f"{step['changed']:,}")
    console.print(steps)


@app.command("release-request")
def data_release_request(ctx: typer.Context, version_id: int = typer.Argument(..., metavar="VERSION"),
                         comment: str = typer.Option("", "--comment", "-m", help="What the approver should know.")
                         ) -> None:
    """Ask for dataset version VERSION to be released; a second entitled person approves it."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        a = governance.request_approval(c, "dataset.release", version_id, actor=actor, comment=comment)
        v = data.show_dataset_version(c, version_id, actor=actor)
    checks = ", ".join(f"{ch['name']} {'ok' if ch['passed'] else 'FAILED'}" for ch in a.checks) or "none"
    console.print(f"approval request [bold]{a.id}[/] for {v.name} v{v.version}: {a.state} (checks: {checks}); "
                  f"approve with 'chainkeeper approvals approve {a.id}'")


@app.command("crawl")
def data_crawl(ctx: typer.Context, url: str = typer.Argument(..., help="The start page (http or https)."),
               max_depth: int = typer.Option(2, "--max-depth", help="Follow links at most this many hops."),
               max_pages: int = typer.Option(50, "--max-pages", help="Stop after this many pages."),
               rate: float = typer.Option(2.0, "--rate", help="At most this many requests per second."),
               any_host: bool = typer.Option(False, "--any-host", help="Also follow links to other hosts."),
               here: bool = typer.Option(False, "--here", help="Crawl now, in this process, instead of queuing a "
                                         "job.")) -> None:
    """Queue a crawl of URL (a job): one host, robots.txt obeyed; the pages become a source."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        if here:
            with console.status(f"crawling {url} ..."):
                source, result = data.crawl_to_source(c, url, actor=actor, max_depth=max_depth, max_pages=max_pages,
                                                 rate_per_s=rate, same_host=not any_host)
            console.print(f"crawled {len(result.pages)} pages, stopped by {result.stopped_by}; "
                          f"{len(result.skipped)} URLs skipped")
            _print_source(source)
            return
        job = data.crawl(c, url, actor=actor, max_depth=max_depth, max_pages=max_pages, rate_per_s=rate,
                    same_host=not any_host)
    console.print(f"crawl queued as job [bold]{job.id}[/]; follow it with 'chainkeeper jobs show {job.id}' "
                  "(a worker must be running: 'chainkeeper worker')")
