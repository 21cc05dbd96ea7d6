"""The support assistant's routes (issue 16): messages, assistants, the hand-off queue.

Thin: parse, call ``chainkeeper.apps.support``, answer; the services decide who may, in the
assistant's project (its deployment's), and write the audit ledger.

- ``POST /v1/apps/{name}/messages``: a customer's message. The caller is an API key of the
  assistant's deployment with the ``predict`` scope (``X-API-Key: ckd_...`` or
  ``Authorization: Bearer ckd_...``, rate-limited like the predict route, by the same
  limiter), or a signed-in user allowed ``predict`` there. Its dependency carries the
  ``predict`` marker, so ``route_decisions`` and the body-limit middleware see it: the
  caller is admitted, and the body bounded, before a byte of it is read. The message runs
  on a worker thread (model, index, store) and its prediction goes to the server's
  prediction log like the predict route's.
- ``/api/apps/support``: the assistants (``support.read`` reads, ``app.manage`` creates,
  changes and calibrates; a data steward exports the agents' answers as labelled rows).
- ``/api/support``: the hand-off queue, conversations, an agent's claim and answer
  (``support.answer``), and the lineage of one message.

Customers name a conversation by its public uuid (``conversation_id``); staff by its numeric id.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from chainkeeper.api.auth import api_key_of, authenticate, request_id_of, require
from chainkeeper.api.body_limits import body_limit
from chainkeeper.api.deps import Id, get_ctx
from chainkeeper.api.routers.serving import rate_limiter, serving_state
from chainkeeper.apps import support as assistants
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.permissions import projects_allowed
from chainkeeper.serving import DeploymentKey

router = APIRouter(tags=["support"])

MESSAGES_PATH = "/v1/apps/{name}/messages"
_APPS = "/api/apps/support"
_CONVERSATION = "/api/support/conversations/{conversation_id}"
# A message is at most a few thousand characters (``conversations.MAX_MESSAGE_CHARS``), which
# JSON-escaped (\uXXXX per character at worst, 12 bytes for one outside the BMP) stays well
# under this; a larger body is refused before it is read.
MESSAGE_BODY_BYTES = 32 * 1024
_MESSAGE_LIMIT = body_limit(MESSAGE_BODY_BYTES, hint="Send one message of a few sentences (at most 2,000 "
                            "characters) per request.")
# Staff bodies: a few names and numbers, or an agent's reply and an article.
STAFF_BODY_BYTES = 64 * 1024
_STAFF_LIMIT = body_limit(STAFF_BODY_BYTES, hint="Send only the fields the route takes: a reply and an article "
                          "are a few thousand characters each.")
ConversationState = Literal["open", "handed_over", "claimed", "resolved"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MessageBody(_Body):
    text: str = Field(description="The customer's message: a few sentences, at most 2,000 characters.")
    conversation_id: str | None = Field(None, max_length=64,
                                        description="The conversation to continue, as an earlier answer named it; "
                                        "leave it out to start one.")


class AssistantBody(_Body):
    name: str = Field(min_length=1, max_length=64, description="Lower-case letters, digits, '-' or '_'.")
    deployment: str = Field(min_length=1, max_length=128,
                            description="The active deployment of an intent classifier.")
    knowledge_version_id: Id = Field(description="A released knowledge-base version (a dataset version).")
    owner: str | None = Field(None, min_length=1, max_length=128, description="Who answers for it (default: you).")
    settings: dict[str, int | float] | None = Field(
        None, description="Overrides of top_k, clarify_margin, min_article_score, max_clarifications.")


class AssistantChangeBody(_Body):
    deployment: str | None = Field(None, min_length=1, max_length=128,
                                   description="Another active classifier deployment of the same project.")
    knowledge_version_id: Id | None = Field(None, description="Another released knowledge-base version.")
    settings: dict[str, int | float] | None = Field(
        None, description="Overrides of top_k, clarify_margin, min_article_score, max_clarifications.")


class NewArticleBody(_Body):
    title: str = Field(min_length=1, max_length=300)
    text: str = Field(min_length=1, max_length=4000)


class ResolveBody(_Body):
    intent: str = Field(min_length=1, max_length=128,
                        description="What the customer wanted: one of the classifier's intents, or out_of_scope.")
    reply: str = Field(description="The answer the customer gets (stored redacted), at most 4,000 characters.")
    article_id: str | None = Field(None, min_length=1, max_length=128,
                                   description="The knowledge-base article the reply is based on.")
    new_article: NewArticleBody | None = Field(None, description="An article the knowledge base lacks, proposed.")


# --- messages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Caller:
    """Who sends a message: a user, or the actor of an API key of the assistant's deployment."""

    actor: Actor
    key: DeploymentKey | None


