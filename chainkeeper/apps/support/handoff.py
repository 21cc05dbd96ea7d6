"""People in the loop: the hand-off queue, a support agent's answer, and the rows it becomes.

A conversation the assistant handed over waits in ``handoff_queue`` for a
``support_agent``. The agent takes it (``claim_conversation``) and answers
(``resolve_conversation``): a reply to the customer, the intent the customer really had
(one of the classifier's, or ``OUT_OF_SCOPE``), optionally the article sent or a new
article to write. A data steward then exports the answers not yet exported
(``export_resolutions``): each becomes a labelled row (the customer's message, redacted,
and the agent's intent) of a new source and of a draft dataset version
``<assistant>-handoffs``, with an annotation project over it whose pre-labels are the
agents' intents — reviewed like any labels, released by the data steward's approver, and
so in the next training run. Each row's origin names the conversation and message; the
source's lineage reaches back to the agent and the prediction (``trace_message``).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from chainkeeper.annotation import attach_prelabels, create_project, define_schema, list_schemas
from chainkeeper.apps.support.assistants import classifier_labels, get_support_app, project_of_support_app
from chainkeeper.apps.support.tables import SqlSupportApp, SqlSupportConversation, SqlSupportMessage
from chainkeeper.chain import lineage_of
from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import Conflict, InvalidInput, NotFound
from chainkeeper.data import (
    ParsedSource,
    Record,
    create_dataset_version,
    read_dataset_rows,
    redact_text,
    store_records,
)
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.lineage import LineageNode
from chainkeeper.governance.permissions import authorize, authorize_object, projects_allowed
from chainkeeper.serving import get_deployment

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["OUT_OF_SCOPE", "ConversationSummary", "Conversation", "HandoffExport", "handoff_queue",
           "find_conversations", "show_conversation", "claim_conversation", "resolve_conversation",
           "export_resolutions", "trace_message"]

# The intent an agent gives a message that none of the classifier's intents covers.
OUT_OF_SCOPE = "out_of_scope"
MAX_REPLY_CHARS = 4000
QUEUE_STATES = ("handed_over", "claimed")


@dataclass(frozen=True)
class ConversationSummary:
    id: int
    public_id: str
    app: str
    state: str
    language: str | None
    handoff_reason: str | None
    handed_over_at: datetime | None
    claimed_by: str | None
    resolved_by: str | None
    resolved_intent: str | None
    last_customer_text: str
    last_decision: str | None  # the assistant's last: answer | clarify | handoff
    messages: int
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Conversation:
    summary: ConversationSummary
    messages: list[dict[str, Any]]
    resolution: dict[str, Any] | None
    exported_version_id: int | None

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary.to_dict(), "messages": self.messages, "resolution": self.resolution,
                "exported_version_id": self.exported_version_id}


@dataclass(frozen=True)
class HandoffExport:
    app: str
    rows: int
    source_id: int | None
    dataset_version_id: int | None
    annotation_project_id: int | None
    conversations: list[int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _message_dict(m: SqlSupportMessage) -> dict[str, Any]:
    return {"id": m.id, "sender": m.sender, "text": m.text, "at": m.at, "decision": m.decision, "intent": m.intent,
            "confidence": m.confidence, "scope_score": m.scope_score, "articles": list(m.articles or []),
            "request_id": m.request_id, "model_version_id": m.model_version_id,
            "knowledge_version_id": m.knowledge_version_id, "author": m.author}


def _latest(ids: list[int], which: Any, column: Any) -> Any:
    """(conversation id, ``column`` of its newest message matching ``which``) for ``ids``: one query."""
    latest = (sa.select(SqlSupportMessage.conversation_id, sa.func.max(SqlSupportMessage.id).label("m"))
              .where(SqlSupportMessage.conversation_id.in_(ids), which)
              .group_by(SqlSupportMessage.conversation_id).subquery())
    return sa.select(latest.c.conversation_id, column).join(SqlSupportMessage, SqlSupportMessage.id == latest.c.m)


def _summaries(s: sa.orm.Session, rows: list[tuple[SqlSupportConversation, str]]) -> list[ConversationSummary]:
    ids = [c.id for c, _ in rows]
    counts = dict(s.execute(sa.select(SqlSupportMessage.conversation_id, sa.func.count())
                            .where(SqlSupportMessage.conversation_id.in_(ids))
                            .group_by(SqlSupportMessage.conversation_id)).all()) if ids else {}
    last: dict[int, str] = {}
    decided: dict[int, str] = {}
    if ids:
        last = dict(s.execute(_latest(ids, SqlSupportMessage.sender == "customer", SqlSupportMessage.text)).all())
        decided = dict(s.execute(_latest(ids, SqlSupportMessage.decision.is_not(None),
                                         SqlSupportMessage.decision)).all())
    return [ConversationSummary(id=c.id, public_id=c.public_id, app=app, state=c.state, language=c.language,
                                handoff_reason=c.handoff_reason, handed_over_at=c.handed_over_at,
                                claimed_by=c.claimed_by, resolved_by=c.resolved_by, resolved_intent=c.resolved_intent,
                                last_customer_text=last.get(c.id, ""), last_decision=decided.get(c.id),
                                messages=counts.get(c.id, 0),
                                updated_at=c.updated_at) for c, app in rows]


def find_conversations(ctx: Context, *, actor: Actor, app: str | None = None, states: tuple[str, ...] | None = None,
                       limit: int = 100) -> list[ConversationSummary]:
    """Conversations the actor may read (``support.read``), most recently active first.

    Raises:
        Forbidden: the actor may read them nowhere, or not in ``app``'s project. NotFound: no such assistant.
    """
    if app is not None:
        authorize_object(ctx.db, actor, "support.read", lambda: project_of_support_app(ctx.db, app))
    projects = projects_allowed(ctx.db, actor, "support.read")
    query = (sa.select(SqlSupportConversation, SqlSupportApp.name)
             .join(SqlSupportApp, SqlSupportApp.id == SqlSupportConversation.app_id)
             .order_by(SqlSupportConversation.updated_at.desc(), SqlSupportConversation.id.desc())
             .limit(max(1, min(int(limit), 1000))))
    if app is not None:
        query = query.where(SqlSupportApp.name == app)
    if projects is not None:
        query = query.where(SqlSupportApp.project.in_(sorted(projects)))
    if states:
        query = query.where(SqlSupportConversation.state.in_(states))
    with ctx.db.session(readonly=True) as s:
        return _summaries(s, [(c, name) for c, name in s.execute(query).all()])


def handoff_queue(ctx: Context, *, actor: Actor, app: str | None = None, limit: int = 100) -> list[ConversationSummary]:
    """The conversations waiting for a person (handed over or taken), oldest hand-off first."""
    found = find_conversations(ctx, actor=actor, app=app, states=QUEUE_STATES, limit=limit)
    return sorted(found, key=lambda c: (c.handed_over_at or c.updated_at, c.id))


def _row(s: sa.orm.Session, conversation_id: int) -> tuple[SqlSupportConversation, SqlSupportApp]:
    found = s.execute(sa.select(SqlSupportConversation, SqlSupportApp)
                      .join(SqlSupportApp, SqlSupportApp.id == SqlSupportConversation.app_id)
                      .where(SqlSupportConversation.id == conversation_id)).first()
    if found is None:
        raise NotFound(f"There is no conversation {conversation_id}.",
                       hint="See the queue with 'chainkeeper apps support queue'.")
    return found[0], found[1]


def _project_of_conversation(ctx: Context, conversation_id: int) -> str:
    with ctx.db.session(readonly=True) as s:
        return _row(s, conversation_id)[1].project


def show_conversation(ctx: Context, conversation_id: int, *, actor: Actor) -> Conversation:
    """A conversation with its messages (redacted as stored).

    Raises:
        Forbidden: the actor may not read the assistant's conversations. NotFound: no such conversation.
    """
    authorize_object(ctx.db, actor, "support.read", lambda: _project_of_conversation(ctx, conversation_id))
    with ctx.db.session(readonly=True) as s:
        conv, app = _row(s, conversation_id)
        messages = s.scalars(sa.select(SqlSupportMessage).where(SqlSupportMessage.conversation_id == conv.id)
                             .order_by(SqlSupportMessage.id)).all()
        (summary,) = _summaries(s, [(conv, app.name)])
        return Conversation(summary=summary, messages=[_message_dict(m) for m in messages],
                            resolution=dict(conv.resolution) if conv.resolution else None,
                            exported_version_id=conv.exported_version_id)


def claim_conversation(ctx: Context, conversation_id: int, *, actor: Actor) -> ConversationSummary:
    """Take a handed-over conversation, so that no other agent answers it as well.

    Raises:
        Forbidden: the actor may not answer there. NotFound: no such conversation.
        Conflict: it is not waiting, or another agent has it.
    """
    authorize_object(ctx.db, actor, "support.answer", lambda: _project_of_conversation(ctx, conversation_id))
    with ctx.db.session() as s:
        conv, app = _row(s, conversation_id)
        if conv.state == "claimed" and conv.claimed_by != actor.name:
            raise Conflict(f"Conversation {conversation_id} is taken by {conv.claimed_by}.",
                           hint="Pick another one from the queue.")
        if conv.state not in QUEUE_STATES:
            raise Conflict(f"Conversation {conversation_id} is {conv.state}, not waiting for a person.")
        if conv.state != "claimed":
            conv.state, conv.claimed_by, conv.updated_at = "claimed", actor.name, utcnow()
            append_entry(s, actor, "support.claim", "support_conversation", conv.id, before={"state": "handed_over"},
                         after={"state": "claimed", "claimed_by": actor.name}, details={"app": app.name})
        s.flush()
        (summary,) = _summaries(s, [(conv, app.name)])
        return summary


def _labelled_message(s: sa.orm.Session, conversation_id: int) -> SqlSupportMessage:
    """The customer message the hand-off was about: the last one before the assistant handed over."""
    messages = s.scalars(sa.select(SqlSupportMessage).where(SqlSupportMessage.conversation_id == conversation_id)
                         .order_by(SqlSupportMessage.id)).all()
    handoff = next((m for m in messages if m.sender == "assistant" and m.decision == "handoff" and m.request_id),
                   None)
    customers = [m for m in messages if m.sender == "customer" and (handoff is None or m.id < handoff.id)]
    if not customers:
        raise Conflict(f"Conversation {conversation_id} has no customer message to label.")
    return customers[-1]


def resolve_conversation(ctx: Context, conversation_id: int, *, actor: Actor, intent: str, reply: str,
                         article_id: str | None = None, new_article: dict[str, str] | None = None,
                         ) -> ConversationSummary:
    """Answer a handed-over conversation and say what the customer wanted.

    Args:
        intent: one of the classifier's intents, or ``OUT_OF_SCOPE``.
        reply: the answer to the customer (stored redacted).
        article_id: the knowledge-base article the reply is based on, if any.
        new_article: ``{"title", "text"}`` of an article the knowledge base lacks, proposed.

    Raises:
        Forbidden: not allowed. NotFound: no such conversation, or an unknown article.
        Conflict: the conversation is not waiting, or another agent took it.
        InvalidInput: an unknown intent (the message lists them), an empty or too long
            reply, an incomplete article. Nothing is stored then.
    """
    authorize_object(ctx.db, actor, "support.answer", lambda: _project_of_conversation(ctx, conversation_id))
    if not isinstance(reply, str) or not reply.strip():
        raise InvalidInput("The reply is empty.", hint="Write the answer the customer gets.")
    if len(reply) > MAX_REPLY_CHARS:
        raise InvalidInput(f"The reply has {len(reply):,} characters; at most {MAX_REPLY_CHARS:,} are allowed.")
    with ctx.db.session(readonly=True) as s:
        conv, app_row = _row(s, conversation_id)
        app = get_support_app(ctx.db, app_row.name)
    labels = classifier_labels(ctx, get_deployment(ctx.db, app.deployment_id).model_version_id)
    if intent not in {*labels, OUT_OF_SCOPE}:
        raise InvalidInput(f"Unknown intent {intent!r}.",
                           hint=f"Intents: {', '.join(sorted(labels))}, or {OUT_OF_SCOPE} for none of them.")
    if article_id is not None:
        from chainkeeper.apps.support.index import open_knowledge_index  # FAISS loads only when needed

        index, _ = open_knowledge_index(ctx, app.knowledge_version_id)
        if article_id not in {a.article_id for a in index.articles}:
            raise NotFound(f"Knowledge-base version {app.knowledge_version_id} has no article {article_id!r}.")
    proposal = None
    if new_article is not None:
        title, text = str(new_article.get("title", "")).strip(), str(new_article.get("text", "")).strip()
        if not title or not text or len(title) > 300 or len(text) > MAX_REPLY_CHARS:
            raise InvalidInput("A new article needs a title (up to 300 characters) and a text.",
                               hint='Send "new_article": {"title": "...", "text": "..."}.')
        proposal = {"title": redact_text(title)[0], "text": redact_text(text)[0]}
    clean_reply, _ = redact_text(reply)
    with ctx.db.session() as s:
        conv, app_row = _row(s, conversation_id)
        if conv.state == "claimed" and conv.claimed_by != actor.name:
            raise Conflict(f"Conversation {conversation_id} is taken by {conv.claimed_by}.",
                           hint="Pick another one from the queue.")
        if conv.state not in QUEUE_STATES:
            raise Conflict(f"Conversation {conversation_id} is {conv.state}, not waiting for a person.")
        labelled = _labelled_message(s, conv.id)
        s.add(SqlSupportMessage(conversation_id=conv.id, sender="agent", text=clean_reply, intent=intent,
                                author=actor.name, knowledge_version_id=app.knowledge_version_id,
                                articles=[{"article_id": article_id}] if article_id else []))
        before = conv.state
        conv.state, conv.resolved_by, conv.resolved_at, conv.updated_at = "resolved", actor.name, utcnow(), utcnow()
        conv.claimed_by = conv.claimed_by or actor.name
        conv.resolved_intent, conv.labelled_message_id = intent, labelled.id
        conv.resolution = {"intent": intent, "article_id": article_id, "new_article": proposal,
                           "predicted": _predicted(s, conv.id)}
        s.flush()
        append_entry(s, actor, "support.resolve", "support_conversation", conv.id, before={"state": before},
                     after={"state": "resolved", "intent": intent, "article_id": article_id,
                            "new_article": proposal is not None}, details={"app": app_row.name})
        (summary,) = _summaries(s, [(conv, app_row.name)])
        return summary


def _predicted(s: sa.orm.Session, conversation_id: int) -> str | None:
    return s.scalar(sa.select(SqlSupportMessage.intent).where(SqlSupportMessage.conversation_id == conversation_id,
                                                            SqlSupportMessage.sender == "assistant",
                                                            SqlSupportMessage.intent.is_not(None))
                    .order_by(SqlSupportMessage.id.desc()).limit(1))


def _schema_id(ctx: Context, name: str, labels: list[str], actor: Actor) -> int:
    """The newest version of the assistant's label schema, defined again when its labels changed."""
    versions = list_schemas(ctx.db, name=name)
    newest = max(versions, key=lambda v: v.version) if versions else None
    if newest is not None and list(newest.label_names) == labels:
        return newest.id
    return define_schema(ctx.db, name=name, kind="single", labels=labels, actor=actor,
                         guidelines="The intent the customer had, as a support agent decided it; "
                         f"{OUT_OF_SCOPE}: none of the assistant's intents.").id


