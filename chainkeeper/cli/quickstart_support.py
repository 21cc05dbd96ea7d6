"""``chainkeeper quickstart --app support``: the customer-service assistant on the chain the
quickstart just built (issue 16).

After the classification quickstart (``cli.quickstart``) has trained, released and
deployed the intent classifier on the built-in sample, the same people go on, through the
same service functions the API, the web UI and ``chainkeeper apps support`` call:

1. the data steward imports the sample's knowledge base (short answers per intent, EN and
   中文) as a draft dataset version;
2. a second data steward approves its release (the knowledge base is a released dataset);
3. the release manager creates the assistant ``helpdesk`` on the quickstart's deployment
   (its knowledge index is built with the sentence model, its out-of-scope threshold
   fitted on the dev split) and issues the API key a customer-facing app would use;
4. customers write, over HTTP on loopback with that key: questions in English and Chinese,
   one the bank cannot answer, one asking for a person — each decision printed;
5. the support agent takes the handed-over conversations from the queue and answers them;
6. the data steward exports those answers as labelled rows with an annotation project for
   review, and one answer is traced back to the model, the data and the approvers.
"""

from __future__ import annotations

import importlib
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.panel import Panel

from chainkeeper import api, data, serving
from chainkeeper.apps import support  # a lazy entry point: torch and FAISS load when a step needs them
from chainkeeper.cli.governance import render_lineage
from chainkeeper.cli.state import console, new_table
from chainkeeper.cli.walkthrough import Cast, elapsed, handoff, number, step
from chainkeeper.core.context import Context
from chainkeeper.core.errors import NotFound, ServiceUnavailable
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import verify_ledger

if TYPE_CHECKING:
    from chainkeeper.apps.support import Article

APP = "helpdesk"
KNOWLEDGE_BASE = "helpdesk-kb"
PART, STEPS = "support", 6
# The customers' route of the API (POST, {"text", "conversation_id"} with a key of the deployment).
MESSAGES_ROUTE = "/v1/apps/{name}/messages"
# The intent of a message none of the classifier's intents covers (``apps.support.OUT_OF_SCOPE``,
# written out so that loading this module loads no service code; tests keep them equal).
OUT_OF_SCOPE = "out_of_scope"


@dataclass(frozen=True)
class Scripted:
    """A customer's conversation: the first message, what the customer really wants
    (``OUT_OF_SCOPE``: nothing the bank's intents cover), the reply an agent gives if the
    assistant hands it over, and a message the customer sends after the assistant's reply."""

    text: str
    intent: str
    agent_reply: str
    follow_up: str | None = None


CONVERSATIONS = (
    Scripted("My card still hasn't arrived, it's been two weeks.", "card_arrival",
             "Cards arrive within 5 working days; I have ordered a replacement to your address on file."),
    Scripted("How do I change my PIN?", "change_pin",
             "In the app, open Cards, then Security, then Change PIN."),
    Scripted("我的卡丢了，请帮我冻结", "lost_card", "已为您冻结这张银行卡，新卡会在五个工作日内寄出。"),
    Scripted("转账为什么失败了？", "transfer_failed",
             "转账失败通常是因为收款账户信息有误，款项会在一到三个工作日内退回。"),
    Scripted("Can you recommend a good pizza place?", OUT_OF_SCOPE,
             "Sorry, I can only help with your account, cards and payments."),
    Scripted("I want to speak to a real person about a refund for an item I returned", "refund_request",
             "I have asked the shop for the refund; it reaches your account within 10 days.",
             follow_up="Hello? Is anyone there?"),
)


def _sample_articles(dest: Path) -> Path:
    """Write the built-in sample's knowledge base (``dest/knowledge.csv``).

    Its module reaches the data stage (pyarrow) when it loads, so it loads when this step
    runs, as ``cli.main`` loads a command's module: 'chainkeeper quickstart --help' stays light.
    """
    module = importlib.import_module("chainkeeper.apps.customer_service.knowledge")
    path: Path = module.write_knowledge_base(dest)
    return path


