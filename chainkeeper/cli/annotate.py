"""``chainkeeper annotate``: label schemas, projects, queues, adjudication, figures, export.

Each command acts as the user behind --token / CHAINKEEPER_TOKEN and calls the same
service functions as the API and the labelling page; they decide what the user may do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from chainkeeper import annotation
from chainkeeper.cli.governance import render_lineage
from chainkeeper.cli.state import JSON_OPTION, console, current_actor, new_table, open_context, print_json
from chainkeeper.core.errors import InvalidInput

app = typer.Typer(help="Label rows and spans: schemas, projects, queues, agreement, adjudication, export.",
                  no_args_is_help=True)


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


@app.command("schema")
def schema_define(ctx: typer.Context, name: str,
                  kind: str = typer.Option("single", help="single, multi or spans."),
                  label: list[str] = typer.Option(..., "--label", "-l",
                                                  help='A label, "name" or "name: description" (repeatable).'),
                  guidelines: Path | None = typer.Option(None, help="A text file of guidelines for annotators."),
                  ) -> None:
    """Define a label schema (again: its next version; earlier annotations keep theirs)."""
    text = guidelines.read_text(encoding="utf-8") if guidelines else ""

    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        schema = annotation.define_schema(c.db, name=name, kind=kind, labels=label, guidelines=text, actor=actor)
    console.print(f"schema {schema.name} v{schema.version} (id {schema.id}, {schema.kind}): "
                  f"{', '.join(schema.label_names)}")


@app.command("schemas")
def schemas_list(ctx: typer.Context,
                 name: str | None = typer.Option(None, help="Only this schema's versions."),
                 as_json: bool = JSON_OPTION) -> None:
    """Label schema versions, newest first."""
    with open_context(ctx) as c:
        found = annotation.find_schemas(c.db, actor=current_actor(ctx, c), name=name)
    if as_json:
        print_json(found)
        return
    table = new_table("id", "schema", "kind", "labels", "created by")
    for s in found:
        table.add_row(str(s.id), f"{s.name} v{s.version}", str(s.kind), ", ".join(s.label_names), s.created_by)
    console.print(table)


@app.command("create")
def project_create(ctx: typer.Context, name: str,
                   dataset: int = typer.Option(..., help="The dataset version id to label."),
                   schema: int = typer.Option(..., help="The label schema version id."),
                   overlap_k: int = typer.Option(1, help="Annotators per overlap item."),
                   overlap_fraction: float = typer.Option(0.0, help="Share of items labelled by overlap-k people."),
                   order: str = typer.Option("random", help="Queue order: random, active or metadata."),
                   order_key: str | None = typer.Option(None, help="Row column of the metadata order."),
                   split: str | None = typer.Option(None, help="Only rows of this split."),
                   text_contains: str | None = typer.Option(None, help="Only rows whose text contains this."),
                   limit: int | None = typer.Option(None, help="A seeded random sample of this many rows."),
                   seed: int = typer.Option(13, help="Seed of the sample, overlap and random order.")) -> None:
    """Create a project from a dataset version (or a filter of it)."""
    row_filter: dict[str, Any] = {k: v for k, v in (("split", split), ("text_contains", text_contains),
                                                    ("limit", limit)) if v is not None}
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        project = annotation.create_project(c, name=name, dataset_version_id=dataset, schema_id=schema, actor=actor,
                                 row_filter=row_filter, overlap_k=overlap_k, overlap_fraction=overlap_fraction,
                                 queue_order=order, order_key=order_key, seed=seed)
    console.print(f"project {project.name} (id {project.id}) on dataset version {dataset}, order {project.queue_order}")


@app.command("reschema")
def project_reschema(ctx: typer.Context, project_id: int = typer.Argument(..., metavar="PROJECT"),
                     schema: int = typer.Option(..., help="Another version of the project's schema.")) -> None:
    """Move a project to another version of its schema; earlier answers keep theirs."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        project = annotation.change_schema(c, project_id, schema, actor=actor)
    console.print(f"project {project.name} now labels under schema id {project.schema_id}")