def export_resolutions(ctx: Context, app_name: str, *, actor: Actor) -> HandoffExport:
    """Turn the agents' answers not exported yet into labelled rows, for review and training.

    One source (kind ``support_handoff``: text = the customer's message as stored, label =
    the agent's intent, origin ``support:<app>/conversation/<id>#message<id>``, metadata
    naming the agent, the prediction and the assistant's intent), one draft version of
    dataset ``<app>-handoffs`` and one annotation project over it, its items pre-labelled
    with the agents' intents.

    Raises:
        Forbidden: the actor may not import data, create the version, or manage annotation.
        NotFound: no such assistant. Nothing is stored when a step is refused before the first write.
    """
    app = get_support_app(ctx.db, app_name)
    dataset = f"{app.name}-handoffs"
    authorize_object(ctx.db, actor, "support.read", lambda: app.project)
    authorize(ctx.db, actor, "data.import")
    authorize(ctx.db, actor, "dataset.create", project=dataset)
    authorize(ctx.db, actor, "annotation.manage")
    with ctx.db.session(readonly=True) as s:
        pending = s.execute(sa.select(SqlSupportConversation, SqlSupportMessage)
                            .join(SqlSupportMessage, SqlSupportMessage.id == SqlSupportConversation.labelled_message_id)
                            .where(SqlSupportConversation.app_id == app.id,
                                   SqlSupportConversation.state == "resolved",
                                   SqlSupportConversation.exported_version_id.is_(None))
                            .order_by(SqlSupportConversation.id)).all()
        s.expunge_all()
    if not pending:
        return HandoffExport(app=app.name, rows=0, source_id=None, dataset_version_id=None,
                             annotation_project_id=None, conversations=[])
    records = [Record(text=m.text, label=c.resolved_intent, line=i + 1,
                      origin=f"support:{app.name}/conversation/{c.id}#message{m.id}",
                      meta={"conversation": c.id, "agent": c.resolved_by or "",
                            "assistant_intent": (c.resolution or {}).get("predicted") or "",
                            "handoff_reason": c.handoff_reason or ""})
               for i, (c, m) in enumerate(pending)]
    digest = hashlib.sha256("\n".join(f"{r.origin}\t{r.text}\t{r.label}" for r in records).encode()).hexdigest()
    source = store_records(ctx, ParsedSource(format="rows", encoding="utf-8", records=records),
                           uri=f"chainkeeper:support/{app.name}/handoffs?through={pending[-1][0].id}", sha256=digest,
                           actor=actor, kind="support_handoff", split="train")
    version = create_dataset_version(ctx, name=dataset, source_ids=[source.id], actor=actor)
    labels = sorted({*classifier_labels(ctx, get_deployment(ctx.db, app.deployment_id).model_version_id), OUT_OF_SCOPE})
    schema_id = _schema_id(ctx, f"{app.name}-intents", labels, actor)
    project = create_project(ctx, name=f"{dataset}-v{version.version}", dataset_version_id=version.id,
                             schema_id=schema_id, actor=actor)
    rows = read_dataset_rows(ctx, version.id)  # cleaning may have dropped a duplicate; each row keeps its label
    prelabels = {row_id: label for row_id, label in
                 zip(rows.column("row_id").to_pylist(), rows.column("label").to_pylist(), strict=True) if label}
    attach_prelabels(ctx, project.id, prelabels, source="support_agent", actor=actor)
    ids = [c.id for c, _ in pending]
    with ctx.db.session() as s:
        for conv in s.scalars(sa.select(SqlSupportConversation).where(SqlSupportConversation.id.in_(ids))):
            conv.exported_version_id = version.id
        append_entry(s, actor, "support.export", "support_app", app.id,
                     after={"source_id": source.id, "dataset_version_id": version.id,
                            "annotation_project_id": project.id}, details={"conversations": ids})
    return HandoffExport(app=app.name, rows=len(records), source_id=source.id, dataset_version_id=version.id,
                         annotation_project_id=project.id, conversations=ids)


