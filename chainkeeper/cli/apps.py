"""``chainkeeper apps support …``: the customer-service assistant (issue 16) from the command line.

Each command acts as the user behind --token / CHAINKEEPER_TOKEN and calls the service of
``chainkeeper.apps.support``, which decides, in the project of the assistant's deployment,
as it does for the API and the web page: setting an assistant up needs ``app.manage``
(release_manager), reading assistants and conversations ``support.read``, taking and
answering handed-over conversations ``support.answer`` (support_agent), sending a message
``predict`` there, exporting the answers as labelled rows a data steward's rights.

The commands run where the store is. ``ask`` loads the assistant's model and knowledge
index in this process, as a server does on its first message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from chainkeeper import serving
from chainkeeper.apps import support  # a lazy entry point: torch and FAISS load when a command needs them
from chainkeeper.cli.governance import render_lineage
from chainkeeper.cli.state import JSON_OPTION, console, current_actor, new_table, open_context, print_json
from chainkeeper.core.errors import InvalidInput

if TYPE_CHECKING:
    from chainkeeper.apps.support import SupportApp, SupportReply
    from chainkeeper.apps.support.handoff import ConversationSummary
    from chainkeeper.core.context import Context

app = typer.Typer(help="Applications built on the chain: the customer-service assistant.", no_args_is_help=True)
support_app = typer.Typer(help="Support assistants: intent, knowledge-base answers, out-of-scope detection and "
                          "hand-off to a person.", no_args_is_help=True)
app.add_typer(support_app, name="support")

# The assistant's settings, written out so that '--help' loads no model code
# (tests/cli/test_support_cli.py keeps it equal to apps.support's DEFAULT_SETTINGS).
SETTINGS_HELP = "top_k, clarify_margin, min_article_score, min_article_score_zh, max_clarifications"
SETTING_OPTION: Any = typer.Option(None, "--setting", metavar="KEY=VALUE",
                                   help=f"An assistant setting (repeatable): {SETTINGS_HELP}.")


def _settings(pairs: list[str] | None) -> dict[str, str]:
    """``--setting key=value`` pairs as a mapping; the service checks keys and values.

    Raises:
        InvalidInput: a pair without ``=`` or without a key.
    """
    values: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--setting {pair!r} is not KEY=VALUE.",
                               hint="For example: --setting clarify_margin=0.2 --setting top_k=3")
        values[key.strip()] = value.strip()
    return values


@contextmanager
def _predictors(c: Context) -> Iterator[Any]:
    """The models of this command (loaded on first use, closed when it ends)."""
    cache = serving.PredictorCache(c, batching=False)
    try:
        yield cache
    finally:
        cache.close()


def _when(value: Any) -> str:
    return "—" if value is None else f"{value:%Y-%m-%d %H:%M}"


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _print_app(found: SupportApp) -> None:
    console.print(f"assistant [bold]{escape(found.name)}[/] (id {found.id}) {found.state}, project "
                  f"{escape(found.project)}, owner {escape(found.owner)}: deployment {escape(found.deployment)}, "
                  f"knowledge-base version {found.knowledge_version_id}")
    settings = new_table("setting", "value", "")
    for key in SETTINGS_HELP.split(", "):
        settings.add_row(key, str(found.setting(key)), "set" if key in found.settings else "default")
    console.print(settings)
    if not found.scope:
        console.print(f"no out-of-scope threshold fitted: run 'chainkeeper apps support calibrate {found.name}'")
        return
    scope = new_table("model version", "score", "threshold", "dev rows", "dev accuracy", "dev rejected",
                      "accuracy lost", title="out-of-scope thresholds")
    for version_id, fitted in sorted(found.scope.items()):
        scope.add_row(version_id, str(fitted.get("scorer")), _num(fitted.get("threshold"), 4),
                      str(fitted.get("dev_rows")), _num(fitted.get("dev_accuracy")), _num(fitted.get("dev_rejected")),
                      _num(fitted.get("dev_accuracy_loss")))
    console.print(scope)


# --- assistants ---------------------------------------------------------------------------------


@support_app.command("create")
def support_create(ctx: typer.Context, name: str = typer.Argument(..., help="Lower-case letters, digits, - or _."),
                   deployment: str = typer.Option(..., "--deployment", help="The active deployment of an intent "
                                                  "classifier."),
                   knowledge_version: int = typer.Option(..., "--knowledge-version", metavar="VERSION_ID",
                                                         help="A released knowledge-base dataset version "
                                                         "('apps support import-kb')."),
                   owner: str | None = typer.Option(None, "--owner", help="Who answers for it (default: you)."),
                   setting: list[str] | None = SETTING_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Register a support assistant: builds its knowledge index and fits its out-of-scope threshold."""
    settings = _settings(setting)
    with open_context(ctx) as c, _predictors(c) as predictors:
        actor = current_actor(ctx, c)
        created = support.create_support_app(c, predictors, name=name, deployment=deployment,
                                             knowledge_version_id=knowledge_version, actor=actor, owner=owner,
                                             settings=settings)
    if as_json:
        print_json(asdict(created))
        return
    _print_app(created)
    console.print(f"Try it: chainkeeper apps support ask {created.name} \"How do I change my PIN?\"", markup=False)


