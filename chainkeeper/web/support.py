"""The support assistant's pages (issue 16): assistants, conversations, the hand-off queue.

- ``/apps/support`` (``support.read``): the assistants the visitor may read, each with its
  deployment and the model version(s) answering, its knowledge-base version, owner, the
  out-of-scope threshold fitted per model version, where its recent conversations stand
  (the assistant's last decision: answer, clarify or hand-off) and its queue length;
- ``/apps/support/{name}``: one assistant and its recent conversations;
- ``/support/queue``: the conversations waiting for a person, oldest hand-off first; the
  live part refreshes itself with htmx (``/fragments/support/queue``). A support agent
  (``support.answer``) takes one from there;
- ``/support/conversations/{id}``: the messages (the assistant's with its intent,
  confidence, scope score and articles) and, for the agent who may answer it, the answer
  form: the intent the customer had (the classifier's intents or ``OUT_OF_SCOPE``), the
  article sent, the reply, optionally a new article. A refused answer is shown on the page
  with its reason and what was typed; nothing changed.

Every text is shown as stored (redacted by the services) and escaped by Jinja.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from chainkeeper.api.auth import require
from chainkeeper.api.deps import Id
from chainkeeper.apps.support import (
    OUT_OF_SCOPE,
    SupportApp,
    claim_conversation,
    find_conversations,
    find_support_apps,
    handoff_queue,
    resolve_conversation,
    show_conversation,
    show_support_app,
)
from chainkeeper.apps.support.assistants import FALLBACK_CONFIDENCE, classifier_labels
from chainkeeper.apps.support.handoff import MAX_REPLY_CHARS, QUEUE_STATES, Conversation, ConversationSummary
from chainkeeper.apps.support.index import IndexedArticle, open_knowledge_index
from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import ChainkeeperError
from chainkeeper.data import get_dataset_version
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.permissions import is_allowed, is_allowed_somewhere
from chainkeeper.registry import get_model_version
from chainkeeper.serving import RouteMode, current_route, get_deployment
from chainkeeper.web.pages import error_page, templates

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["AssistantView", "ConversationView", "ThresholdRow", "assistant_view", "conversation_view", "router"]

router = APIRouter(include_in_schema=False)
# How often the queue's live part asks for a fresh copy of itself.
REFRESH_S = 5
# Conversations whose standing the assistants' list sums up, and that an assistant's page lists.
RECENT_ON_LIST = 20
RECENT_ON_PAGE = 50
DECISIONS = ("answer", "clarify", "handoff")




@dataclass(frozen=True)
class ThresholdRow:
    """The out-of-scope rule of one model version of an assistant."""

    model_version_id: int
    label: str
    answering: str  # "primary", "canary 10 %", "shadow", or "" (fitted for a version no longer routed)
    method: str | None  # None: not fitted, the fallback confidence applies
    threshold: float | None
    dev_accuracy: float | None
    dev_accuracy_loss: float | None


@dataclass(frozen=True)
class AssistantView:
    """One assistant as the pages show it."""

    app: SupportApp
    knowledge: str
    thresholds: list[ThresholdRow]
    queue: int
    decisions: dict[str, int]  # answer/clarify/handoff -> conversations whose last decision it was
    conversations: list[ConversationSummary]


@dataclass(frozen=True)
class ConversationView:
    """A conversation and what an agent needs to answer it."""

    conversation: Conversation
    app: SupportApp
    articles: dict[str, IndexedArticle]
    versions: dict[int, str]  # model version id -> label, of the assistant's messages
    may_answer: bool
    intents: list[str] = field(default_factory=list)
    predicted: str | None = None


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def _thresholds(ctx: Context, app: SupportApp) -> list[ThresholdRow]:
    """The versions on the assistant's route, then any others it has a fitted threshold for."""
    route = current_route(ctx.db, app.deployment)
    answering: dict[int, str] = {route.primary_version_id: "primary"}
    if route.candidate_version_id:
        answering[route.candidate_version_id] = (f"canary {route.percent} %" if route.mode == RouteMode.CANARY
                                                 else str(route.mode.value))
    ids = list(dict.fromkeys([*answering, *(int(k) for k in app.scope)]))
    rows = []
    for version_id in ids:
        fitted: dict[str, Any] = app.scope.get(str(version_id)) or {}
        rows.append(ThresholdRow(model_version_id=version_id, label=get_model_version(ctx.db, version_id).label,
                                 answering=answering.get(version_id, ""), method=fitted.get("scorer"),
                                 threshold=fitted.get("threshold"), dev_accuracy=fitted.get("dev_accuracy"),
                                 dev_accuracy_loss=fitted.get("dev_accuracy_loss")))
    return rows