def trace_message(ctx: Context, message_id: int, *, actor: Actor) -> LineageNode:
    """An assistant's answer back to the model, the data and the people behind it.

    The node's children: the prediction's lineage (deployment, model version and its
    promotion, run, dataset version, rows, annotators, approvers) and the knowledge-base
    version's (its source file and its release's approver); an agent's answer names the agent.

    Raises:
        Forbidden: the actor may not read the assistant's conversations or lineage there.
        NotFound: no such message.
    """
    with ctx.db.session(readonly=True) as s:
        message = s.get(SqlSupportMessage, message_id)
        if message is None:
            raise NotFound(f"There is no support message {message_id}.")
        conversation_id = message.conversation_id
        s.expunge(message)
    authorize_object(ctx.db, actor, "support.read", lambda: _project_of_conversation(ctx, conversation_id))
    label = (f"{message.sender} message {message.id}: {message.decision or 'reply'}"
             f"{f' ({message.intent}, {message.confidence:.2f})' if message.confidence is not None else ''}")
    node = LineageNode("support_message", str(message.id), label,
                       {"conversation": conversation_id, "sender": message.sender, "author": message.author,
                        "decision": message.decision, "intent": message.intent,
                        "articles": list(message.articles or []), "at": message.at.isoformat()})
    if message.request_id:
        node.children.append(lineage_of(ctx, "prediction", message.request_id, actor=actor))
    if message.knowledge_version_id:
        node.children.append(lineage_of(ctx, "dataset_version", str(message.knowledge_version_id), actor=actor))
    return node