@support_app.command("list")
def support_list(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """The assistants you may read."""
    with open_context(ctx) as c:
        found = support.find_support_apps(c, actor=current_actor(ctx, c))
    if as_json:
        print_json([asdict(a) for a in found])
        return
    if not found:
        console.print("No support assistants yet ('chainkeeper apps support create').")
        return
    table = new_table("name", "project", "state", "deployment", "knowledge base", "owner", "thresholds",
                      "updated (UTC)")
    for a in found:
        table.add_row(escape(a.name), escape(a.project), a.state, escape(a.deployment),
                      f"version {a.knowledge_version_id}", escape(a.owner),
                      ", ".join(f"v{k}: {v.get('scorer')} {v.get('threshold', 0):.3g}" for k, v in a.scope.items())
                      or "none", _when(a.updated_at))
    console.print(table)


@support_app.command("show")
def support_show(ctx: typer.Context, name: str, as_json: bool = JSON_OPTION) -> None:
    """One assistant: its deployment, knowledge base, settings and out-of-scope thresholds."""
    with open_context(ctx) as c:
        found = support.show_support_app(c, name, actor=current_actor(ctx, c))
    if as_json:
        print_json(asdict(found))
        return
    _print_app(found)


@support_app.command("change")
def support_change(ctx: typer.Context, name: str,
                   deployment: str | None = typer.Option(None, "--deployment",
                                                         help="Another active classifier deployment of its project."),
                   knowledge_version: int | None = typer.Option(None, "--knowledge-version", metavar="VERSION_ID",
                                                                help="Another released knowledge-base version."),
                   setting: list[str] | None = SETTING_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Point an assistant at another deployment or knowledge base, or change its settings."""
    settings = _settings(setting)
    with open_context(ctx) as c, _predictors(c) as predictors:
        actor = current_actor(ctx, c)
        changed = support.change_support_app(c, predictors, name, actor=actor, deployment=deployment,
                                             knowledge_version_id=knowledge_version, settings=settings)
    if as_json:
        print_json(asdict(changed))
        return
    _print_app(changed)


@support_app.command("calibrate")
def support_calibrate(ctx: typer.Context, name: str, as_json: bool = JSON_OPTION) -> None:
    """Fit the out-of-scope threshold again for every model version on the assistant's route."""
    with open_context(ctx) as c, _predictors(c) as predictors:
        fitted = support.calibrate_support_app(c, predictors, name, actor=current_actor(ctx, c))
    if as_json:
        print_json(fitted)
        return
    for version_id, f in fitted.items():
        console.print(f"model version {version_id}: out of scope when {f['scorer']} score > {f['threshold']:.4f} "
                      f"(fitted on {f['dev_rows']} dev rows, dev accuracy {_num(f.get('dev_accuracy'))}, "
                      f"{_num(f.get('dev_accuracy_loss'))} of them lost)")


# --- messages -----------------------------------------------------------------------------------


def print_reply(reply: SupportReply) -> None:
    """One answer of the assistant: the decision, why, and what the customer reads."""
    scope = reply.scope
    table = new_table("decision", "intent", "confidence", "scope", "language")
    table.add_row(reply.decision, escape(reply.intent or "—"), _num(reply.confidence),
                  (f"{scope['method']} {scope['score']:.3g} vs {scope['threshold']:.3g}: "
                   f"{'out of scope' if scope['out_of_scope'] else 'in scope'}") if scope else "—",
                  reply.language)
    console.print(table)
    if reply.handoff_reason:
        console.print(f"handed over: {escape(reply.handoff_reason)}")
    console.print(f"reply: {escape(reply.reply)}")
    if reply.articles:
        articles = new_table("rank", "article", "intent", "language", "score", "title")
        for a in reply.articles:
            articles.add_row(str(a["rank"]), escape(a["article_id"]), escape(a["intent"]), a["language"],
                             f"{a['score']:.3f}", escape(a["title"]))
        console.print(articles)
    for caveat in reply.caveats:
        console.print(f"[yellow]note:[/] {escape(caveat)}")
    console.print(f"conversation {reply.conversation_id}, message {reply.message_id}"
                  + (f", request {reply.request_id}" if reply.request_id else ""), markup=False)


@support_app.command("ask")
def support_ask(ctx: typer.Context, name: str, message: str = typer.Argument(..., help="The customer's message."),
                conversation: str | None = typer.Option(None, "--conversation", metavar="CONVERSATION_ID",
                                                        help="Continue this conversation (the id an earlier answer "
                                                        "printed)."),
                as_json: bool = JSON_OPTION) -> None:
    """Send one message to assistant NAME as yourself and print what it decides."""
    with open_context(ctx) as c, _predictors(c) as predictors:
        reply = support.handle_message(c, predictors, name, message, actor=current_actor(ctx, c),
                                       conversation_id=conversation)
    if as_json:
        print_json(reply.to_dict())
        return
    print_reply(reply)


@support_app.command("import-kb")
def support_import_kb(ctx: typer.Context, path: Path = typer.Argument(..., metavar="FILE",
                                                                    help="CSV, TSV, JSON Lines, JSON or Parquet with "
                                                                    "article_id, title, text, label, language."),
                      dataset: str = typer.Option(..., "--name", help="The knowledge base's dataset name."),
                      as_json: bool = JSON_OPTION) -> None:
    """Import a knowledge-base file as the next draft version of dataset --name."""
    with open_context(ctx) as c:
        source, version = support.import_knowledge_base(c, path, name=dataset, actor=current_actor(ctx, c))
    if as_json:
        print_json({"source": asdict(source), "version": asdict(version)})
        return
    console.print(f"source {source.id}: {source.rows_accepted} articles from {escape(path.name)} "
                  f"(sha256 {source.sha256[:12]})")
    console.print(f"knowledge base {escape(version.name)} v{version.version} (dataset version {version.id}): "
                  f"{version.state}")
    console.print(f"Next: ask for its release with 'chainkeeper data release-request {version.id}'; a second data "
                  f"steward approves it ('chainkeeper approvals approve ID'); then 'chainkeeper apps support create "
                  f"NAME --deployment D --knowledge-version {version.id}'.", markup=False)


# --- people in the loop --------------------------------------------------------------------------


def _summaries(found: list[ConversationSummary], empty: str) -> None:
    if not found:
        console.print(empty)
        return
    table = new_table("id", "assistant", "state", "language", "why handed over", "claimed by", "last message",
                      "messages", "updated (UTC)")
    for s in found:
        table.add_row(str(s.id), escape(s.app), s.state, s.language or "—", escape(s.handoff_reason or "—"),
                      escape(s.claimed_by or "—"), escape(s.last_customer_text), str(s.messages),
                      _when(s.updated_at))
    console.print(table)


@support_app.command("queue")
def support_queue(ctx: typer.Context, app_name: str | None = typer.Option(None, "--app", metavar="NAME",
                                                                          help="Only this assistant's."),
                  as_json: bool = JSON_OPTION) -> None:
    """Conversations waiting for a person, oldest hand-off first."""
    with open_context(ctx) as c:
        found = support.handoff_queue(c, actor=current_actor(ctx, c), app=app_name)
    if as_json:
        print_json([s.to_dict() for s in found])
        return
    _summaries(found, "Nobody is waiting for a person.")


@support_app.command("conversation")
def support_conversation(ctx: typer.Context, conversation_id: int = typer.Argument(..., metavar="ID"),
                         as_json: bool = JSON_OPTION) -> None:
    """One conversation with its messages (personal data redacted, as stored)."""
    with open_context(ctx) as c:
        found = support.show_conversation(c, conversation_id, actor=current_actor(ctx, c))
    if as_json:
        print_json(found.to_dict())
        return
    s = found.summary
    console.print(f"conversation {s.id} of {escape(s.app)} ({s.public_id}): {s.state}"
                  + (f", handed over: {escape(s.handoff_reason)}" if s.handoff_reason else "")
                  + (f", claimed by {escape(s.claimed_by)}" if s.claimed_by else "")
                  + (f", resolved by {escape(s.resolved_by)} as {escape(s.resolved_intent or '—')}"
                     if s.resolved_by else ""))
    table = new_table("message", "at (UTC)", "from", "text", "decision", "intent", "confidence", "articles")
    for m in found.messages:
        table.add_row(str(m["id"]), _when(m["at"]), escape(m["author"] or m["sender"]) if m["sender"] != "assistant"
                      else "assistant", escape(m["text"]), m["decision"] or "—", escape(m["intent"] or "—"),
                      _num(m["confidence"]), escape(", ".join(a["article_id"] for a in m["articles"])) or "—")
    console.print(table)
    if found.exported_version_id:
        console.print(f"exported as labelled rows in dataset version {found.exported_version_id}")


@support_app.command("claim")
def support_claim(ctx: typer.Context, conversation_id: int = typer.Argument(..., metavar="ID"),
                  as_json: bool = JSON_OPTION) -> None:
    """Take a handed-over conversation, so that no other agent answers it as well."""
    with open_context(ctx) as c:
        claimed = support.claim_conversation(c, conversation_id, actor=current_actor(ctx, c))
    if as_json:
        print_json(claimed.to_dict())
        return
    console.print(f"conversation {claimed.id} is yours ({claimed.state}); the customer wrote: "
                  f"{escape(claimed.last_customer_text)}")
    console.print(f"Answer with 'chainkeeper apps support answer {claimed.id} --intent INTENT --reply \"...\"'",
                  markup=False)


@support_app.command("answer")
def support_answer(ctx: typer.Context, conversation_id: int = typer.Argument(..., metavar="ID"),
                   intent: str = typer.Option(..., "--intent", help="What the customer wanted: one of the "
                                              "classifier's intents, or out_of_scope."),
                   reply: str = typer.Option(..., "--reply", help="The answer the customer gets."),
                   article: str | None = typer.Option(None, "--article", metavar="ARTICLE_ID",
                                                      help="The knowledge-base article the reply is based on."),
                   new_title: str | None = typer.Option(None, "--new-article-title",
                                                        help="Propose an article the knowledge base lacks: its title."),
                   new_text: str | None = typer.Option(None, "--new-article-text",
                                                       help="… and its text."),
                   as_json: bool = JSON_OPTION) -> None:
    """Answer a handed-over conversation; the intent you give becomes a labelled row on export."""
    new_article = None if new_title is None and new_text is None else {"title": new_title or "",
                                                                       "text": new_text or ""}
    with open_context(ctx) as c:
        resolved = support.resolve_conversation(c, conversation_id, actor=current_actor(ctx, c), intent=intent,
                                                reply=reply, article_id=article, new_article=new_article)
    if as_json:
        print_json(resolved.to_dict())
        return
    console.print(f"conversation {resolved.id} resolved by {escape(resolved.resolved_by or '—')} as "
                  f"{escape(resolved.resolved_intent or '—')}; a data steward exports it with 'chainkeeper apps "
                  f"support export {escape(resolved.app)}'")


@support_app.command("export")
def support_export(ctx: typer.Context, name: str, as_json: bool = JSON_OPTION) -> None:
    """Turn the agents' answers not exported yet into labelled rows and an annotation project for review."""
    with open_context(ctx) as c:
        exported = support.export_resolutions(c, name, actor=current_actor(ctx, c))
    if as_json:
        print_json(exported.to_dict())
        return
    if not exported.rows:
        console.print(f"Nothing to export: no answer of {escape(name)}'s agents is waiting.")
        return
    console.print(f"{exported.rows} labelled rows from conversations {', '.join(map(str, exported.conversations))}: "
                  f"source {exported.source_id}, draft dataset version {exported.dataset_version_id}, annotation "
                  f"project {exported.annotation_project_id} (pre-labelled with the agents' intents)")
    console.print(f"Next: review them in the annotation project, then release version {exported.dataset_version_id} "
                  f"('chainkeeper data release-request {exported.dataset_version_id}').", markup=False)


@support_app.command("trace")
def support_trace(ctx: typer.Context, message_id: int = typer.Argument(..., metavar="MESSAGE_ID"),
                  as_json: bool = JSON_OPTION) -> None:
    """Trace one answer back to the model, the data, the knowledge base and the people behind it."""
    with open_context(ctx) as c:
        node = support.trace_message(c, message_id, actor=current_actor(ctx, c))
    if as_json:
        print_json(node.to_dict())
        return
    console.print(render_lineage(node))