@app.command("assign")
def project_assign(ctx: typer.Context, project_id: int = typer.Argument(..., metavar="PROJECT"),
                   annotator: list[str] = typer.Option(..., "--annotator", "-a", help="A user name (repeatable)."),
                   batch_size: int = typer.Option(50, help="Items per batch and annotator.")) -> None:
    """Deal the project's unassigned items to annotators, in queue order."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        added = annotation.assign_batches(c, project_id, annotators=annotator, actor=actor, batch_size=batch_size)
    console.print("assigned " + ", ".join(f"{n} to {who}" for who, n in added.items()))


@app.command("projects")
def projects_list(ctx: typer.Context,
                  dataset: str | None = typer.Option(None, help="Only projects labelling this dataset."),
                  as_json: bool = JSON_OPTION) -> None:
    """Projects you work on: those of the datasets where you manage annotation, and those with your queue."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        found = annotation.find_projects(c, actor=actor, dataset=dataset)
    if as_json:
        print_json(found)
        return
    table = new_table("id", "project", "dataset version", "schema id", "order", "overlap", "state")
    for p in found:
        table.add_row(str(p.id), p.name, str(p.dataset_version_id), str(p.schema_id), str(p.queue_order),
                      f"{p.overlap_fraction:.0%} × {p.overlap_k}" if p.overlap_fraction else "—", str(p.state))
    console.print(table)


@app.command("queue")
def queue_show(ctx: typer.Context, project_id: int = typer.Argument(..., metavar="PROJECT"),
               annotator: str | None = typer.Option(None, help="Whose queue (data steward); default yours."),
               as_json: bool = JSON_OPTION) -> None:
    """Your queue, in order, with pre-labels and your answers."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        tasks = annotation.annotator_queue(c, project_id, actor, annotator=annotator)
    if as_json:
        print_json(tasks)
        return
    table = new_table("item", "batch", "text", "pre-label", "answer", "version", "state")
    for t in tasks:
        pre = f"{t.prelabel['label']} ({t.prelabel['confidence']:.0%})" if t.prelabel else "—"
        answer = (json.dumps(t.answer.value, ensure_ascii=False) if t.answer.value else t.answer.status) if t.answer \
            else "—"
        table.add_row(str(t.item_id), str(t.batch), t.text[:60], pre, answer,
                      str(t.answer.version if t.answer else 0), t.state)
    console.print(table)


def _value(labels: list[str], spans: str | None) -> dict[str, Any] | None:
    if spans is not None:
        try:
            return {"spans": json.loads(spans)}
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"--spans is not JSON: {exc.msg}.",
                               hint='Give e.g. --spans \'[[0, 4, "PER"]]\'.') from None
    if not labels:
        return None
    return {"label": labels[0]} if len(labels) == 1 else {"labels": labels}


@app.command("label")
def label_item(ctx: typer.Context, project_id: int = typer.Argument(..., metavar="PROJECT"),
               item_id: int = typer.Argument(..., metavar="ITEM"),
               labels: list[str] = typer.Argument(None, metavar="[LABEL]...", help="One label, or several (multi)."),
               version: int = typer.Option(..., "--version", help="Your answer's version you last saw (0: none)."),
               spans: str | None = typer.Option(None, help='Spans as JSON: \\[\\[start, end, "LABEL"], ...].'),
               skip: bool = typer.Option(False, "--skip", help="Skip the item."),
               flag: bool = typer.Option(False, "--flag", help="Flag it for the data steward."),
               comment: str = typer.Option("", help="A note for the steward.")) -> None:
    """Answer an item of your queue."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        answer = annotation.save_annotation(c, project_id, item_id, actor, expected_version=version,
                                 value=_value(labels or [], spans), skip=skip, flag=flag, comment=comment)
    console.print(f"item {item_id}: {answer.status} {json.dumps(answer.value, ensure_ascii=False)}"
                  f"{' (flagged)' if answer.flagged else ''}, version {answer.version}")


