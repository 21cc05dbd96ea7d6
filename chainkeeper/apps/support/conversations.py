"""One message to a support assistant: intent, scope, articles, and the decision.

``handle_message`` is the whole path of ``POST /v1/apps/{name}/messages``:

1. the message goes to the assistant's deployment like any prediction (``serving``:
   canary routing, the prediction log with its request id, the lineage behind it);
2. the answering version's fitted threshold says whether the message is out of scope
   (energy or 1 − confidence, ``assistants.calibrate_support_app``);
3. the knowledge base's index (hybrid dense + lexical search) finds the articles, of
   which only the predicted intent's may answer — a message is never answered with
   another intent's article;
4. the decision: **hand over** (out of scope, the customer asks for a person, or still
   unsure after ``max_clarifications``), **clarify** (two intents nearly tie, or the
   intent has no article that fits), else **answer** with the intent's best articles.

Both messages are stored with personal data redacted (``data.redact_text``), the
assistant's tied to the deployment, model version, knowledge-base version and prediction
that produced it. A hand-off is in the ledger; the conversation then waits in the queue of
``handoff.py`` and the customer's next messages wait with it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from chainkeeper.apps.support.assistants import FALLBACK_CONFIDENCE, SupportApp, get_support_app
from chainkeeper.apps.support.index import MAX_K, KnowledgeHit, open_knowledge_index
from chainkeeper.apps.support.tables import SqlSupportConversation, SqlSupportMessage
from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from chainkeeper.data import redact_text, text_language
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.permissions import authorize
from chainkeeper.serving import DeploymentKey, authenticate_deployment_key, serve_predictions

if TYPE_CHECKING:
    from chainkeeper.core.context import Context
    from chainkeeper.serving import PredictionSink, PredictorCache, ServedPredictions

__all__ = ["MAX_MESSAGE_CHARS", "SupportReply", "handle_message", "authenticate_app_key", "wants_a_person"]

# A customer message is a few sentences; longer input is refused, not cut.
MAX_MESSAGE_CHARS = 2000
_PERSON = re.compile(r"\b(human|real person|a person|an agent|live agent|representative|speak to someone)\b"
                     r"|人工|真人|转接客服|人工客服", re.IGNORECASE)
REPLIES = {
    "en": {"clarify": "Do you mean {options}? Please tell me a little more.",
           "handoff": "I am passing you to a colleague, who will answer here shortly.",
           "waiting": "A colleague has your conversation and will answer here shortly."},
    "zh": {"clarify": "请问您是指{options}？请再多说一点。",
           "handoff": "我将为您转接人工客服，请稍候，同事会在这里回复您。",
           "waiting": "人工客服已经接手您的对话，会尽快在这里回复您。"},
}


@dataclass(frozen=True)
class SupportReply:
    """What the assistant answers to one message."""

    conversation_id: str
    message_id: int
    decision: str  # answer | clarify | handoff
    reply: str
    intent: str | None
    confidence: float | None
    alternatives: dict[str, float]
    out_of_scope: bool
    scope: dict[str, Any]
    articles: list[dict[str, Any]]
    request_id: str | None
    deployment: str
    model_version: dict[str, Any] | None
    knowledge_version_id: int
    language: str
    handoff_reason: str | None = None
    state: str = "open"
    caveats: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def wants_a_person(text: str) -> bool:
    """Whether a message asks for a person (English and Chinese phrasings)."""
    return _PERSON.search(text) is not None


def check_message(text: Any) -> str:
    """The message, if it can be answered.

    Raises:
        InvalidInput: not a string, blank, or over ``MAX_MESSAGE_CHARS``.
    """
    if not isinstance(text, str):
        raise InvalidInput(f"The message is a {type(text).__name__}, not a string.",
                           hint='Send {"text": "...", "conversation_id": "..."} with the message as a string.')
    if not text.strip():
        raise InvalidInput("The message is empty.", hint="Send at least one visible character.")
    if len(text) > MAX_MESSAGE_CHARS:
        raise InvalidInput(f"The message has {len(text):,} characters; at most {MAX_MESSAGE_CHARS:,} are allowed.",
                           hint="Send a shorter message: one question at a time.")
    return text


def authenticate_app_key(ctx: Context, app_name: str, secret: str) -> DeploymentKey:
    """The API key of a caller, if it may send messages to the assistant: a key of the
    assistant's deployment with the ``predict`` scope.

    Raises:
        NotFound: no such assistant. Unauthorized, Forbidden: as ``authenticate_deployment_key``.
    """
    app = get_support_app(ctx.db, app_name)
    return authenticate_deployment_key(ctx, secret, deployment=app.deployment, scope="predict")


def _authorize(ctx: Context, app: SupportApp, actor: Actor, key: DeploymentKey | None) -> str:
    """Who the conversation belongs to; refuses a caller who may not send messages."""
    if key is not None:
        if key.deployment != app.deployment:
            raise Forbidden(f"This API key belongs to deployment {key.deployment!r}, not to assistant "
                            f"{app.name!r}'s ({app.deployment!r}).", hint="Use a key of the assistant's deployment.")
        return f"apikey:{key.id}"
    authorize(ctx.db, actor, "predict", project=app.project)
    return actor.name


def _conversation(s: sa.orm.Session, app: SupportApp, public_id: str | None, caller: str) -> SqlSupportConversation:
    if public_id is None:
        row = SqlSupportConversation(public_id=str(uuid.uuid4()), app_id=app.id, caller=caller, state="open",
                                     clarifications=0)
        s.add(row)
        s.flush()
        return row
    found = s.scalar(sa.select(SqlSupportConversation).where(SqlSupportConversation.public_id == str(public_id)))
    # Another caller's conversation is as unknown as a made-up one: nothing about it is told.
    if found is None or found.app_id != app.id or found.caller != caller:
        raise NotFound(f"Assistant {app.name!r} has no conversation {str(public_id)[:64]!r} of yours.",
                       hint="Leave conversation_id out to start a new conversation.")
    return found


def _scope(app: SupportApp, version_id: int, prediction: Any) -> dict[str, Any]:
    fitted = app.scope.get(str(version_id))
    partition = prediction.log_partition
    if fitted is not None and (fitted["scorer"] != "energy" or partition is not None):
        score = -float(partition) if partition is not None and fitted["scorer"] == "energy" \
            else 1.0 - float(prediction.score)
        return {"method": fitted["scorer"], "score": round(score, 6), "threshold": fitted["threshold"], "fitted": True,
                "out_of_scope": score > fitted["threshold"]}
    score = 1.0 - float(prediction.score)
    return {"method": "msp", "score": round(score, 6), "threshold": 1.0 - FALLBACK_CONFIDENCE, "fitted": False,
            "out_of_scope": score > 1.0 - FALLBACK_CONFIDENCE}


def _articles(ctx: Context, app: SupportApp, text: str) -> list[KnowledgeHit]:
    """The best matching articles of the knowledge base, any intent."""
    index, encoder = open_knowledge_index(ctx, app.knowledge_version_id)
    return index.search_texts([text], encoder.encode([text]), MAX_K, unknown_shares=[encoder.unknown_share([text])])[0]


def _of_intent(hits: list[KnowledgeHit], intent: str, language: str) -> list[KnowledgeHit]:
    """The intent's articles among ``hits``, the message's language first: only these may answer."""
    return sorted((h for h in hits if h.intent == intent), key=lambda h: (h.language != language, -h.score))


def _decide(app: SupportApp, text: str, language: str, prediction: Any, scope: dict[str, Any],
            articles: list[KnowledgeHit], clarifications: int) -> tuple[str, str | None]:
    if wants_a_person(text):
        return "handoff", "the customer asked for a person"
    if scope["out_of_scope"]:
        return "handoff", f"out of scope ({scope['method']} {scope['score']:.3g} > {scope['threshold']:.3g})"
    ranked = sorted(prediction.scores.values(), reverse=True)
    margin = ranked[0] - ranked[1] if len(ranked) > 1 else 1.0
    unsure = margin < float(app.setting("clarify_margin"))
    floor = float(app.setting("min_article_score_zh" if language == "zh" else "min_article_score"))
    no_article = not articles or articles[0].score < floor
    if unsure or no_article:
        if clarifications >= int(app.setting("max_clarifications")):
            return "handoff", "still unsure after clarifying" if unsure else "no article answers it"
        return "clarify", None
    return "answer", None


def _reply_text(decision: str, language: str, prediction: Any, hits: list[KnowledgeHit]) -> str:
    words = REPLIES["zh" if language == "zh" else "en"]
    if decision == "answer":
        return _of_intent(hits, prediction.label, language)[0].text
    if decision == "clarify":
        # Each candidate intent by the title of its best article in the customer's language.
        options = []
        for intent in list(prediction.scores)[:2]:
            own = _of_intent(hits, intent, language)
            options.append(f"“{own[0].title}”" if own and own[0].language == language else intent.replace("_", " "))
        return words["clarify"].format(options=("还是" if language == "zh" else " or ").join(options))
    return words[decision]


def handle_message(ctx: Context, predictors: PredictorCache, app_name: str, text: Any, *, actor: Actor,
                   key: DeploymentKey | None = None, conversation_id: str | None = None,
                   log: PredictionSink | None = None) -> SupportReply:
    """Answer one customer message (see the module's docstring for the path).

    Blocking (model, index and store): call it from a worker thread in a server.

    Args:
        predictors: the process's loaded models.
        app_name: the assistant.
        text: the customer's message.
        actor: who calls: a user allowed ``predict`` in the assistant's project, or the
            actor of ``key``.
        key: the caller's API key (``authenticate_app_key``), if it came with one.
        conversation_id: the conversation to continue (None: start one).
        log: the prediction log writer (None: stored at once).

    Returns:
        The reply, with everything that produced it.

    Raises:
        InvalidInput: an empty, non-text or too long message. NotFound: no such assistant,
            or no such conversation of this caller. Forbidden: not allowed. Conflict: the
            assistant is paused or its deployment not active. Nothing is stored then.
    """
    text = check_message(text)
    app = get_support_app(ctx.db, app_name)
    caller = _authorize(ctx, app, actor, key)
    if app.state != "active":
        raise Conflict(f"Assistant {app.name!r} is {app.state}.", hint="Ask its owner to resume it.")
    language = text_language(text)
    clean, _ = redact_text(text)
    with ctx.db.session(readonly=True) as s:
        if conversation_id is not None:
            current = _conversation(s, app, conversation_id, caller)
            waiting, clarifications = current.state in ("handed_over", "claimed"), current.clarifications
        else:
            waiting, clarifications = False, 0
    if waiting:
        return _store_waiting(ctx, app, conversation_id, caller, clean, language)
    served: ServedPredictions = serve_predictions(ctx, predictors, app.deployment, [text], caller_key=caller, log=log)
    prediction = served.predictions[0]
    scope = _scope(app, served.model_version.id, prediction)
    hits = _articles(ctx, app, text)
    articles = _of_intent(hits, prediction.label, language)
    decision, reason = _decide(app, text, language, prediction, scope, articles, clarifications)
    answer_articles = articles[:int(app.setting("top_k"))] if decision == "answer" else []
    reply = _reply_text(decision, language, prediction, hits)
    version = served.model_version
    with ctx.db.session() as s:
        conv = _conversation(s, app, conversation_id, caller)
        if conv.state == "resolved":
            conv.state, conv.clarifications = "open", 0  # a new question after an agent's answer
        s.add(SqlSupportMessage(conversation_id=conv.id, sender="customer", text=clean, author=caller))
        message = SqlSupportMessage(
            conversation_id=conv.id, sender="assistant", text=reply, decision=decision, intent=prediction.label,
            confidence=prediction.score, scope_score=scope["score"],
            articles=[{"article_id": h.article_id, "score": round(h.score, 4)} for h in answer_articles],
            request_id=prediction.request_id, deployment_id=served.deployment.id, model_version_id=version.id,
            knowledge_version_id=app.knowledge_version_id)
        s.add(message)
        conv.language = conv.language or language
        conv.updated_at = utcnow()
        if decision == "clarify":
            conv.clarifications += 1
        elif decision == "handoff":
            conv.state, conv.handoff_reason, conv.handed_over_at = "handed_over", reason, utcnow()
        s.flush()
        if decision == "handoff":
            append_entry(s, actor, "support.handoff", "support_conversation", conv.id,
                         after={"state": "handed_over"},
                         details={"app": app.name, "reason": reason, "request_id": prediction.request_id,
                                  "model_version_id": version.id, "knowledge_version_id": app.knowledge_version_id})
        public_id, state, message_id = conv.public_id, conv.state, message.id
    caveats = [] if scope["fitted"] else [
        f"model version {version.id} has no fitted out-of-scope threshold: confidence below "
        f"{FALLBACK_CONFIDENCE} is treated as out of scope (run 'chainkeeper apps support calibrate {app.name}')"]
    return SupportReply(
        conversation_id=public_id, message_id=message_id, decision=decision, reply=reply, intent=prediction.label,
        confidence=round(float(prediction.score), 6), alternatives=dict(prediction.scores),
        out_of_scope=bool(scope["out_of_scope"]), scope=scope, articles=[h.to_dict() for h in answer_articles],
        request_id=prediction.request_id, deployment=served.deployment.name,
        model_version={"id": version.id, "name": version.name, "version": version.version},
        knowledge_version_id=app.knowledge_version_id, language=language, handoff_reason=reason, state=state,
        caveats=caveats)


def _store_waiting(ctx: Context, app: SupportApp, public_id: str | None, caller: str, clean: str,
                   language: str) -> SupportReply:
    """A message to a handed-over conversation: kept for the agent, answered by nobody yet."""
    reply = REPLIES["zh" if language == "zh" else "en"]["waiting"]
    with ctx.db.session() as s:
        conv = _conversation(s, app, public_id, caller)
        s.add(SqlSupportMessage(conversation_id=conv.id, sender="customer", text=clean, author=caller))
        message = SqlSupportMessage(conversation_id=conv.id, sender="assistant", text=reply, decision="handoff")
        s.add(message)
        conv.updated_at = utcnow()
        s.flush()
        state, message_id, reason = conv.state, message.id, conv.handoff_reason
    return SupportReply(conversation_id=str(public_id), message_id=message_id, decision="handoff", reply=reply,
                        intent=None, confidence=None, alternatives={}, out_of_scope=False, scope={}, articles=[],
                        request_id=None, deployment=app.deployment, model_version=None,
                        knowledge_version_id=app.knowledge_version_id, language=language, handoff_reason=reason,
                        state=state)