def run_support_quickstart(ctx: Context, *, cast: Cast, deployment: str) -> dict[str, Any]:
    """Run the assistant's chain on ``deployment`` (the quickstart's) as the cast; return what was measured."""
    # 1-2. the knowledge base: imported by the steward, released by a second one
    path = _sample_articles(ctx.settings.home / "sample" / "knowledge")
    articles = support.read_articles(path)
    source, draft = support.import_knowledge_base(ctx, path, name=KNOWLEDGE_BASE, actor=cast.steward)
    languages = Counter(a.language for a in articles)
    step(1, "knowledge base", cast.steward, f"imported {source.rows_accepted} articles "
         f"({', '.join(f'{n} {lang}' for lang, n in sorted(languages.items()))}) for "
         f"{len({a.intent for a in articles})} intents as {draft.name} v{draft.version} ({draft.state})",
         part=PART, of=STEPS)
    handoff(ctx, "dataset.release", draft.id, cast.steward, cast.steward_approver, "answers reviewed")
    kb = data.get_dataset_version(ctx.db, draft.id)
    step(2, "release knowledge base", cast.steward_approver, f"released {kb.name} v{kb.version} "
         f"(dataset version {kb.id}, content {kb.content_hash[:12]})", part=PART, of=STEPS)

    # 3. the assistant, on the quickstart's deployment (release_manager), and a customer key
    predictors = serving.PredictorCache(ctx, batching=False)  # the threshold is fitted in this process
    try:
        app = _create_assistant(ctx, predictors, cast.release_manager, deployment, kb.id)
    finally:
        predictors.close()
    key = serving.create_deployment_key(ctx, deployment, name=f"{APP}-web", actor=cast.release_manager,
                                        scopes=["predict"])
    console.print(f"      API key {key.key.id} '{key.key.name}' (scope predict) for the customer-facing app")
    # 4. customers write, over HTTP
    sent = _converse(ctx, key.secret)
    # 5. the support agent answers what was handed over
    resolved = _answer_handoffs(ctx, cast.support_agent, sent, articles)
    # 6. back to data: the answers become labelled rows; one answer traced
    exported = support.export_resolutions(ctx, APP, actor=cast.steward)
    step(6, "back to data", cast.steward, (
        f"exported {exported.rows} agent answers as labelled rows: draft dataset version "
        f"{exported.dataset_version_id} ({APP}-handoffs), annotation project {exported.annotation_project_id} "
        "pre-labelled with the agents' intents, for review before the next training run") if exported.rows
         else "no agent answer to export", part=PART, of=STEPS)
    traced = _traced_message(sent)
    if traced is not None:
        console.print(f"      lineage of assistant message {traced}:")
        console.print(render_lineage(support.trace_message(ctx, traced, actor=cast.auditor)))
    decisions = Counter(r["decision"] for r in sent["replies"])
    verdict = verify_ledger(ctx.db)
    console.print(Panel.fit("\n".join([
        f"assistant {app.name} on deployment {app.deployment}, knowledge base v{kb.version} "
        f"({source.rows_accepted} articles), out of scope when {_threshold(ctx, app)}",
        f"{len(CONVERSATIONS)} conversations, {len(sent['replies'])} customer messages over HTTP: "
        + ", ".join(f"{decisions.get(d, 0)} {d}" for d in ("answer", "clarify", "handoff")),
        f"latency per message over HTTP: p50 {sent['p50_ms']:.0f} ms (the first, which loads the model and the "
        f"index in the server: {sent['first_ms']:.0f} ms)",
        f"hand-offs answered by {cast.support_agent.name}: {len(resolved)}; labelled rows exported: {exported.rows}",
        f"audit ledger: {verdict.entries:,} entries, {'intact' if verdict.ok else 'BROKEN'}; everything took "
        f"{elapsed()}",
        *([f"Trace it yourself: chainkeeper apps support trace {traced}"] if traced is not None else []),
        f"Ask it yourself: chainkeeper apps support ask {APP} \"How do I check my balance?\""]),
        title="quickstart (support) done"))
    return {"app": app.name, "knowledge_version": kb.id, "decisions": dict(decisions),
            "replies": sent["replies"], "resolved": resolved, "exported_rows": exported.rows,
            "export_version": exported.dataset_version_id, "annotation_project": exported.annotation_project_id,
            "traced_message": traced}


def _create_assistant(ctx: Context, predictors: Any, actor: Actor, deployment: str,
                      knowledge_version_id: int) -> support.SupportApp:
    """Step 3: the assistant (or, on a store that has one from an earlier run, pointed at the new
    knowledge base and fitted again for the model the deployment serves now)."""
    try:
        support.show_support_app(ctx, APP, actor=actor)
    except NotFound:
        app = support.create_support_app(ctx, predictors, name=APP, deployment=deployment,
                                         knowledge_version_id=knowledge_version_id, actor=actor)
        what = "created"
    else:
        support.change_support_app(ctx, predictors, APP, actor=actor, deployment=deployment,
                                   knowledge_version_id=knowledge_version_id)
        support.calibrate_support_app(ctx, predictors, APP, actor=actor)
        app = support.show_support_app(ctx, APP, actor=actor)
        what = "pointed"
    step(3, "assistant", actor, f"{what} assistant '{app.name}' on deployment '{app.deployment}' with knowledge "
         f"base version {app.knowledge_version_id}: out of scope when {_threshold(ctx, app)}", part=PART, of=STEPS)
    return app


def _threshold(ctx: Context, app: support.SupportApp) -> str:
    """The out-of-scope rule of the model version the assistant's deployment serves."""
    fitted = app.scope.get(str(serving.get_deployment_by_name(ctx.db, app.deployment).model_version_id))
    if fitted is None:
        return "no threshold fitted"
    return (f"{fitted['scorer']} score > {fitted['threshold']:.3f} (fitted on {fitted['dev_rows']} dev rows, "
            f"dev accuracy {number(fitted.get('dev_accuracy'))})")


