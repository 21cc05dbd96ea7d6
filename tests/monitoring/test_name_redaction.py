"""Person names never reach the prediction log or the monitoring report (issue 15, item 7).

With ``pii_name_model`` naming a registered token tagger, the server's log writer tags the
served texts with that model's production version, off the request path, and stores each
person name as ``[NAME]`` beside the regex placeholders. The tagger is a tiny one trained
here, in seconds, on templated sentences ("My name is Alice Smith ..."); a tiny model
may miss a name or take a word for one, so the stored rows are compared with what the
tagger itself answers for each text: every PER span it finds is ``[NAME]`` and nothing
else changed (and the names the sentences were built from are gone).

When the model cannot be used (no production version, not a tagger, its files missing)
every text is still stored, with the regex redaction only, at once; one warning is
logged, the texts are counted in ``chainkeeper_prediction_log_names_unchecked_total``,
and a version promoted later takes over.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainkeeper.api.app import create_app
from chainkeeper.api.server import RunningServer, start_server_in_thread
from chainkeeper.chain import open_context
from chainkeeper.core.context import Context
from chainkeeper.core.settings import Settings
from chainkeeper.data import PLACEHOLDERS, find_pii
from chainkeeper.governance.users import create_user, issue_token
from chainkeeper.monitoring.names import NAME_PLACEHOLDER, NameTagger, add_names
from chainkeeper.monitoring.predictions import get_prediction, prediction_record
from chainkeeper.registry.versions import ModelVersion
from chainkeeper.serving import load_predictor
from chainkeeper.serving.deployments import deploy_model_version
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.tokens import TokenTagger, train_token_tagger
from tests.model_rows import RELEASER, in_production, save_tiny_classifier

FIRST = ["Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Irene", "James", "Karen", "Liam"]
LAST = ["Smith", "Jones", "Brown", "Taylor", "Wilson", "Evans", "Walker", "Wright", "Baker"]
# (template, position of the name's first word); a name is two words.
TEMPLATES = [("My name is {n} and my card was declined", 3), ("Hi , this is {n} calling about my refund", 3),
             ("Please ask {n} to call me back", 2), ("{n} here , the transfer failed", 0)]
NEGATIVES = ["My card was declined at Tesco", "The refund from Amazon has not arrived",
             "I want to transfer money to London", "Please call me back on Monday"]
# Served as a caller writes them; the names come from the training sentences' lists.
NAMES = ["Alice Smith", "Henry Brown", "Grace Wilson"]
TEXTS = [
    "My name is Alice Smith and my card was declined, call me on (415) 555-0132",
    "Hi, this is Henry Brown calling about my refund",
    "Please ask Grace Wilson to call me back",
    "The refund from Amazon has not arrived",
]


def _sentences(n: int = 320) -> tuple[list[list[str]], list[list[str]]]:
    rng = random.Random(0)
    words, tags = [], []
    for i in range(n):
        if i % 4 == 3:
            sentence = rng.choice(NEGATIVES).split()
            words.append(sentence)
            tags.append(["O"] * len(sentence))
            continue
        template, at = rng.choice(TEMPLATES)
        sentence = template.format(n=f"{rng.choice(FIRST)} {rng.choice(LAST)}").split()
        row = ["O"] * len(sentence)
        row[at], row[at + 1] = "B-PER", "I-PER"
        words.append(sentence)
        tags.append(row)
    return words, tags


@pytest.fixture(scope="module")
def tagger_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny tagger of person names, trained by the chain's training function (~3 s)."""
    import torch

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: threads only wait on each other (100 s instead of 3 on a busy host)
    model, tokenizer = TokenTagger.from_base(tiny_model_dir, ["O", "B-PER", "I-PER"], max_length=32, casing=True,
                                             dropout=0.0)
    words, tags = _sentences()
    config = TrainConfig(epochs=10, batch_size=16, learning_rate=5e-3, head_lr_multiplier=1.0, dropout=0.0,
                         warmup_ratio=0.0, max_length=32, log_every_steps=1000)
    try:
        train_token_tagger(model, tokenizer, words, tags, config)
    finally:
        torch.set_num_threads(threads)
    return model.save(tmp_path_factory.mktemp("name-tagger") / "model", tokenizer)


