"""The support assistant's services on a real chain: the assistant object, a message's path, the
hand-off queue and the rows it becomes (the shells have their own tests: API, CLI, web)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from chainkeeper.annotation import get_project, list_answers
from chainkeeper.apps.customer_service.knowledge import write_knowledge_base
from chainkeeper.apps.support import (
    calibrate_support_app,
    change_support_app,
    claim_conversation,
    create_support_app,
    export_resolutions,
    find_support_apps,
    handle_message,
    handoff_queue,
    resolve_conversation,
    show_conversation,
    show_support_app,
    trace_message,
)
from chainkeeper.apps.support.knowledge import import_knowledge_base
from chainkeeper.apps.support.tables import SqlSupportConversation, SqlSupportMessage
from chainkeeper.chain import open_context
from chainkeeper.core.context import Context
from chainkeeper.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from chainkeeper.core.settings import load_settings
from chainkeeper.data import get_dataset_version, read_dataset_rows
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import list_entries
from chainkeeper.registry.versions import Stage, register_model_version, transition_stage
from chainkeeper.serving import promote_rollout, start_canary
from chainkeeper.serving.deployments import deploy_model_version
from chainkeeper.training import TokenTagger, get_run
from chainkeeper.training.runs import finish_run
from chainkeeper.training.tables import SqlRun
from tests.model_rows import insert_run
from tests.support_world import (
    AGENT,
    APP,
    DEPLOYMENT,
    ENGINEER,
    OPERATOR,
    RELEASER,
    STEWARD,
    SupportWorld,
    build_support_world,
)

CUSTOMER = Actor("cora", frozenset({"release_manager"}))  # predict in every project
PERSON = "I would like to speak to a real person please"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, migrated_template: Path,
          support_classifier_dir: Path) -> Iterator[SupportWorld]:
    folder = tmp_path_factory.mktemp("support-world")
    (folder / "home").mkdir()
    shutil.copy(migrated_template, folder / "home" / "chainkeeper.db")
    ctx = open_context(load_settings({}, home=folder / "home"))
    built = build_support_world(ctx, support_classifier_dir, folder)
    yield built
    built.predictors.close()
    ctx.close()


def _messages(ctx: Context) -> int:
    with ctx.db.session(readonly=True) as s:
        return int(s.scalar(sa.select(sa.func.count()).select_from(SqlSupportMessage)) or 0)


def _confident(world: SupportWorld, language: str = "en") -> tuple[str, str]:
    """A sample test question the assistant answers (the model is right and sure)."""
    for text, intent in world.test_rows:
        reply = handle_message(world.ctx, world.predictors, APP, text, actor=CUSTOMER)
        if reply.decision == "answer" and reply.intent == intent and reply.language == language:
            return text, intent
    raise AssertionError(f"no {language} sample question is answered")


# --- the assistant object ------------------------------------------------------------------


def test_creation_builds_the_index_fits_a_threshold_and_is_in_the_ledger(world: SupportWorld) -> None:
    app = show_support_app(world.ctx, APP, actor=OPERATOR)
    assert (app.deployment, app.project, app.owner) == (DEPLOYMENT, "intents", RELEASER.name)
    fitted = app.scope[str(world.version.id)]
    # Energy (the runtime reports the logits' log-partition), at most one point of dev accuracy lost.
    assert fitted["scorer"] == "energy" and fitted["rule"] == "accuracy_loss" and fitted["dev_rows"] > 50
    assert fitted["dev_accuracy_loss"] <= 0.01 and fitted["dataset_version_id"] > 0
    actions = [e.action for e in list_entries(world.ctx.db, object_kind="support_app")]
    assert actions[:2] == ["support.app.create", "support.app.calibrate"]
    assert [a.name for a in find_support_apps(world.ctx, actor=AGENT)] == [APP]


def test_bad_assistants_are_refused_and_nothing_is_stored(world: SupportWorld, tiny_model_dir: Path,
                                                          tmp_path: Path) -> None:
    ctx = world.ctx
    with pytest.raises(InvalidInput, match="not valid"):
        create_support_app(ctx, world.predictors, name="Bad Name!", deployment=DEPLOYMENT,
                           knowledge_version_id=world.knowledge_version_id, actor=RELEASER)
    with pytest.raises(Conflict, match="exists already"):
        create_support_app(ctx, world.predictors, name=APP, deployment=DEPLOYMENT,
                           knowledge_version_id=world.knowledge_version_id, actor=RELEASER)
    with pytest.raises(Forbidden, match="app.manage"):
        create_support_app(ctx, world.predictors, name="other", deployment=DEPLOYMENT,
                           knowledge_version_id=world.knowledge_version_id, actor=ENGINEER)
    with pytest.raises(InvalidInput, match="Unknown assistant setting"):
        create_support_app(ctx, world.predictors, name="other", deployment=DEPLOYMENT,
                           knowledge_version_id=world.knowledge_version_id, actor=RELEASER,
                           settings={"temperature": 2})
    with pytest.raises(InvalidInput, match="between 0.0 and 1.0"):
        change_support_app(ctx, world.predictors, APP, actor=RELEASER, settings={"clarify_margin": 3})
    # A knowledge base that is not released yet.
    _, draft = import_knowledge_base(ctx, write_knowledge_base(tmp_path / "kb"), name="helpdesk-kb", actor=STEWARD)
    with pytest.raises(Conflict, match="released"):
        change_support_app(ctx, world.predictors, APP, actor=RELEASER, knowledge_version_id=draft.id)
    # A token tagger's deployment.
    model, tokenizer = TokenTagger.from_base(tiny_model_dir, ["O", "B-PER", "I-PER"], max_length=32)
    artifact = ctx.artifacts.put_tree(model.save(tmp_path / "tagger", tokenizer))
    version = register_model_version(ctx, run_id=insert_run(ctx, model_artifact=artifact), name="names",
                                     actor=ENGINEER)
    transition_stage(ctx, version.id, Stage.STAGING, actor=RELEASER)
    transition_stage(ctx, version.id, Stage.PRODUCTION, actor=RELEASER)
    deploy_model_version(ctx, name="names", model_version_id=version.id, actor=RELEASER)
    with pytest.raises(InvalidInput, match="token tagger"):
        create_support_app(ctx, world.predictors, name="other", deployment="names",
                           knowledge_version_id=world.knowledge_version_id, actor=RELEASER)
    assert [a.name for a in find_support_apps(ctx, actor=RELEASER)] == [APP]
    assert show_support_app(ctx, APP, actor=RELEASER).knowledge_version_id == world.knowledge_version_id


# --- one message ---------------------------------------------------------------------------


def test_a_confident_in_scope_message_is_answered_with_its_intents_articles_only(world: SupportWorld) -> None:
    for language in ("en", "zh"):
        text, intent = _confident(world, language)
        reply = handle_message(world.ctx, world.predictors, APP, text, actor=CUSTOMER)
        assert reply.decision == "answer" and not reply.out_of_scope and reply.scope["fitted"]
        assert reply.articles and {a["intent"] for a in reply.articles} == {intent}
        assert reply.articles[0]["language"] == language and reply.reply == reply.articles[0]["text"]
        assert reply.model_version == {"id": world.version.id, "name": "intents", "version": 1}
        assert reply.knowledge_version_id == world.knowledge_version_id and reply.request_id


def test_out_of_scope_and_asking_for_a_person_hand_over_and_later_messages_wait(world: SupportWorld) -> None:
    reply = handle_message(world.ctx, world.predictors, APP, PERSON, actor=CUSTOMER)
    assert (reply.decision, reply.state, reply.articles) == ("handoff", "handed_over", [])
    assert reply.handoff_reason == "the customer asked for a person"
    again = handle_message(world.ctx, world.predictors, APP, "hello? still there?", actor=CUSTOMER,
                           conversation_id=reply.conversation_id)
    assert again.decision == "handoff" and again.request_id is None and "colleague" in again.reply
    # Messages the classifier is unsure of: out of scope by the fitted threshold, handed over.
    fitted = show_support_app(world.ctx, APP, actor=RELEASER).scope[str(world.version.id)]
    gibberish = ["zxqv blorp", "qqq www eee", "🙂🙂🙂", "asdf jkl", "lorem ipsum dolor sit amet",
                 "the weather on mars is cold", "recipe for pancakes with blueberries"]
    replies = [handle_message(world.ctx, world.predictors, APP, t, actor=CUSTOMER) for t in gibberish]
    for r in replies:
        assert r.out_of_scope == (r.scope["score"] > fitted["threshold"])
        if r.out_of_scope:
            assert r.decision == "handoff" and r.articles == [] and (r.handoff_reason or "").startswith("out of scope")
    assert any(r.out_of_scope for r in replies)


def test_clarifying_then_handing_over_when_still_unsure(world: SupportWorld) -> None:
    change_support_app(world.ctx, world.predictors, APP, actor=RELEASER, settings={"clarify_margin": 1.0})
    try:
        # The first sample question the model holds in scope (one out of scope is handed over, not clarified).
        for text, _ in world.test_rows:
            first = handle_message(world.ctx, world.predictors, APP, text, actor=CUSTOMER)
            if not first.out_of_scope and first.handoff_reason is None:
                break
        else:
            raise AssertionError("every sample question is out of scope for this model")
        assert first.decision == "clarify" and first.articles == [] and ("?" in first.reply or "？" in first.reply)
        second = handle_message(world.ctx, world.predictors, APP, text, actor=CUSTOMER,
                                conversation_id=first.conversation_id)
        assert (second.decision, second.handoff_reason) == ("handoff", "still unsure after clarifying")
    finally:
        change_support_app(world.ctx, world.predictors, APP, actor=RELEASER, settings={"clarify_margin": 0.15})


def test_personal_data_is_stored_redacted(world: SupportWorld) -> None:
    text = "My card never arrived, email me at jane.doe@example.com or call +44 20 7946 0958"
    reply = handle_message(world.ctx, world.predictors, APP, text, actor=CUSTOMER)
    with world.ctx.db.session(readonly=True) as s:
        stored = s.scalars(sa.select(SqlSupportMessage.text).where(SqlSupportMessage.id < reply.message_id)
                           .order_by(SqlSupportMessage.id.desc()).limit(1)).one()
    assert "jane.doe@example.com" not in stored and "7946" not in stored and "card never arrived" in stored


@pytest.mark.parametrize(("text", "message"), [("", "empty"), ("   ", "empty"), ("x" * 100_000, "100,000 characters"),
                                               (42, "not a string")])
def test_bad_messages_are_refused_and_nothing_is_stored(world: SupportWorld, text: object, message: str) -> None:
    before = _messages(world.ctx)
    with pytest.raises(InvalidInput, match=message):
        handle_message(world.ctx, world.predictors, APP, text, actor=CUSTOMER)
    assert _messages(world.ctx) == before


def test_unknown_and_other_callers_conversations_are_not_found(world: SupportWorld) -> None:
    mine = handle_message(world.ctx, world.predictors, APP, PERSON, actor=CUSTOMER)
    before = _messages(world.ctx)
    for conversation_id, actor in (("no-such-conversation", CUSTOMER), (mine.conversation_id, RELEASER)):
        with pytest.raises(NotFound, match="no conversation"):
            handle_message(world.ctx, world.predictors, APP, "hello", actor=actor, conversation_id=conversation_id)
    with pytest.raises(NotFound, match="no support assistant"):
        handle_message(world.ctx, world.predictors, "nobody", "hello", actor=CUSTOMER)
    with pytest.raises(Forbidden, match="predict"):
        handle_message(world.ctx, world.predictors, APP, "hello", actor=AGENT)
    scoped = Actor("sam", frozenset(), scoped_roles=frozenset({("release_manager", "elsewhere")}))
    with pytest.raises(Forbidden):
        handle_message(world.ctx, world.predictors, APP, "hello", actor=scoped)
    assert _messages(world.ctx) == before


# --- people in the loop --------------------------------------------------------------------


def test_an_agents_answer_becomes_a_labelled_row_for_review_with_lineage(world: SupportWorld) -> None:
    ctx = world.ctx
    handed = handle_message(ctx, world.predictors, APP, "Can someone help me? I want a human about my card fee",
                            actor=CUSTOMER)
    conv_id = next(c.id for c in handoff_queue(ctx, actor=AGENT) if c.public_id == handed.conversation_id)
    other = Actor("amir", frozenset({"support_agent"}))
    claim_conversation(ctx, conv_id, actor=AGENT)
    with pytest.raises(Conflict, match="taken by agnes"):
        claim_conversation(ctx, conv_id, actor=other)
    with pytest.raises(Forbidden, match="support.answer"):
        claim_conversation(ctx, conv_id, actor=OPERATOR)
    with pytest.raises(InvalidInput, match="Unknown intent"):
        resolve_conversation(ctx, conv_id, actor=AGENT, intent="mortgage", reply="...")
    with pytest.raises(NotFound, match="no article"):
        resolve_conversation(ctx, conv_id, actor=AGENT, intent="lost_card", reply="ok", article_id="nope")
    resolved = resolve_conversation(ctx, conv_id, actor=AGENT, intent="lost_card", reply="I froze it for you.",
                                    article_id="lost_card-en-1",
                                    new_article={"title": "Card fees", "text": "We charge no fee for a new card."})
    assert (resolved.state, resolved.resolved_by, resolved.resolved_intent) == ("resolved", "agnes", "lost_card")
    assert conv_id not in [c.id for c in handoff_queue(ctx, actor=AGENT)]
    with pytest.raises(Conflict, match="not waiting"):
        resolve_conversation(ctx, conv_id, actor=AGENT, intent="lost_card", reply="again")
    shown = show_conversation(ctx, conv_id, actor=OPERATOR)
    assert [m["sender"] for m in shown.messages] == ["customer", "assistant", "agent"]
    assert shown.resolution is not None and shown.resolution["new_article"]["title"] == "Card fees"

    exported = export_resolutions(ctx, APP, actor=STEWARD)
    assert conv_id in exported.conversations and exported.rows == len(exported.conversations)
    assert exported.dataset_version_id is not None and exported.annotation_project_id is not None
    version = get_dataset_version(ctx.db, exported.dataset_version_id)
    assert version.name == f"{APP}-handoffs" and version.state == "draft"
    rows = read_dataset_rows(ctx, version.id)
    assert "lost_card" in rows.column("label").to_pylist()
    project = get_project(ctx.db, exported.annotation_project_id)
    assert project.dataset_version_id == version.id
    assert list_answers(ctx, project.id, STEWARD) == []  # pre-labelled, not yet reviewed
    with ctx.db.session(readonly=True) as s:
        assert s.scalar(sa.select(SqlSupportConversation.exported_version_id)
                        .where(SqlSupportConversation.id == conv_id)) == version.id
    again = export_resolutions(ctx, APP, actor=STEWARD)
    assert again.rows == 0 and again.dataset_version_id is None  # each answer is exported once
    with pytest.raises(Forbidden):
        export_resolutions(ctx, APP, actor=AGENT)

    # An answer's lineage: the prediction, model version, run, data; the knowledge base and its release.
    lineage = trace_message(ctx, handed.message_id, actor=OPERATOR)
    kinds = {node.kind for node in lineage.walk()}
    assert {"support_message", "prediction", "deployment", "model_version", "run", "dataset_version"} <= kinds
    assert any(n.kind == "dataset_version" and n.id == str(world.knowledge_version_id) for n in lineage.walk())
    ledger = [e.action for e in list_entries(ctx.db, object_kind="support_conversation")]
    assert {"support.handoff", "support.claim", "support.resolve"} <= set(ledger)


def test_a_new_version_on_the_route_falls_back_until_calibrated(world: SupportWorld) -> None:
    ctx = world.ctx
    # The same model, trained on the same data, registered again: a retrained version rolled out since.
    with ctx.db.session() as s:
        run = SqlRun(task="sequence-classification", dataset_version_id=get_run(ctx.db, world.version.run_id)
                     .dataset_version_id, base_model="tiny", state="queued", created_by=ENGINEER.name)
        s.add(run)
        s.flush()
        run_id = run.id
    finish_run(ctx.db, run_id, metrics={"test": {"accuracy": 0.8}}, model_artifact=world.version.model_artifact)
    version = register_model_version(ctx, run_id=run_id, name="intents", actor=ENGINEER)
    transition_stage(ctx, version.id, Stage.STAGING, actor=RELEASER)
    transition_stage(ctx, version.id, Stage.PRODUCTION, actor=RELEASER)
    start_canary(ctx, DEPLOYMENT, version.id, percent=50, actor=RELEASER)
    promote_rollout(ctx, DEPLOYMENT, actor=RELEASER)
    reply = handle_message(ctx, world.predictors, APP, "where is my card", actor=CUSTOMER)
    assert reply.model_version is not None and reply.model_version["id"] == version.id
    assert not reply.scope["fitted"] and reply.scope["method"] == "msp"
    assert reply.caveats and "calibrate" in reply.caveats[0]
    fitted = calibrate_support_app(ctx, world.predictors, APP, actor=RELEASER)
    assert str(version.id) in fitted
    reply = handle_message(ctx, world.predictors, APP, "where is my card", actor=CUSTOMER)
    assert reply.scope["fitted"] and reply.scope["method"] == "energy" and reply.caveats == []