@app.command("disputes")
def disputes_list(ctx: typer.Context, project_id: int = typer.Argument(..., metavar="PROJECT"),
                  as_json: bool = JSON_OPTION) -> None:
    """The adjudication queue: disputed and flagged items with every answer."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        found = annotation.adjudication_queue(c, project_id, actor)
    if as_json:
        print_json(found)
        return
    table = new_table("item", "version", "text", "answers")
    for d in found:
        table.add_row(str(d.item_id), str(d.version), d.text[:60], "; ".join(
            f"{a.annotator}: {json.dumps(a.value, ensure_ascii=False) if a.value else a.status}" for a in d.answers))
    console.print(table if found else "nothing waits for a decision")


@app.command("decide")
def decide_item(ctx: typer.Context, project_id: int = typer.Argument(..., metavar="PROJECT"),
                item_id: int = typer.Argument(..., metavar="ITEM"),
                labels: list[str] = typer.Argument(None, metavar="[LABEL]..."),
                version: int = typer.Option(..., "--version", help="The item version you saw (see 'disputes')."),
                spans: str | None = typer.Option(None, help='Spans as JSON: \\[\\[start, end, "LABEL"], ...].'),
                note: str = typer.Option("", help="Why, for the record.")) -> None:
    """Decide one item (data steward); recorded with your name in the ledger."""
    value = _value(labels or [], spans)
    if value is None:
        raise InvalidInput("Give the decided label (or --spans).")
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        decision = annotation.adjudicate_item(c, project_id, item_id, actor, value=value, expected_version=version,
                                              note=note)
    console.print(f"item {item_id}: {json.dumps(decision.value, ensure_ascii=False)} decided by {decision.decided_by}")


@app.command("resolve")
def resolve(ctx: typer.Context, project_id: int = typer.Argument(..., metavar="PROJECT"),
            method: str = typer.Option("majority", help="majority or dawid_skene.")) -> None:
    """Decide every disputed item by majority vote (ties stay) or Dawid-Skene."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        result = annotation.resolve_disputes(c, project_id, actor, method=method)
    console.print(f"{method}: {len(result['decided'])} decided, {len(result['left'])} left")
    for who, r in result["reliability"].items():
        console.print(f"  {who}: estimated reliability {r:.3f}")


@app.command("figures")
def figures_show(ctx: typer.Context, project_id: int = typer.Argument(..., metavar="PROJECT"),
                 as_json: bool = JSON_OPTION) -> None:
    """Progress, agreement and per-annotator figures."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        f = annotation.project_figures(c, project_id, actor)
    if as_json:
        print_json(f)
        return
    p = f["progress"]
    console.print(f"{p['items']} items, {p['answers']} answers: {p['settled']} settled, {p['disputed']} disputed, "
                  f"{p['open']} open")
    ag = f["agreement"] or {}
    if "span_f1" in ag:
        for pair, s in ag["span_f1"].items():
            console.print(f"span F1 {pair}: {s['f1']:.3f}")
    elif ag:
        console.print(f"overlap items {ag['overlap_items']}; percent agreement {_num(ag['percent_agreement'])}; "
                      f"Cohen's kappa {_num(ag['cohen_kappa_mean'])}; Fleiss' kappa {_num(ag['fleiss_kappa'])}; "
                      f"Krippendorff's alpha {_num(ag['krippendorff_alpha'])}")
    table = new_table("annotator", "answers", "items/hour", "agreement with consensus", "kappa with consensus")
    for who, a in f["annotators"].items():
        table.add_row(who, str(a["items"]), _num(a["items_per_hour"], 0), _num(a["agreement_with_consensus"]),
                      _num(a["kappa_with_consensus"]))
    console.print(table)


@app.command("prelabel")
def prelabel(ctx: typer.Context, project_id: int = typer.Argument(..., metavar="PROJECT"),
             model: int = typer.Option(..., help="The registered model version id."),
             strategy: str = typer.Option("least_confidence", help="least_confidence, margin or entropy."),
             now: bool = typer.Option(False, "--now", help="Run here and wait, instead of queueing a job.")) -> None:
    """Pre-label the items with a model version and score them for active learning."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        if now:
            result = annotation.prelabel_project(c, project_id, model, actor, strategy=strategy)
            console.print(f"pre-labelled {result['prelabelled']} of {result['items']} items "
                          f"({result['in_schema']} in the schema); queue re-ordered: {result['reordered']}")
            return
        job = annotation.submit_prelabel(c, project_id, model, actor, strategy=strategy)
    console.print(f"queued job {job.id} (prelabel); follow it with 'chainkeeper jobs show {job.id}'")


@app.command("export")
def export(ctx: typer.Context, project_id: int = typer.Argument(..., metavar="PROJECT"),
           name: str | None = typer.Option(None, help="Dataset name; default the parent version's.")) -> None:
    """Freeze the settled labels as a new dataset version (closes the project)."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        version = annotation.export_project(c, project_id, actor, name=name)
    console.print(f"dataset version {version.name} v{version.version} (id {version.id}), {version.stats['rows']} "
                  f"labelled rows, {version.state}")


@app.command("trace")
def trace(ctx: typer.Context, dataset_version_id: int = typer.Argument(..., metavar="VERSION"),
          row_id: int = typer.Argument(..., metavar="ROW")) -> None:
    """Trace a labelled row back to its annotators, adjudicator and parent row."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        root = annotation.row_lineage(c, dataset_version_id, row_id, actor)
    console.print(render_lineage(root))
