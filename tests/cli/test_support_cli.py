"""``chainkeeper apps support …`` in a fresh process, as a user runs it (issue 16): assistants set
up, a message asked, a hand-off claimed, answered, exported and traced — and bad input refused
with a clear message, an exit code and nothing stored.

The store is the support world of ``tests/support_world.py`` (the sample's intent model
deployed as ``support``, its knowledge base released, the assistant ``helpdesk``), built once
for the module. The commands that load the model and the index, and a refusal, run in their
own interpreter on the same home (``_cli``), as a user runs them; the others run in this
process (``_run``: the same ``main`` and error handling, without paying the seconds of
importing torch and FAISS again for each command).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from chainkeeper.apps.support import OUT_OF_SCOPE, handle_message, show_support_app
from chainkeeper.apps.support.assistants import DEFAULT_SETTINGS
from chainkeeper.apps.support.tables import SqlSupportApp, SqlSupportMessage
from chainkeeper.chain import open_context
from chainkeeper.cli.apps import SETTINGS_HELP
from chainkeeper.cli.main import main
from chainkeeper.cli.quickstart_support import OUT_OF_SCOPE as QUICKSTART_OUT_OF_SCOPE
from chainkeeper.core.context import Context
from chainkeeper.core.settings import load_settings
from chainkeeper.data import list_dataset_versions, list_sources
from chainkeeper.governance import issue_token
from chainkeeper.governance.approvals import decide, request_approval
from chainkeeper.governance.bootstrap import initialise
from tests.support_world import (
    AGENT,
    APP,
    APPROVER,
    DEPLOYMENT,
    OPERATOR,
    RELEASER,
    STEWARD,
    SupportWorld,
    build_support_world,
)

PERSON = "I would like to speak to a real person please"
Run = Callable[..., tuple[int, str, str]]


@dataclass
class Store:
    world: SupportWorld
    home: Path
    folder: Path
    tokens: dict[str, str]

    @property
    def ctx(self) -> Context:
        return self.world.ctx


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, support_classifier_dir: Path) -> Iterator[Store]:
    folder = tmp_path_factory.mktemp("support-cli")
    settings = load_settings({}, home=folder / "home")
    initialise(settings)  # as 'chainkeeper init' leaves a store
    ctx = open_context(settings)
    world = build_support_world(ctx, support_classifier_dir, folder)
    tokens = {actor.name: issue_token(ctx.db, actor.name, name="cli").secret
              for actor in (STEWARD, APPROVER, RELEASER, AGENT, OPERATOR)}
    yield Store(world=world, home=settings.home, folder=folder, tokens=tokens)
    world.predictors.close()
    ctx.close()


def _cli(store: Store, *args: str, token: str | None, url: str | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter on the store's home; never a traceback."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CHAINKEEPER_")}
    environ.update({"COLUMNS": "200", "CHAINKEEPER_HOME": str(store.home), "HF_HUB_OFFLINE": "1",
                    "TRANSFORMERS_OFFLINE": "1"})
    if token is not None:
        environ["CHAINKEEPER_TOKEN"] = token
    if url is not None:
        environ["CHAINKEEPER_URL"] = url
    done = subprocess.run([sys.executable, "-m", "chainkeeper.cli.main", *args], capture_output=True, text=True,
                          env=environ, timeout=180)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


@pytest.fixture
def run(store: Store, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """The CLI in this process on the store's home: (exit code, stdout, stderr); never a traceback."""
    monkeypatch.setenv("CHAINKEEPER_HOME", str(store.home))
    monkeypatch.setenv("COLUMNS", "200")

    def invoke(*args: str, token: str | None) -> tuple[int, str, str]:
        if token is None:
            monkeypatch.delenv("CHAINKEEPER_TOKEN", raising=False)
        else:
            monkeypatch.setenv("CHAINKEEPER_TOKEN", token)
        code = 0
        try:
            main(["apps", "support", *args])
        except SystemExit as exit_:  # click ends every command with sys.exit
            code = int(exit_.code or 0)
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return code, out, err

    return invoke


def _flat(text: str) -> str:
    return " ".join(text.split())


