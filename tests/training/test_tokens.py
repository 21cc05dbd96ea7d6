"""Token classification: CoNLL reading, word-piece alignment, entity-level metrics, and a
tiny tagger that learns a toy NER set."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainkeeper.core.errors import InvalidInput
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.loop import seed_everything
from chainkeeper.training.tokens import (
    IGNORE,
    TokenTagger,
    align_tags,
    encode_sentences,
    entity_metrics,
    predict_tags,
    read_conll,
    train_token_tagger,
)

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def test_read_conll_takes_the_last_column_and_skips_docstart() -> None:
    assert read_conll(CONLL) == [(["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"]),
                                 (["Peter", "Blackburn"], ["B-PER", "I-PER"])]


def test_only_the_first_piece_of_a_word_carries_its_tag() -> None:
    # [CLS] Black ##burn went [SEP]
    assert align_tags([None, 0, 0, 1, None], [2, 0]) == [IGNORE, 2, IGNORE, 0, IGNORE]


def test_alignment_with_the_real_tokenizer(tiny_model_dir: Path) -> None:
    _, tokenizer = TokenTagger.from_base(tiny_model_dir, TAGS)
    [(ids, labels)] = encode_sentences(tokenizer, [["Blackburnshire", "is"]], [[3, 0]], max_length=32)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    assert len(pieces) > 4  # the long word is split into several pieces
    assert [lab for lab in labels if lab != IGNORE] == [3, 0]
    assert labels[1] == 3 and labels[2] == IGNORE


def test_entity_metrics_by_hand() -> None:
    truth = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O"]]
    guess = [["B-PER", "I-PER", "O", "B-PER"], ["B-LOC", "O"]]
    m = entity_metrics(truth, guess, TAGS)
    # gold entities: PER(0-1), LOC(3), LOC(0 of s2); predicted: PER(0-1), PER(3), LOC -> 2 of 3 right
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["per_type"]["LOC"]["recall"] == pytest.approx(0.5)
    assert m["per_type"]["PER"]["precision"] == pytest.approx(0.5)
    assert m["token"]["accuracy"] == pytest.approx(5 / 6)
    assert "LOC" in m["report"]
    with pytest.raises(InvalidInput, match="Sentence 0"):
        entity_metrics([["O"]], [["O", "O"]], TAGS)


def test_a_tiny_tagger_learns_a_toy_ner_set(tiny_model_dir: Path) -> None:
    names, places = ["alice", "bob", "carol", "dave"], ["paris", "rome", "oslo", "lima"]
    sentences, tags = [], []
    for i in range(32):
        sentences.append([names[i % 4], "visited", places[(i // 4) % 4], "today"])
        tags.append(["B-PER", "O", "B-LOC", "O"])
    seed_everything(13)
    model, tokenizer = TokenTagger.from_base(tiny_model_dir, TAGS, dropout=0.0)
    config = TrainConfig(epochs=15, batch_size=8, learning_rate=5e-3, head_lr_multiplier=1.0, warmup_ratio=0.0,
                         max_length=16, log_every_steps=10)
    result = train_token_tagger(model, tokenizer, sentences, tags, config)
    assert result.steps == 15 * 4 and result.final_loss < result.losses[0][1]
    predicted = predict_tags(model, tokenizer, sentences[:8], max_length=16)
    assert all(len(p) == 4 for p in predicted)
    assert entity_metrics(tags[:8], predicted, TAGS)["f1"] >= 0.9
    with pytest.raises(InvalidInput, match="'B-ORG'"):
        train_token_tagger(model, tokenizer, [["EU"]], [["B-ORG"]], config)