@pytest.fixture
def named_ctx(settings: Settings) -> Iterator[Context]:
    """A store whose settings name the model "names" as the tagger of person names."""
    context = open_context(settings.model_copy(update={"pii_name_model": "names"}))
    yield context
    context.close()


def _serve(ctx: Context, tiny_model_dir: Path, tmp_path: Path) -> tuple[RunningServer, str]:
    """A deployed classifier ("support") on a running server, and a token allowed to predict and monitor."""
    version = in_production(ctx, "intents",
                            model_artifact=ctx.artifacts.put_tree(save_tiny_classifier(tiny_model_dir, tmp_path / "m")))
    deploy_model_version(ctx, name="support", model_version_id=version.id, actor=RELEASER)
    create_user(ctx.db, "olive", roles=["operator"])
    return start_server_in_thread(create_app(ctx), host="127.0.0.1", port=0), issue_token(ctx.db, "olive",
                                                                                          name="t").secret


def _expected(ctx: Context, version: ModelVersion, text: str) -> str:
    """The text as the log must store it: the regex placeholders and the tagger's own PER spans as [NAME]."""
    [(entities, _)] = load_predictor(ctx, version).entities([text])
    names = [(e.start, e.end) for e in entities if e.type == "PER"]
    return _render(text, add_names([(p.start, p.end, PLACEHOLDERS[p.kind]) for p in find_pii(text)], names))


def _render(text: str, spans: list[tuple[int, int, str]]) -> str:
    out, at = [], 0
    for start, end, placeholder in spans:
        out += [text[at:start], placeholder]
        at = end
    return "".join(out + [text[at:]])