def _converse(ctx: Context, secret: str) -> dict[str, Any]:
    """Step 4: each scripted customer writes over HTTP on loopback, with the customer app's key;
    the decisions in a table."""
    server = api.start_server_in_thread(api.create_app(ctx), host="127.0.0.1", port=0)
    try:
        import httpx  # the HTTP client loads when customers write, not with the command's help

        url = f"{server.url}{MESSAGES_ROUTE.format(name=APP)}"
        with httpx.Client(timeout=120, headers={"X-API-Key": secret}) as client:
            def send(text: str, conversation: str | None) -> dict[str, Any]:
                body = {"text": text, **({"conversation_id": conversation} if conversation else {})}
                answer = client.post(url, json=body)
                if answer.status_code >= 400:
                    raise ServiceUnavailable(f"POST {MESSAGES_ROUTE.format(name=APP)} answered HTTP "
                                             f"{answer.status_code}: {answer.text[:300]}")
                reply: dict[str, Any] = answer.json()
                return reply

            return _replies(send, f"POST {url}")
    finally:
        server.stop()


def _replies(send: Callable[[str, str | None], dict[str, Any]], where: str) -> dict[str, Any]:
    step(4, "conversations", Actor(f"{APP}-web", frozenset({"API key"})), f"{len(CONVERSATIONS)} customers write to "
         f"{where} with the app's key", part=PART, of=STEPS)
    table = new_table("customer", "decision", "intent", "confidence", "out of scope?", "answer", "ms")
    replies: list[dict[str, Any]] = []
    latencies: list[float] = []
    conversations: dict[str, Scripted] = {}
    for scripted in CONVERSATIONS:
        conversation = None
        for text in (scripted.text, scripted.follow_up):
            if text is None:
                continue
            start = time.perf_counter()
            reply = send(text, conversation)
            latencies.append((time.perf_counter() - start) * 1000)
            conversation = reply["conversation_id"]
            conversations[conversation] = scripted
            replies.append(reply)
            table.add_row(*_row(text, reply, latencies[-1]))
    console.print(table)
    return {"replies": replies, "conversations": conversations,
            "first_ms": latencies[0], "p50_ms": statistics.median(latencies[1:] or latencies)}


def _row(text: str, reply: dict[str, Any], ms: float) -> list[str]:
    scope = reply.get("scope") or {}
    if scope:
        verdict = (f"{'yes' if scope['out_of_scope'] else 'no'} ({scope['method']} {scope['score']:.2f} vs "
                   f"{scope['threshold']:.2f})")
    else:
        verdict = "—"
    articles = reply.get("articles") or []
    answer = (f"{articles[0]['article_id']}: " if articles else "") + str(reply.get("reply", ""))
    if reply.get("handoff_reason"):
        answer += f" [{reply['handoff_reason']}]"
    confidence = reply.get("confidence")
    return [escape(text), reply["decision"], escape(reply.get("intent") or "—"),
            "—" if confidence is None else f"{confidence:.2f}", verdict, escape(answer), f"{ms:.0f}"]


def _answer_handoffs(ctx: Context, agent: Actor, sent: dict[str, Any], articles: list[Article]) -> list[int]:
    """Step 5: the agent takes each handed-over conversation of this run and answers it."""
    conversations: dict[str, Scripted] = sent["conversations"]
    waiting = [c for c in support.handoff_queue(ctx, actor=agent, app=APP) if c.public_id in conversations]
    step(5, "hand-off", agent, f"{len(waiting)} conversation(s) wait for a person in the queue", part=PART, of=STEPS)
    resolved: list[int] = []
    for summary in waiting:
        scripted = conversations[summary.public_id]
        support.claim_conversation(ctx, summary.id, actor=agent)
        article = next((a.article_id for a in articles if a.intent == scripted.intent
                        and a.language == (summary.language or "en")), None)
        done = support.resolve_conversation(ctx, summary.id, actor=agent, intent=scripted.intent,
                                            reply=scripted.agent_reply, article_id=article)
        resolved.append(done.id)
        console.print(f"      conversation {done.id} ({escape(summary.handoff_reason or 'handed over')}): "
                      f"{agent.name} claimed it and answered as {done.resolved_intent}"
                      + (f" with article {article}" if article else ""))
    return resolved


def _traced_message(sent: dict[str, Any]) -> int | None:
    """The assistant message to trace: an answer if there is one, else any reply a model gave."""
    replies = [r for r in sent["replies"] if r.get("request_id")]
    answered = [r for r in replies if r["decision"] == "answer"]
    chosen = (answered or replies or [None])[0]
    return None if chosen is None else int(chosen["message_id"])
