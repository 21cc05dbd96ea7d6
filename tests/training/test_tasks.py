"""Every task as a job, chosen from the dataset version: token classification with
entity-level metrics, masked-LM pre-training from scratch with a trained tokenizer whose
result is the base of a fine-tuned classifier, and continued (causal) pre-training."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.errors import InvalidInput
from chainkeeper.core.jobs import JobState
from chainkeeper.core.worker import Worker
from chainkeeper.governance.actors import Actor
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.jobs import RUN_FILE
from chainkeeper.training.loop import predict_labels
from chainkeeper.training.model import TextClassifier
from chainkeeper.training.runs import RunState, get_run, run_report_html, start_training_run
from chainkeeper.training.tokens import TokenTagger, predict_tags
from tests.training.test_runs import _dataset_version, release

ALICE = Actor("alice", frozenset({"data_steward", "ml_engineer"}))
_NAMES, _PLACES = ["alice", "bob", "carol", "dave", "erin"], ["paris", "rome", "oslo", "lima", "kyiv"]
FAST = dict(batch_size=8, learning_rate=5e-3, head_lr_multiplier=1.0, dropout=0.0, log_every_steps=5,
            warmup_ratio=0.0)


def conll_version(ctx: Context, tmp_path: Path, n: int = 50) -> int:
    """A released token-classification version: 'NAME visited PLACE today' sentences in CoNLL."""
    from chainkeeper.data.ingest import import_file
    from chainkeeper.data.versions import create_dataset_version

    lines = ["-DOCSTART- -X- -X- O", ""]
    for i in range(n):
        lines += [f"{_NAMES[i % 5]} NNP B-NP B-PER", "visited VBD B-VP O", f"{_PLACES[(i // 5) % 5]} NNP B-NP B-LOC",
                  f"today{i} NN B-NP O", ""]
    path = tmp_path / "toy.conll"
    path.write_text("\n".join(lines), encoding="utf-8")
    source = import_file(ctx, path, actor=ALICE, format="conll")
    return release(ctx, create_dataset_version(ctx, name="toy-ner", source_ids=[source.id], actor=ALICE).id)


def text_version(ctx: Context, tmp_path: Path, texts: list[str]) -> int:
    """A released unlabelled version (a text-only CSV) for pre-training."""
    from chainkeeper.data.ingest import import_file
    from chainkeeper.data.versions import create_dataset_version

    path = tmp_path / "corpus.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text"])
        writer.writerows([t] for t in texts)
    source = import_file(ctx, path, actor=ALICE, label_column=None)
    return release(ctx, create_dataset_version(ctx, name="corpus", source_ids=[source.id], actor=ALICE).id)


CORPUS = [f"my card payment failed at the shop number {i}" for i in range(20)] + \
         [f"heavy rain and wind tonight over the hills {i}" for i in range(20)] + \
         [f"refund my bank transfer please today {i}" for i in range(20)] + \
         [f"sunny and warm afternoon by the sea {i}" for i in range(20)]


def _run_job(ctx: Context) -> None:
    job = Worker(ctx).run_one()
    assert job is not None and job.state == JobState.SUCCEEDED, job and job.error


def test_a_token_classification_version_trains_a_tagger_with_entity_metrics(ctx: Context, tmp_path: Path,
                                                                            tiny_model_dir: Path) -> None:
    version_id = conll_version(ctx, tmp_path)
    config = TrainConfig(epochs=12, max_length=16, eval_every_steps=10, **FAST)
    run = start_training_run(ctx, dataset_version_id=version_id, config=config, actor=ALICE,
                             base_model=tiny_model_dir)
    assert run.task == "token-classification"  # chosen from the version, config said "auto"
    _run_job(ctx)

    done = get_run(ctx.db, run.id)
    assert done.state == RunState.SUCCEEDED
    test = done.metrics["test"]
    assert test["f1"] >= 0.9 and set(test["per_type"]) == {"PER", "LOC"}
    assert test["token"]["labels"] == ["B-LOC", "B-PER", "O"] and test["token"]["accuracy"] >= 0.9
    assert done.metrics["train"]["dev_curve"] and "f1" in done.metrics["train"]["dev_curve"][0]
    page = run_report_html(ctx, run.id, actor=ALICE)
    assert "Entity level (seqeval" in page and "Token level" in page and "LOC" in page

    folder = ctx.artifacts.get_tree(done.model_artifact, tmp_path / "tagger")
    model, tokenizer = TokenTagger.load(folder)
    assert predict_tags(model, tokenizer, [["bob", "visited", "oslo", "today"]], max_length=16) == \
        [["B-PER", "O", "B-LOC", "O"]]
    with pytest.raises(InvalidInput, match="token-classification model"):
        TextClassifier.load(folder)


def test_a_tag_map_missing_a_tag_fails_the_run_and_names_the_tag(ctx: Context, tmp_path: Path,
                                                                tiny_model_dir: Path) -> None:
    version_id = conll_version(ctx, tmp_path, n=20)
    config = TrainConfig(max_steps=2, max_length=16, labels=["O", "B-PER"], **FAST)
    run = start_training_run(ctx, dataset_version_id=version_id, config=config, actor=ALICE,
                             base_model=tiny_model_dir)
    job = Worker(ctx).run_one()
    assert job is not None and job.state == JobState.FAILED
    failed = get_run(ctx.db, run.id)
    assert failed.state == RunState.FAILED and failed.model_artifact is None
    assert "tagged 'B-LOC'" in failed.metrics["error"] and "label map (O, B-PER)" in failed.metrics["error"]


def test_pretraining_from_scratch_gives_a_base_that_fine_tunes_and_predicts(ctx: Context, tmp_path: Path) -> None:
    corpus_id = text_version(ctx, tmp_path, CORPUS)
    scratch = {"tokenizer": "wordpiece", "vocab_size": 200, "hidden_size": 32, "layers": 2, "heads": 2,
               "intermediate_size": 64}
    config = TrainConfig(from_scratch=scratch, max_steps=30, max_length=32, **FAST)
    run = start_training_run(ctx, dataset_version_id=corpus_id, config=config, actor=ALICE)
    assert run.task == "masked-lm" and run.base_model == "(from scratch)"
    _run_job(ctx)
    pretrained = get_run(ctx.db, run.id)
    train = pretrained.metrics["train"]
    assert train["steps"] == 30 and train["final_loss"] < train["loss_curve"][0][1]
    assert pretrained.metrics["test"]["perplexity"] > 1.0
    base = ctx.artifacts.get_tree(pretrained.model_artifact, tmp_path / "base")
    assert {"config.json", "model.safetensors", "tokenizer.json", RUN_FILE} <= {p.name for p in base.iterdir()}

    labelled_id = _dataset_version(ctx, tmp_path)
    fine = start_training_run(ctx, dataset_version_id=labelled_id, actor=ALICE, base_model=base,
                              config=TrainConfig(epochs=6, max_length=32, **FAST))
    assert fine.task == "sequence-classification"
    _run_job(ctx)
    done = get_run(ctx.db, fine.id)
    assert done.state == RunState.SUCCEEDED and done.metrics["test"]["accuracy"] >= 0.75
    model, tokenizer = TextClassifier.load(ctx.artifacts.get_tree(done.model_artifact, tmp_path / "fine"))
    assert predict_labels(model, tokenizer, ["my card payment failed 3", "heavy rain and wind tonight 5"]) == \
        ["money", "weather"]


def test_continued_causal_pretraining_of_a_decoder_built_from_scratch(ctx: Context, tmp_path: Path) -> None:
    corpus_id = text_version(ctx, tmp_path, CORPUS)
    scratch = {"tokenizer": "bpe", "vocab_size": 300, "hidden_size": 32, "layers": 2, "heads": 2,
               "intermediate_size": 64}
    first = start_training_run(ctx, dataset_version_id=corpus_id, actor=ALICE,
                               config=TrainConfig(from_scratch=scratch, max_steps=20, max_length=32, **FAST))
    assert first.task == "causal-lm"  # a BPE tokenizer means a GPT-style decoder
    _run_job(ctx)
    decoder = ctx.artifacts.get_tree(get_run(ctx.db, first.id).model_artifact, tmp_path / "decoder")

    # Continued pre-training on the same corpus: the decoder base makes "auto" causal.
    second = start_training_run(ctx, dataset_version_id=corpus_id, actor=ALICE, base_model=decoder,
                                config=TrainConfig(max_steps=10, max_length=32, **FAST))
    assert second.task == "causal-lm"
    _run_job(ctx)
    before = get_run(ctx.db, first.id).metrics["test"]["loss"]
    after = get_run(ctx.db, second.id).metrics["test"]["loss"]
    assert after < before  # ten more steps on the same text lower the held-out loss


def test_a_task_that_does_not_fit_the_data_is_refused_before_anything_is_stored(
        ctx: Context, tmp_path: Path, tiny_model_dir: Path) -> None:
    from chainkeeper.training.runs import count_runs

    corpus_id = text_version(ctx, tmp_path, CORPUS[:10])
    with pytest.raises(InvalidInput, match="needs a token_classification dataset version"):
        start_training_run(ctx, dataset_version_id=corpus_id, actor=ALICE, base_model=tiny_model_dir,
                           config=TrainConfig(task="token-classification"))
    with pytest.raises(InvalidInput, match="from_scratch"):
        start_training_run(ctx, dataset_version_id=_dataset_version(ctx, tmp_path), actor=ALICE,
                           config=TrainConfig(from_scratch={"layers": 1}))
    assert count_runs(ctx.db) == 0