def _user(request: Request) -> Actor:
    """A signed-in caller who may send requests to a deployed model somewhere (the service
    decides in the assistant's project)."""
    actor = authenticate(request)
    projects_allowed(get_ctx(request).db, actor, "predict")
    return actor


async def _admit(request: Request) -> _Caller:
    secret = api_key_of(request)
    if secret is None:
        return _Caller(await run_in_threadpool(_user, request), None)
    ctx, name = get_ctx(request), request.path_params.get("name", "")
    key = await run_in_threadpool(assistants.authenticate_app_key, ctx, name, secret)
    rate_limiter(request).check(key.id, key.rate_per_s, key.burst)
    return _Caller(Actor(f"apikey:{key.id}:{key.name}", frozenset(), request_id=request_id_of(request)), key)


def message_caller() -> Any:
    """The messages route's decision: a user allowed ``predict``, or an API key of the assistant's deployment.

    The body-limit middleware runs it before reading the body, then the route once more:
    the first answer is kept on the request, so a key's request is counted once.
    """

    async def dependency(request: Request) -> _Caller:
        caller = getattr(request.state, "support_caller", None)
        if not isinstance(caller, _Caller):
            caller = await _admit(request)
            request.state.support_caller = caller
            request.state.actor = caller.actor
        return caller

    dependency.chainkeeper_action = "predict"  # type: ignore[attr-defined]
    return Depends(dependency)


@router.post(MESSAGES_PATH, dependencies=[_MESSAGE_LIMIT], summary="Send a customer's message to a support assistant")
async def send_message(name: str, body: MessageBody, request: Request,
                       caller: _Caller = message_caller()) -> dict[str, Any]:
    """The assistant's answer: the intent and its confidence, the out-of-scope score, the
    articles of that intent, and the decision (``answer``, ``clarify`` or ``handoff``).
    A handed-over conversation's next messages wait for a person (``state``)."""
    ctx, app = get_ctx(request), request.app
    reply = await run_in_threadpool(
        lambda: assistants.handle_message(ctx, app.state.predictors, name, body.text, actor=caller.actor,
                                          key=caller.key, conversation_id=body.conversation_id,
                                          log=serving_state(app).log))
    return reply.to_dict()


# --- assistants --------------------------------------------------------------------------


def _assistant(app: assistants.SupportApp) -> dict[str, Any]:
    return asdict(app)


@router.get(_APPS, summary="List support assistants")
def list_assistants(request: Request, actor: Actor = require("support.read")) -> list[dict[str, Any]]:
    """The assistants in the projects where the caller may read conversations, by name."""
    return [_assistant(a) for a in assistants.find_support_apps(get_ctx(request), actor=actor)]


@router.post(_APPS, status_code=201, dependencies=[_STAFF_LIMIT], summary="Create a support assistant")
def create_assistant(body: AssistantBody, request: Request, actor: Actor = require("app.manage")) -> dict[str, Any]:
    """Register an assistant over a classifier's deployment and a released knowledge base; its
    knowledge index is built and its out-of-scope threshold fitted (seconds)."""
    return _assistant(assistants.create_support_app(
        get_ctx(request), request.app.state.predictors, name=body.name, deployment=body.deployment,
        knowledge_version_id=body.knowledge_version_id, actor=actor, owner=body.owner, settings=body.settings))


@router.get(_APPS + "/{name}", summary="One support assistant")
def get_assistant(name: str, request: Request, actor: Actor = require("support.read")) -> dict[str, Any]:
    """The assistant: its deployment, knowledge-base version, settings and fitted thresholds."""
    return _assistant(assistants.show_support_app(get_ctx(request), name, actor=actor))