def assistant_view(ctx: Context, app: SupportApp, actor: Actor, *, recent: int) -> AssistantView:
    """What the pages show of ``app`` (read by ``actor``, who may read it), over its
    ``recent`` most recently active conversations."""
    conversations = find_conversations(ctx, actor=actor, app=app.name, limit=recent)
    counted = Counter(c.last_decision for c in conversations if c.last_decision)
    kb = get_dataset_version(ctx.db, app.knowledge_version_id)
    return AssistantView(app=app, knowledge=f"{kb.name} v{kb.version}", thresholds=_thresholds(ctx, app),
                         queue=len(handoff_queue(ctx, actor=actor, app=app.name)),
                         decisions={d: counted.get(d, 0) for d in DECISIONS}, conversations=conversations)


def conversation_view(ctx: Context, conversation_id: int, actor: Actor) -> ConversationView:
    """A conversation (``support.read``) and, when ``actor`` may answer it now, the intents
    and articles the answer form offers."""
    conversation = show_conversation(ctx, conversation_id, actor=actor)
    summary = conversation.summary
    app = show_support_app(ctx, summary.app, actor=actor)
    may_answer = (is_allowed(ctx.db, actor, "support.answer", project=app.project)
                  and summary.state in QUEUE_STATES and summary.claimed_by in (None, actor.name))
    shown = any(m["articles"] for m in conversation.messages) or conversation.resolution is not None
    articles: dict[str, IndexedArticle] = {}
    if may_answer or shown:
        index, _ = open_knowledge_index(ctx, app.knowledge_version_id)
        articles = {a.article_id: a for a in index.articles}
    versions = {i: get_model_version(ctx.db, i).label
                for i in dict.fromkeys(m["model_version_id"] for m in conversation.messages if m["model_version_id"])}
    if not may_answer:
        return ConversationView(conversation=conversation, app=app, articles=articles, versions=versions,
                                may_answer=False)
    labels = classifier_labels(ctx, get_deployment(ctx.db, app.deployment_id).model_version_id)
    predicted = next((m["intent"] for m in reversed(conversation.messages)
                      if m["sender"] == "assistant" and m["intent"]), None)
    return ConversationView(conversation=conversation, app=app, articles=articles, versions=versions, may_answer=True,
                            intents=[*labels, OUT_OF_SCOPE], predicted=predicted)


# --- assistants ----------------------------------------------------------------------------


@router.get("/apps/support", response_class=HTMLResponse, name="support_apps")
def assistants_page(request: Request, actor: Actor = require("support.read")) -> HTMLResponse:
    """The assistants the visitor may read, each summed up."""
    ctx = _ctx(request)
    try:
        views = [assistant_view(ctx, app, actor, recent=RECENT_ON_LIST) for app in find_support_apps(ctx, actor=actor)]
    except ChainkeeperError as exc:
        return error_page(request, exc)
    return templates.TemplateResponse(request, "support_apps.html", {
        "views": views, "actor": actor, "recent": RECENT_ON_LIST, "fallback": FALLBACK_CONFIDENCE, "now": utcnow()})


@router.get("/apps/support/{name}", response_class=HTMLResponse, name="support_app")
def assistant_page(name: str, request: Request, actor: Actor = require("support.read")) -> HTMLResponse:
    """One assistant and its recent conversations."""
    ctx = _ctx(request)
    try:
        view = assistant_view(ctx, show_support_app(ctx, name, actor=actor), actor, recent=RECENT_ON_PAGE)
    except ChainkeeperError as exc:
        return error_page(request, exc)
    return templates.TemplateResponse(request, "support_app.html", {
        "view": view, "actor": actor, "recent": RECENT_ON_PAGE, "fallback": FALLBACK_CONFIDENCE, "now": utcnow()})


# --- the hand-off queue --------------------------------------------------------------------


