"""Vocabulary extension: Chinese characters the base reads as [UNK] become tokens of their
own, with embedding rows that train fast, and the extended model survives saving,
loading, ONNX export and serving; a run records what it added and scores each language."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from chainkeeper.core.context import Context
from chainkeeper.core.jobs import JobState
from chainkeeper.core.worker import Worker
from chainkeeper.governance.users import create_user, issue_token
from chainkeeper.registry import register_model_version
from chainkeeper.serving import load_predictor, request_export
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.loop import build_optimizer, seed_everything, train_classifier
from chainkeeper.training.model import ClassifierMeta, TextClassifier
from chainkeeper.training.pretraining import build_tokenizer
from chainkeeper.training.runs import get_run, start_training_run
from chainkeeper.training.vocabulary import (
    extend_tokenizer,
    extend_vocabulary,
    learn_new_rows,
    unknown_characters,
    unknown_share,
)
from tests.training.test_runs import ALICE, _dataset_version

ZH = ["我的卡丢了，怎么办", "转账失败了，钱去哪了", "我的卡丢了，请帮我冻结", "汇款没成功，能退回吗"]
EN = ["I lost my card, what now", "my transfer failed"]
LABELS = ["lost_card", "transfer_failed"]
# Two intents in both languages, separable by their words, for a run on the tiny model.
ROWS = ([(f"我的卡丢了，请冻结 {i}", "lost_card") for i in range(10)]
        + [(f"转账失败了，钱去哪了 {i}", "transfer_failed") for i in range(10)]
        + [(f"I lost my card please block it {i}", "lost_card") for i in range(10)]
        + [(f"my bank transfer failed again {i}", "transfer_failed") for i in range(10)])
FAST = TrainConfig(epochs=3, batch_size=8, learning_rate=5e-3, head_lr_multiplier=1.0, dropout=0.0,
                   log_every_steps=4, max_length=32)


def _classifier(base: Path) -> tuple[TextClassifier, object]:
    seed_everything(13)
    return TextClassifier.from_base(base, ClassifierMeta(labels=LABELS, max_length=32))


def test_unknown_chinese_characters_become_single_tokens(tiny_model_dir: Path) -> None:
    _, tokenizer = _classifier(tiny_model_dir)
    before = tokenizer.tokenize(ZH[0])
    assert before.count("[UNK]") >= 3  # the English base knows 我 and 的, not 卡 丢 了 …

    chars = unknown_characters(tokenizer, ZH + EN)
    assert chars and len(set(chars)) == len(chars)
    assert "卡" in chars and "我" not in chars  # only what the base lacks, in first-seen order
    assert chars == sorted(chars, key="".join(ZH).index)
    extended = extend_tokenizer(tokenizer, chars)

    assert extended.tokenize(ZH[0]) == ["我", "的", "卡", "丢", "了", "，", "怎", "么", "办"]
    assert len(extended) == len(tokenizer) + len(chars)
    assert [extended.convert_tokens_to_ids(c) for c in chars] == list(range(len(tokenizer),
                                                                            len(tokenizer) + len(chars)))
    assert unknown_share(tokenizer, ZH) > 0.3 and unknown_share(extended, ZH) == 0.0
    for text in EN:  # English is read exactly as before
        assert extended(text)["input_ids"] == tokenizer(text)["input_ids"]
    # Serving builds a Rust tokenizer from the fast one: it reads the new tokens too.
    assert extended.backend_tokenizer.encode(ZH[0]).tokens[1:-1] == extended.tokenize(ZH[0])


def test_a_tokenizer_that_cannot_be_extended_is_left_alone(tiny_model_dir: Path) -> None:
    # Byte-level BPE has no [UNK]: nothing is unknown, nothing to extend.
    bpe = build_tokenizer(ZH * 3, "bpe", vocab_size=300, max_length=32)
    assert unknown_characters(bpe, ZH) == []
    with pytest.raises(ValueError, match="WordPiece"):
        extend_tokenizer(bpe, ["卡"])
    # Tokens added on top of the vocabulary hold the ids new characters would take.
    model, tokenizer = _classifier(tiny_model_dir)
    tokenizer.add_tokens(["<account>"])
    model.encoder.resize_token_embeddings(len(tokenizer))
    same, extension = extend_vocabulary(model.encoder, tokenizer, ZH, seed=13)
    assert same is tokenizer and extension.added == [] and extension.unk_share_after > 0.3
    assert model.encoder.get_input_embeddings().weight.shape[0] == len(tokenizer)


def test_extension_resizes_the_embeddings_keeps_the_old_rows_and_is_seeded(tiny_model_dir: Path) -> None:
    model, tokenizer = _classifier(tiny_model_dir)
    old = model.encoder.get_input_embeddings().weight.detach().clone()
    extended, extension = extend_vocabulary(model.encoder, tokenizer, ZH, seed=13)

    rows = model.encoder.get_input_embeddings().weight.detach()
    assert rows.shape == (len(extended), old.shape[1]) == (old.shape[0] + len(extension.added), old.shape[1])
    assert model.encoder.config.vocab_size == len(extended)
    assert torch.equal(rows[:old.shape[0]], old)
    new = rows[old.shape[0]:]
    assert torch.isfinite(new).all() and torch.cdist(new, new).fill_diagonal_(1.0).min() > 0  # all distinct
    assert extension.base_size == old.shape[0] and extension.unk_share_after < extension.unk_share_before
    record = extension.record()
    assert record["added_tokens"] == len(extension.added) and record["unk_share_after"] == 0.0

    again, _ = _classifier(tiny_model_dir)
    extend_vocabulary(again.encoder, tokenizer, ZH, seed=13)
    assert torch.equal(again.encoder.get_input_embeddings().weight, rows)

    # Nothing unknown: the same tokenizer back, the encoder untouched.
    same, nothing = extend_vocabulary(again.encoder, extended, ZH, seed=13)
    assert same is extended and nothing.added == [] and nothing.record()["added_tokens"] == 0


def test_new_rows_train_at_their_own_rate_and_merge_back_into_one_embedding(tiny_model_dir: Path) -> None:
    model, tokenizer = _classifier(tiny_model_dir)
    tokenizer, extension = extend_vocabulary(model.encoder, tokenizer, ZH, seed=13)
    base = extension.base_size
    before = model.encoder.get_input_embeddings().weight.detach().clone()
    config = FAST.model_copy(update={"new_tokens_lr_multiplier": 7.0})
    with learn_new_rows(model.encoder, extension):
        names = dict(model.named_parameters())
        assert names["encoder.embeddings.word_embeddings.new_rows"].shape[0] == len(extension.added)
        assert names["encoder.embeddings.word_embeddings.weight"].shape[0] == base
        groups = build_optimizer(model, config).param_groups
        [new_group] = [g for g in groups if any(p is names["encoder.embeddings.word_embeddings.new_rows"]
                                                for p in g["params"])]
        assert new_group["lr"] == pytest.approx(config.learning_rate * 7.0) and len(new_group["params"]) == 1
        train_classifier(model, tokenizer, ZH, [0, 1, 0, 1], config)
    embedding = model.encoder.get_input_embeddings()
    assert type(embedding) is nn.Embedding and embedding.weight.shape == before.shape
    assert not any(name.endswith("new_rows") for name, _ in model.named_parameters())
    moved = (embedding.weight.detach() - before).abs().mean(dim=1)  # (vocab,)
    # The new rows learnt, far more than the base's rows (which only weight decay moves
    # unless a text uses them).
    assert moved[base:].mean() > 10 * moved[:base].mean()


def test_an_extended_model_survives_save_and_load(tiny_model_dir: Path, tmp_path: Path) -> None:
    model, tokenizer = _classifier(tiny_model_dir)
    tokenizer, extension = extend_vocabulary(model.encoder, tokenizer, ZH, seed=13)
    with learn_new_rows(model.encoder, extension):
        train_classifier(model, tokenizer, ZH + EN, [0, 1, 0, 1, 0, 1], FAST)
    folder = model.save(tmp_path / "model", tokenizer)

    loaded, loaded_tokenizer = TextClassifier.load(folder)
    assert len(loaded_tokenizer) == len(tokenizer) and loaded_tokenizer.tokenize(ZH[0]) == tokenizer.tokenize(ZH[0])
    assert loaded.encoder.config.vocab_size == len(tokenizer)
    torch.testing.assert_close(loaded.predict_proba(loaded_tokenizer, ZH + EN), model.predict_proba(tokenizer, ZH + EN))


def test_a_trained_extended_model_is_exported_and_served_by_onnx_as_by_pytorch(ctx: Context, tmp_path: Path,
                                                                                tiny_model_dir: Path) -> None:
    # The user's path: a run on bilingual data, registered, exported by the export job
    # (scored on the run's test split), then served by ONNX Runtime with its Rust tokenizer.
    run = _run(ctx, tmp_path, tiny_model_dir)["run"]
    version = register_model_version(ctx, run_id=run.id, name="bilingual", actor=ALICE)
    job = request_export(ctx, version.id, actor=ALICE)
    done = Worker(ctx).run_one()
    assert done is not None and done.id == job.id and done.state == JobState.SUCCEEDED, done and done.error

    texts = [*ZH, "我的卡丢了", *EN]
    served = load_predictor(ctx, version, engine="onnx")
    assert served.engine == "onnx"
    onnx_answers, torch_answers = served.predict(texts), load_predictor(ctx, version, engine="torch").predict(texts)
    assert [p.label for p in onnx_answers] == [p.label for p in torch_answers]
    np.testing.assert_allclose([p.score for p in onnx_answers], [p.score for p in torch_answers], atol=1e-4)


def _run(ctx: Context, tmp_path: Path, tiny_model_dir: Path, rows: list[tuple[str, str]] = ROWS,
         **overrides: object) -> dict:
    version_id = _dataset_version(ctx, tmp_path, rows)
    run = start_training_run(ctx, dataset_version_id=version_id, config=FAST.model_copy(update=overrides),
                             actor=ALICE, base_model=tiny_model_dir)
    job = Worker(ctx).run_one()
    assert job is not None and job.state == JobState.SUCCEEDED, job and job.error
    done = get_run(ctx.db, run.id)
    return {"run": done, "folder": ctx.artifacts.get_tree(done.model_artifact or "", tmp_path / f"m{run.id}")}


def test_a_run_extends_the_vocabulary_by_default_and_scores_each_language(ctx: Context, tmp_path: Path,
                                                                           tiny_model_dir: Path) -> None:
    out = _run(ctx, tmp_path, tiny_model_dir)
    run = out["run"]
    assert run.config["extend_vocab"] is True
    vocabulary = run.metrics["train"]["vocabulary"]
    assert vocabulary["added_tokens"] >= 5 and "卡" in vocabulary["added_sample"]
    assert vocabulary["unk_share_before"] > vocabulary["unk_share_after"] == 0.0
    test = run.metrics["test"]
    assert set(test["by_language"]) <= {"en", "zh"}
    assert sum(m["count"] for m in test["by_language"].values()) == test["support"]
    _, tokenizer = TextClassifier.load(out["folder"])
    assert len(tokenizer) == vocabulary["base_vocab_size"] + vocabulary["added_tokens"]
    assert "[UNK]" not in tokenizer.tokenize("我的卡丢了")


def test_extend_vocab_false_trains_on_the_base_vocabulary(ctx: Context, tmp_path: Path,
                                                          tiny_model_dir: Path) -> None:
    out = _run(ctx, tmp_path, tiny_model_dir, extend_vocab=False)
    assert "vocabulary" not in out["run"].metrics["train"]
    _, tokenizer = TextClassifier.load(out["folder"])
    assert len(tokenizer) == 30522 and "[UNK]" in tokenizer.tokenize("我的卡丢了")


def test_train_report_shows_accuracy_per_language(ctx: Context, tmp_path: Path, tiny_model_dir: Path) -> None:
    run = _run(ctx, tmp_path, tiny_model_dir)["run"]
    create_user(ctx.db, "emil", roles=["ml_engineer"])
    env = {**os.environ, "CHAINKEEPER_HOME": str(ctx.settings.home), "CHAINKEEPER_DATABASE_URL": ctx.db.url,
           "CHAINKEEPER_TOKEN": issue_token(ctx.db, "emil", name="test").secret, "COLUMNS": "200"}

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "chainkeeper.cli.main", "train", "report", str(run.id), *args],
                              env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        return done.stdout

    by_language = json.loads(cli("--json"))["splits"]["test"]["by_language"]
    assert by_language == run.metrics["test"]["by_language"]
    text = cli()
    assert "language" in text and "macro-F1" in text
    for language, m in by_language.items():
        assert any(line.split()[:2] == [language, f"{m['accuracy']:.4f}"] for line in text.splitlines())


def test_multi_label_and_tagger_runs_extend_the_vocabulary_too(ctx: Context, tmp_path: Path,
                                                               tiny_model_dir: Path) -> None:
    from chainkeeper.data.ingest import import_file
    from chainkeeper.data.versions import create_dataset_version
    from chainkeeper.training.tokens import TokenTagger, predict_tags
    from tests.training.test_runs import release

    rows = [(text, f"{label}|urgent" if i % 2 else label) for i, (text, label) in enumerate(ROWS)]
    multi = _run(ctx, tmp_path, tiny_model_dir, rows, multi_label_separator="|")
    assert multi["run"].metrics["train"]["vocabulary"]["added_tokens"] >= 5
    _, tokenizer = TextClassifier.load(multi["folder"])
    assert "[UNK]" not in tokenizer.tokenize("我的卡丢了")

    # A tagger on Chinese words: 张伟 (a person) visited 杭州 (a place).
    names, places = ["张伟", "李娜", "王芳"], ["杭州", "成都", "西安"]
    lines = ["-DOCSTART- -X- -X- O", ""]
    for i in range(30):
        lines += [f"{names[i % 3]} NR B-NP B-PER", "去了 VV B-VP O", f"{places[(i // 3) % 3]} NR B-NP B-LOC",
                  f"第{i}次 NN B-NP O", ""]
    path = tmp_path / "zh.conll"
    path.write_text("\n".join(lines), encoding="utf-8")
    source = import_file(ctx, path, actor=ALICE, format="conll")
    version_id = release(ctx, create_dataset_version(ctx, name="zh-ner", source_ids=[source.id], actor=ALICE).id)
    run = start_training_run(ctx, dataset_version_id=version_id, config=FAST, actor=ALICE,
                             base_model=tiny_model_dir)
    job = Worker(ctx).run_one()
    assert job is not None and job.state == JobState.SUCCEEDED, job and job.error
    done = get_run(ctx.db, run.id)
    assert done.metrics["train"]["vocabulary"]["added_tokens"] >= 5
    tagger, tagger_tokenizer = TokenTagger.load(ctx.artifacts.get_tree(done.model_artifact or "", tmp_path / "tagger"))
    assert "[UNK]" not in tagger_tokenizer.tokenize("张伟 去了 杭州")
    [tags] = predict_tags(tagger, tagger_tokenizer, [["张伟", "去了", "杭州"]], max_length=32)
    assert len(tags) == 3