def _count(ctx: Context, table: type) -> int:
    with ctx.db.session(readonly=True) as s:
        return int(s.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


def test_the_written_out_names_match_the_services() -> None:
    assert SETTINGS_HELP.split(", ") == list(DEFAULT_SETTINGS)
    assert QUICKSTART_OUT_OF_SCOPE == OUT_OF_SCOPE


def test_list_and_show_print_the_assistant_and_json_has_the_services_fields(store: Store, run: Run) -> None:
    code, out, err = run("list", token=store.tokens[AGENT.name])
    assert code == 0, err
    assert APP in out and DEPLOYMENT in out and "energy" in out

    shown = _cli(store, "apps", "support", "show", APP, "--json", token=store.tokens[OPERATOR.name])
    assert shown.returncode == 0, shown.stderr
    answer = json.loads(shown.stdout)
    app = show_support_app(store.ctx, APP, actor=OPERATOR)
    assert (answer["name"], answer["deployment"], answer["knowledge_version_id"], answer["owner"]) == \
        (app.name, app.deployment, app.knowledge_version_id, app.owner)
    assert answer["scope"] == json.loads(json.dumps(app.scope))

    code, out, _ = run("show", APP, token=store.tokens[OPERATOR.name])
    assert code == 0 and "clarify_margin" in out and "out-of-scope thresholds" in out


def test_a_message_is_answered_handed_over_claimed_answered_exported_and_traced(store: Store, run: Run) -> None:
    world, tokens = store.world, store.tokens
    # A sample question the service answers: the CLI, in a process of its own, decides the same.
    text = next(t for t, y in world.test_rows if y == "change_pin" and t.isascii())
    expected = handle_message(store.ctx, world.predictors, APP, text, actor=RELEASER)
    asked = _cli(store, "apps", "support", "ask", APP, text, "--json", token=tokens[RELEASER.name])
    assert asked.returncode == 0, asked.stderr
    reply = json.loads(asked.stdout)
    assert (reply["decision"], reply["intent"], reply["deployment"]) == \
        (expected.decision, expected.intent, DEPLOYMENT)
    assert reply["confidence"] == pytest.approx(expected.confidence, abs=1e-4)
    assert [a["article_id"] for a in reply["articles"]] == [a["article_id"] for a in expected.articles]
    assert reply["conversation_id"] != expected.conversation_id  # a conversation of its own

    # Asking for a person hands over; the customer's next message waits with it.
    code, out, err = run("ask", APP, PERSON, token=tokens[RELEASER.name])
    assert code == 0, err
    out = _flat(out)
    assert "handoff" in out and "the customer asked for a person" in out
    conversation = out.split("conversation ")[-1].split(",")[0]
    code, out, _ = run("ask", APP, "Hello? Is anyone there?", "--conversation", conversation, "--json",
                       token=tokens[RELEASER.name])
    assert code == 0 and json.loads(out)["state"] == "handed_over"

    code, out, err = run("queue", "--app", APP, "--json", token=tokens[AGENT.name])
    assert code == 0, err
    (waiting,) = [c for c in json.loads(out) if c["public_id"] == conversation]
    number = str(waiting["id"])
    assert waiting["state"] == "handed_over" and waiting["last_customer_text"] == "Hello? Is anyone there?"

    code, out, _ = run("conversation", number, token=tokens[AGENT.name])
    assert code == 0 and PERSON in _flat(out) and "handed over" in out
    code, out, err = run("claim", number, token=tokens[AGENT.name])
    assert code == 0 and f"conversation {number} is yours" in out, err
    code, out, err = run("answer", number, "--intent", "card_arrival", "--reply", "Your card is on its way.",
                         "--article", "card_arrival-en-1", token=tokens[AGENT.name])
    assert code == 0, err
    assert f"resolved by {AGENT.name} as card_arrival" in _flat(out)

    code, out, err = run("export", APP, "--json", token=tokens[STEWARD.name])
    assert code == 0, err
    export = json.loads(out)
    assert int(number) in export["conversations"] and export["rows"] == len(export["conversations"])
    (version,) = list_dataset_versions(store.ctx.db, name=f"{APP}-handoffs")
    assert version.id == export["dataset_version_id"] and version.state == "draft"

    traced = _cli(store, "apps", "support", "trace", str(reply["message_id"]), token=tokens[OPERATOR.name])
    assert traced.returncode == 0, traced.stderr
    for part in ("support_message", "prediction", "model_version", "dataset_version", "helpdesk-kb"):
        assert part in traced.stdout, traced.stdout


def test_a_knowledge_base_is_imported_and_an_assistant_created_changed_and_calibrated(store: Store,
                                                                                     run: Run) -> None:
    tokens, kb = store.tokens, store.folder / "kb" / "knowledge.csv"
    code, out, err = run("import-kb", str(kb), "--name", "second-kb", token=tokens[STEWARD.name])
    assert code == 0, err
    out = _flat(out)
    assert "40 articles" in out and "second-kb v1" in out and "draft" in out and "data release-request" in out
    (draft,) = list_dataset_versions(store.ctx.db, name="second-kb")
    approval = request_approval(store.ctx, "dataset.release", draft.id, actor=STEWARD)
    decide(store.ctx, approval.id, actor=APPROVER, approve=True, comment="reviewed")

    code, out, err = run("create", "second", "--deployment", DEPLOYMENT, "--knowledge-version", str(draft.id),
                         "--setting", "top_k=2", "--json", token=tokens[RELEASER.name])
    assert code == 0, err
    app = json.loads(out)
    assert (app["name"], app["knowledge_version_id"], app["settings"]) == ("second", draft.id, {"top_k": 2})
    assert app["scope"] and app["owner"] == RELEASER.name

    code, out, err = run("change", "second", "--setting", "clarify_margin=0.2", "--json", token=tokens[RELEASER.name])
    assert code == 0, err
    assert json.loads(out)["settings"] == {"top_k": 2, "clarify_margin": 0.2}
    code, out, _ = run("calibrate", "second", token=tokens[RELEASER.name])
    assert code == 0 and "out of scope when energy score >" in _flat(out)


def test_bad_input_is_refused_with_a_clear_message_and_nothing_is_stored(store: Store, run: Run) -> None:
    tokens, ctx = store.tokens, store.ctx
    apps, messages, sources = _count(ctx, SqlSupportApp), _count(ctx, SqlSupportMessage), len(list_sources(ctx.db))
    bad_kb = store.folder / "bad.csv"
    bad_kb.write_text("article_id,text,label,language\nx-1,Cards arrive in 5 days.,card_arrival,en\n",
                      encoding="utf-8")
    # In a process of its own, as a user meets it: the message, the hint, the exit code.
    done = _cli(store, "apps", "support", "import-kb", str(bad_kb), "--name", "bad-kb", token=tokens[STEWARD.name])
    said = _flat(done.stderr)
    assert done.returncode == 2 and said.startswith("Error: bad.csv") and "has no 'title'" in said, said
    assert "Each row needs article_id, title, text" in said and done.stdout == ""

    refused = [
        (["show", "nope"], RELEASER, 2, "There is no support assistant named 'nope'"),
        (["ask", "nope", "hello"], RELEASER, 2, "There is no support assistant named 'nope'"),
        (["create", "third", "--deployment", DEPLOYMENT, "--knowledge-version", str(store.world.knowledge_version_id),
          "--setting", "temperature=2"], RELEASER, 2, "Unknown assistant setting 'temperature'"),
        (["change", APP, "--setting", "top_k"], RELEASER, 2, "--setting 'top_k' is not KEY=VALUE"),
        (["change", APP, "--setting", "clarify_margin=3"], RELEASER, 2, "between 0.0 and 1.0"),
        (["ask", APP, ""], RELEASER, 2, "The message is empty"),
        (["ask", APP, "x" * 2001], RELEASER, 2, "at most 2,000 are allowed"),
        (["ask", APP, "hello", "--conversation", "no-such-conversation"], RELEASER, 2, "has no conversation"),
        (["conversation", "99999"], AGENT, 2, "There is no conversation 99999"),
        (["claim", "99999"], AGENT, 2, "There is no conversation 99999"),
        (["answer", "99999", "--intent", "lost_card", "--reply", "ok"], AGENT, 2, "There is no conversation 99999"),
        (["trace", "99999"], OPERATOR, 2, "There is no support message 99999"),
        (["import-kb", str(store.folder / "missing.csv"), "--name", "bad-kb"], STEWARD, 2,
         "There is no knowledge-base file"),
        (["create", "third", "--deployment", DEPLOYMENT, "--knowledge-version",
          str(store.world.knowledge_version_id)], AGENT, 5, "app.manage"),
        (["list"], None, 5, "needs an API token"),
    ]
    for args, actor, code, message in refused:
        exit_code, out, err = run(*args, token=None if actor is None else tokens[actor.name])
        said = _flat(out + err)
        assert exit_code == code and message in said, f"{args[:3]}: exit {exit_code}: {said}"
        assert said.startswith("Error:"), said
    # The commands run where the store is: in client mode they say so (the API has its own routes).
    remote = _cli(store, "apps", "support", "list", token=tokens[AGENT.name], url="http://127.0.0.1:9")
    assert remote.returncode == 2 and "is local-only" in _flat(remote.stderr)

    assert (_count(ctx, SqlSupportApp), _count(ctx, SqlSupportMessage)) == (apps, messages)
    assert len(list_sources(ctx.db)) == sources and list_dataset_versions(ctx.db, name="bad-kb") == []