def _queue_page(request: Request, actor: Actor, *, fragment: bool = False, error: ChainkeeperError | None = None,
                status: int = 200) -> HTMLResponse:
    ctx = _ctx(request)
    try:
        waiting = handoff_queue(ctx, actor=actor)
    except ChainkeeperError as exc:
        return error_page(request, exc, fragment=fragment)
    context = {"waiting": waiting, "actor": actor, "error": error, "refresh_s": REFRESH_S, "now": utcnow(),
               "may_answer": is_allowed_somewhere(ctx.db, actor, "support.answer")}
    name = "support_queue_live.html" if fragment else "support_queue.html"
    return templates.TemplateResponse(request, name, context, status_code=status)


@router.get("/support/queue", response_class=HTMLResponse, name="support_queue")
def queue_page(request: Request, actor: Actor = require("support.read")) -> HTMLResponse:
    """The conversations waiting for a person, oldest hand-off first."""
    return _queue_page(request, actor)


@router.get("/fragments/support/queue", response_class=HTMLResponse, name="support_queue_fragment")
def queue_fragment(request: Request, actor: Actor = require("support.read")) -> HTMLResponse:
    """The queue's table alone, swapped in every ``REFRESH_S``."""
    return _queue_page(request, actor, fragment=True)


@router.post("/support/conversations/{conversation_id}/take", name="support_take")
def take_submit(conversation_id: Id, request: Request, actor: Actor = require("support.answer")) -> Response:
    """Take a conversation from the queue, then open it; a refusal is shown on the queue."""
    try:
        claim_conversation(_ctx(request), conversation_id, actor=actor)
    except ChainkeeperError as exc:
        return _queue_page(request, actor, error=exc, status=exc.status)
    return RedirectResponse(f"/support/conversations/{conversation_id}", status_code=303)


# --- one conversation ----------------------------------------------------------------------


def _conversation_page(request: Request, conversation_id: int, actor: Actor, *,
                       error: ChainkeeperError | None = None, status: int = 200,
                       form: dict[str, str] | None = None) -> HTMLResponse:
    """The conversation page; ``error`` and ``form`` show a refused answer with what was sent."""
    try:
        view = conversation_view(_ctx(request), conversation_id, actor)
    except ChainkeeperError as exc:
        # A refused answer is the answer even when the page cannot be shown (a made-up id).
        return error_page(request, error or exc)
    defaults = {"intent": view.predicted or "", "article_id": "", "reply": "", "new_title": "", "new_text": ""}
    return templates.TemplateResponse(request, "support_conversation.html", {
        "view": view, "c": view.conversation.summary, "actor": actor, "error": error,
        "form": {**defaults, **(form or {})}, "max_reply": MAX_REPLY_CHARS, "out_of_scope": OUT_OF_SCOPE},
        status_code=status)


@router.get("/support/conversations/{conversation_id}", response_class=HTMLResponse, name="support_conversation")
def conversation_page(conversation_id: Id, request: Request, actor: Actor = require("support.read")) -> HTMLResponse:
    """A conversation's messages and, for the agent who may answer it, the answer form."""
    return _conversation_page(request, conversation_id, actor)


@router.post("/support/conversations/{conversation_id}/answer", name="support_answer")
def answer_submit(conversation_id: Id, request: Request, intent: str = Form(""), reply: str = Form(""),
                  article_id: str = Form(""), new_title: str = Form(""), new_text: str = Form(""),
                  actor: Actor = require("support.answer")) -> Response:
    """Answer a handed-over conversation (``handoff.resolve_conversation``), then show it again."""
    form = {"intent": intent, "article_id": article_id, "reply": reply, "new_title": new_title, "new_text": new_text}
    # Either field filled proposes an article: the service refuses one without both.
    new_article = {"title": new_title, "text": new_text} if new_title.strip() or new_text.strip() else None
    try:
        resolve_conversation(_ctx(request), conversation_id, actor=actor, intent=intent.strip()[:200], reply=reply,
                             article_id=article_id.strip()[:200] or None, new_article=new_article)
    except ChainkeeperError as exc:
        return _conversation_page(request, conversation_id, actor, error=exc, status=exc.status, form=form)
    return RedirectResponse(f"/support/conversations/{conversation_id}", status_code=303)
