"""Token classification: CoNLL reading, word-piece alignment, entity-level metrics, and a
tiny tagger that learns a toy NER set."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainkeeper.core.errors import InvalidInput
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.loop import seed_everything
from chainkeeper.training.tokens import (
    CASES,
    IGNORE,
    TokenTagger,
    align_tags,
    encode_sentences,
    entity_metrics,
    predict_tags,
    read_conll,
    train_token_tagger,
    word_case,
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
    [(ids, labels, cases)] = encode_sentences(tokenizer, [["Blackburnshire", "is"]], [[3, 0]], max_length=32)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    assert len(pieces) > 4  # the long word is split into several pieces
    assert [lab for lab in labels if lab != IGNORE] == [3, 0]
    assert labels[1] == 3 and labels[2] == IGNORE
    # every piece of a word carries the word's shape; [CLS] and [SEP] carry 0
    title, lower = CASES.index("title"), CASES.index("lower")
    assert cases == [0] + [title] * (len(pieces) - 3) + [lower, 0]


@pytest.mark.parametrize(("word", "shape"), [
    ("bank", "lower"), ("Bank", "title"), ("IBM", "upper"), ("I", "upper"), ("iPhone", "mixed"),
    ("McDonald", "mixed"), ("1996", "number"), ("3-1", "number"), ("A4", "alphanumeric"), (",", "other"),
    ("Zürich", "title"), ("ÉTAT", "upper"),
])
def test_word_shapes(word: str, shape: str) -> None:
    assert CASES[word_case(word)] == shape


def test_casing_lets_an_uncased_tagger_see_capitals(tiny_model_dir: Path, tmp_path: Path) -> None:
    # The MiniLM tokenizer lower-cases: "Rose" and "rose" are the same pieces, and only
    # the capital says which one is a name. With the word-shape embedding the tagger
    # learns it; without, it cannot beat a coin on these words.
    sentences, tags = [], []
    for word, named in [(w, n) for w in ("rose", "bill", "mark", "jack") for n in (True, False)] * 4:
        sentences.append(["then", word.title() if named else word, "left"])
        tags.append(["O", "B-PER" if named else "O", "O"])

    def trained(casing: bool) -> tuple[TokenTagger, object]:
        seed_everything(13)
        model, tokenizer = TokenTagger.from_base(tiny_model_dir, TAGS, dropout=0.0, casing=casing)
        config = TrainConfig(epochs=20, batch_size=8, learning_rate=5e-3, head_lr_multiplier=1.0,
                             warmup_ratio=0.0, max_length=16)
        train_token_tagger(model, tokenizer, sentences, tags, config)
        return model, tokenizer

    def middle_accuracy(model: TokenTagger, tokenizer: object) -> float:
        predicted = predict_tags(model, tokenizer, sentences, max_length=16)  # type: ignore[arg-type]
        return sum(p[1] == t[1] for p, t in zip(predicted, tags, strict=True)) / len(tags)

    with_casing = trained(True)
    assert middle_accuracy(*with_casing) == 1.0
    assert middle_accuracy(*trained(False)) <= 0.75
    folder = with_casing[0].save(tmp_path / "tagger", with_casing[1])  # type: ignore[arg-type]
    loaded, tokenizer = TokenTagger.load(folder)
    assert loaded.meta.casing and middle_accuracy(loaded, tokenizer) == 1.0


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