@router.patch(_APPS + "/{name}", dependencies=[_STAFF_LIMIT], summary="Change a support assistant")
def change_assistant(name: str, body: AssistantChangeBody, request: Request,
                     actor: Actor = require("app.manage")) -> dict[str, Any]:
    """Point the assistant at another deployment or released knowledge base, or change its settings."""
    return _assistant(assistants.change_support_app(
        get_ctx(request), request.app.state.predictors, name, actor=actor, deployment=body.deployment,
        knowledge_version_id=body.knowledge_version_id, settings=body.settings))


@router.post(_APPS + "/{name}/calibrate", summary="Fit a support assistant's out-of-scope threshold again")
def calibrate_assistant(name: str, request: Request, actor: Actor = require("app.manage")) -> dict[str, Any]:
    """Fit the threshold of every model version on the deployment's route on its dev split;
    ``scope`` maps each version id to the fitted threshold."""
    fitted = assistants.calibrate_support_app(get_ctx(request), request.app.state.predictors, name, actor=actor)
    return {"app": name, "scope": fitted}


@router.get(_APPS + "/{name}/conversations", summary="A support assistant's conversations")
def list_conversations(name: str, request: Request, state: ConversationState | None = None,
                       limit: int = Query(100, ge=1, le=1000),
                       actor: Actor = require("support.read")) -> list[dict[str, Any]]:
    """Its conversations, most recently active first, optionally in one state."""
    found = assistants.find_conversations(get_ctx(request), actor=actor, app=name,
                                          states=(state,) if state else None, limit=limit)
    return [c.to_dict() for c in found]


@router.post(_APPS + "/{name}/export", summary="Turn agents' answers into labelled rows")
def export_answers(name: str, request: Request, actor: Actor = require("data.import")) -> dict[str, Any]:
    """The resolved conversations not exported yet become a source, a draft version of
    dataset ``<name>-handoffs`` and an annotation project pre-labelled with the agents'
    intents (``rows`` 0 and null ids: nothing to export)."""
    return assistants.export_resolutions(get_ctx(request), name, actor=actor).to_dict()


# --- the hand-off queue ----------------------------------------------------------------------


@router.get("/api/support/queue", summary="Conversations waiting for a person")
def queue(request: Request, app: str | None = Query(None, min_length=1, max_length=64),
          limit: int = Query(100, ge=1, le=1000), actor: Actor = require("support.read")) -> list[dict[str, Any]]:
    """Handed-over and taken conversations, oldest hand-off first (of one assistant, with ``app``)."""
    return [c.to_dict() for c in assistants.handoff_queue(get_ctx(request), actor=actor, app=app, limit=limit)]


@router.get(_CONVERSATION, summary="One conversation with its messages")
def get_conversation(conversation_id: Id, request: Request, actor: Actor = require("support.read")) -> dict[str, Any]:
    """The conversation, its messages (redacted as stored) and the agent's resolution."""
    return assistants.show_conversation(get_ctx(request), conversation_id, actor=actor).to_dict()


@router.post(_CONVERSATION + "/claim", summary="Take a handed-over conversation")
def claim(conversation_id: Id, request: Request, actor: Actor = require("support.answer")) -> dict[str, Any]:
    """Take the conversation, so that no other agent answers it as well."""
    return assistants.claim_conversation(get_ctx(request), conversation_id, actor=actor).to_dict()


@router.post(_CONVERSATION + "/resolve", dependencies=[_STAFF_LIMIT], summary="Answer a handed-over conversation")
def resolve(conversation_id: Id, body: ResolveBody, request: Request,
            actor: Actor = require("support.answer")) -> dict[str, Any]:
    """Answer the customer and say what they wanted; an unknown intent is a 422 listing the intents."""
    return assistants.resolve_conversation(
        get_ctx(request), conversation_id, actor=actor, intent=body.intent, reply=body.reply,
        article_id=body.article_id, new_article=body.new_article.model_dump() if body.new_article else None,
    ).to_dict()


@router.get("/api/support/messages/{message_id}/lineage", summary="Where one answer came from")
def message_lineage(message_id: Id, request: Request, actor: Actor = require("support.read")) -> dict[str, Any]:
    """The message back to the deployment, model version, run, data and approvers, and the
    knowledge-base version with its release's approver."""
    return assistants.trace_message(get_ctx(request), message_id, actor=actor).to_dict()