def test_names_in_served_texts_are_stored_and_reported_as_placeholders(
        named_ctx: Context, tagger_dir: Path, tiny_model_dir: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    ctx = named_ctx
    caplog.set_level(logging.DEBUG)  # every log line of the server, the writer and the tagger
    names = in_production(ctx, "names", model_artifact=ctx.artifacts.put_tree(tagger_dir))
    deploy_model_version(ctx, name="ner", model_version_id=names.id, actor=RELEASER)  # the tagger serves too
    server, token = _serve(ctx, tiny_model_dir, tmp_path)
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            answer = client.post("/v1/deployments/support/predict", json={"texts": TEXTS})
            tagged = client.post("/v1/deployments/ner/predict", json={"text": TEXTS[1]})
            assert answer.status_code == 200 and tagged.status_code == 200, (answer.text, tagged.text)
            rows = [get_prediction(ctx.db, p["request_id"]) for p in answer.json()["predictions"]]
            own = get_prediction(ctx.db, tagged.json()["predictions"][0]["request_id"])
            report = client.get("/api/monitoring/deployments/support/report")
            page = client.get("/api/monitoring/deployments/support/report.html")
            metrics = client.get("/metrics")
    finally:
        server.stop()

    # Every PER span the tagger finds is [NAME], the regex placeholders stay, nothing else changed.
    expected = [_expected(ctx, names, text) for text in TEXTS]
    assert [r.input_text for r in rows] == expected
    assert rows[0].input_text.startswith("My name is [NAME] and my card was declined")
    assert rows[0].input_text.endswith("[PHONE]")
    assert rows[3].input_text == TEXTS[3]  # no name: stored as sent
    assert [r.pii_spans for r in rows] == [e.count("[") for e in expected]
    # The tagger deployment's own PER entities are stored as [NAME], like its input.
    assert own.input_text == expected[1]
    assert own.entities and {e["text"] for e in own.entities if e["type"] == "PER"} == {NAME_PLACEHOLDER}
    assert report.status_code == 200 and page.status_code == 200
    assert sorted(e["text"] for e in report.json()["low_confidence"]) == sorted(expected)
    for name in NAMES:
        assert not any(name in r.input_text for r in [*rows, own]), name
        assert name not in report.text and name not in page.text, name
        assert name not in caplog.text, name  # nor in any log line
    assert "chainkeeper_prediction_log_names_unchecked_total 0.0" in metrics.text
    assert "person names in the prediction log are redacted with model 'names' v1" in caplog.text


def _broken(ctx: Context, tiny_model_dir: Path, tmp_path: Path, case: str) -> None:
    if case == "a classifier":
        in_production(ctx, "names", model_artifact=ctx.artifacts.put_tree(
            save_tiny_classifier(tiny_model_dir, tmp_path / "classifier")))
    elif case == "files missing":
        in_production(ctx, "names", model_artifact="f" * 64)  # no such artefact in the store


@pytest.mark.parametrize("case", ["no production version", "a classifier", "files missing"])
def test_a_name_model_that_cannot_be_used_loses_and_delays_nothing(
        named_ctx: Context, tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        case: str) -> None:
    ctx = named_ctx
    _broken(ctx, tiny_model_dir, tmp_path, case)
    caplog.set_level(logging.WARNING, logger="chainkeeper.monitoring.names")
    server, token = _serve(ctx, tiny_model_dir, tmp_path)
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            ids = []
            for text in TEXTS[:2]:  # two requests, two batches
                answer = client.post("/v1/deployments/support/predict", json={"text": text})
                assert answer.status_code == 200, answer.text
                ids.append(answer.json()["predictions"][0]["request_id"])
                started = time.monotonic()
                rows = [get_prediction(ctx.db, i) for i in ids]  # flushes the writer
                assert time.monotonic() - started < 5.0
            metrics = client.get("/metrics")
    finally:
        server.stop()

    # Stored at once with the regex redaction only: the phone number goes, the name stays.
    assert [r.input_text for r in rows] == [TEXTS[0].replace("(415) 555-0132", "[PHONE]"), TEXTS[1]]
    warnings = [r for r in caplog.records if "person names are not redacted" in r.getMessage()]
    assert len(warnings) == 1, caplog.text  # once per outage, not once per batch
    assert "regex redaction only" in warnings[0].getMessage()
    assert not any(name in caplog.text for name in NAMES)
    assert "chainkeeper_prediction_log_names_unchecked_total 2.0" in metrics.text


def test_a_version_promoted_later_takes_over_at_the_next_look(named_ctx: Context, tagger_dir: Path) -> None:
    ctx = named_ctx
    now = [0.0]
    tagger = NameTagger(ctx.db, "names", lambda v: load_predictor(ctx, v), recheck_s=60.0, clock=lambda: now[0])

    assert tagger.find(TEXTS[:1]) is None
    assert tagger.stats().problem == "model 'names' has no version in production"
    version = in_production(ctx, "names", model_artifact=ctx.artifacts.put_tree(tagger_dir))
    now[0] = 30.0
    assert tagger.find(TEXTS[:1]) is None  # not asked again before recheck_s
    now[0] = 61.0
    found = tagger.find(TEXTS)
    assert found is not None and found[0] and found[3] == []
    stats = tagger.stats()
    assert (stats.model_version_id, stats.tagged, stats.unchecked, stats.problem) == (version.id, 4, 2, None)


SENTENCE = "My name is Alice Smith, mail me"
MAIL = "Write to alice.smith@example.com now"


@pytest.mark.parametrize(("text", "pii", "names", "stored"), [
    pytest.param(SENTENCE, [], [(11, 22)], "My name is [NAME], mail me", id="a-name"),
    pytest.param(MAIL, [(9, 32, "[EMAIL]")], [(9, 20)], "Write to [EMAIL] now", id="inside-an-e-mail"),
    pytest.param(SENTENCE, [(17, 22, "[X]")], [(11, 22)], "My name is [NAME][X], mail me", id="around-a-span"),
    pytest.param(SENTENCE, [], [(11, 16), (14, 22), (17, 22)], "My name is [NAME], mail me", id="overlapping"),
])
def test_names_are_added_around_the_regex_spans(text: str, pii: list[tuple[int, int, str]],
                                               names: list[tuple[int, int]], stored: str) -> None:
    assert _render(text, add_names(pii, names)) == stored


def test_a_record_with_names_keeps_its_regex_redaction_and_its_entities_agree() -> None:
    text = "I am Alice Smith, mail alice@example.com"
    entities: list[dict[str, Any]] = [{"type": "PER", "start": 5, "end": 16, "text": "Alice Smith", "score": 0.9},
                                      {"type": "EMAIL", "start": 23, "end": 40, "text": "alice@example.com"}]
    record = prediction_record(request_id="r", deployment_id=1, model_version_id=1, at=datetime.now(UTC), text=text,
                               label="PER", score=0.9, latency_ms=1.0, entities=entities, names=[(5, 16)])
    assert record.input_text == "I am [NAME], mail [EMAIL]" and record.pii_spans == 2
    assert [e["text"] for e in record.entities or []] == ["[NAME]", "[EMAIL]"]
