"""Token classification served: entity spans with offsets into the text as sent.

The decoding (``serving.spans``) is tested on given tag sequences, where the right
answer is known; the runtime (``serving.tagging``) on a rule that tags by word shape
(every Title-case word a person), so its windows, offsets and casing input are checked
on text where the answer is known too; the tiny random tagger checks only that both
engines (PyTorch, ONNX) answer alike and never point outside the text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chainkeeper.core.errors import InvalidInput
from chainkeeper.serving.spans import (
    Entity,
    decode_entities,
    entity_types,
    summarize_entities,
    validate_spans,
    windows,
    word_offsets,
)

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _words(text: str) -> list[tuple[int, int]]:
    """Whitespace words of a text with their offsets (the decode tests give words directly)."""
    out, start = [], None
    for i, ch in enumerate(text + " "):
        if ch.isspace() and start is not None:
            out.append((start, i))
            start = None
        elif not ch.isspace() and start is None:
            start = i
    return out


def _decode(text: str, tags: list[str]) -> list[tuple[str, str, int, int]]:
    words = _words(text)
    found = decode_entities(text, words, tags, [0.9] * len(tags))
    for e in found:
        assert e.text == text[e.start:e.end]
    return [(e.type, e.text, e.start, e.end) for e in found]


@pytest.mark.parametrize(("text", "tags", "expected"), [
    pytest.param("  Ada Lovelace met Bob  ", ["B-PER", "I-PER", "O", "B-PER"],
                 [("PER", "Ada Lovelace", 2, 14), ("PER", "Bob", 19, 22)], id="leading-and-trailing-spaces"),
    pytest.param("Ada Bob", ["B-PER", "B-PER"], [("PER", "Ada", 0, 3), ("PER", "Bob", 4, 7)],
                 id="b-after-b-starts-a-new-span"),
    pytest.param("in Paris Ada", ["O", "I-LOC", "I-PER"], [("LOC", "Paris", 3, 8), ("PER", "Ada", 9, 12)],
                 id="i-after-o-or-another-type-starts-a-span"),
    pytest.param("New York City", ["B-LOC", "I-LOC", "I-LOC"], [("LOC", "New York City", 0, 13)],
                 id="i-continues"),
    pytest.param("José Müller à Zürich", ["B-PER", "I-PER", "O", "B-LOC"],
                 [("PER", "José Müller", 0, 11), ("LOC", "Zürich", 14, 20)], id="accents"),
    pytest.param("nothing here", ["O", "O"], [], id="no-entity"),
    pytest.param("Ada PER-tag", ["PER", "PER"], [("PER", "Ada PER-tag", 0, 11)], id="io-scheme"),
])
def test_bio_decoding_gives_spans_whose_text_is_the_input_slice(text: str, tags: list[str],
                                                                 expected: list[tuple[str, str, int, int]]) -> None:
    assert _decode(text, tags) == expected


def test_a_span_score_is_the_mean_of_its_words_and_offsets_outside_the_text_are_refused() -> None:
    [entity] = decode_entities("Ada Lovelace", [(0, 3), (4, 12)], ["B-PER", "I-PER"], [0.5, 1.0])
    assert entity == Entity("PER", 0, 12, "Ada Lovelace", 0.75)
    with pytest.raises(InvalidInput, match="outside a text of 3"):
        decode_entities("Ada", [(0, 5)], ["B-PER"], [1.0])
    with pytest.raises(InvalidInput, match="do not line up"):
        decode_entities("Ada", [(0, 3)], [], [])


def test_word_offsets_join_pieces_and_windows_never_split_a_word() -> None:
    # "Lovelace" in three pieces, special tokens (None) skipped.
    assert word_offsets([None, 0, 1, 1, 1, None], [(0, 0), (0, 3), (4, 8), (8, 10), (10, 12), (0, 0)]) == \
        [(0, 3), (4, 12)]
    assert windows([1, 3, 2, 1], 4) == [(0, 2), (2, 4)]
    assert windows([5, 1], 4) == [(0, 1), (1, 2)]  # an over-long word is a window of its own
    assert windows([], 4) == []


def test_summaries_types_and_truth_spans() -> None:
    assert entity_types(LABELS) == ["LOC", "PER"]
    assert summarize_entities([]) == "O"
    assert summarize_entities([{"type": "PER"}, {"type": "LOC"}, {"type": "PER"}]) == "LOC,PER"
    assert validate_spans([{"type": "LOC", "start": 5, "end": 9, "text": "x"}, {"type": "PER", "start": 0, "end": 3}],
                          text_length=9, types=["LOC", "PER"]) == [
        {"type": "PER", "start": 0, "end": 3}, {"type": "LOC", "start": 5, "end": 9}]
    for bad, message in (([{"type": "ORG", "start": 0, "end": 1}], "does not know"),
                         ([{"type": "PER", "start": 0, "end": 10}], "0 <= start < end <= 9"),
                         ([{"type": "PER", "start": 0, "end": 4}, {"type": "LOC", "start": 3, "end": 5}], "overlap"),
                         ("PER", "must be a list")):
        with pytest.raises(InvalidInput, match=message):
            validate_spans(bad, text_length=9, types=["LOC", "PER"])


# --- the runtime, on a rule whose answer is known ------------------------------------------


def _title_is_person(ids: np.ndarray, mask: np.ndarray, cases: np.ndarray) -> np.ndarray:
    """Logits that tag a word B-PER when its shape is Title case (``word_case`` id 3), else O."""
    from chainkeeper.training.tokens import CASES

    logits = np.zeros((*ids.shape, len(LABELS)), dtype=np.float32)
    logits[..., 0] = 1.0
    title = cases == CASES.index("title")
    logits[title, 1] = 5.0
    return logits


@pytest.fixture(scope="module")
def tokenizer() -> object:
    from transformers import AutoTokenizer

    from chainkeeper.core.settings import default_base_model

    return AutoTokenizer.from_pretrained(default_base_model())


def _rule_tagger(tokenizer: object, max_length: int = 16) -> object:
    from chainkeeper.serving.tagging import TaggerPredictor

    return TaggerPredictor(_title_is_person, tokenizer, LABELS, max_length=max_length,  # type: ignore[arg-type]
                           model_version_id=1, artifact="x", engine="rule", casing=True)


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("  Ada met bob.  ", [("Ada", 2, 5)], id="spaces-around"),
    pytest.param("hello,Ada!bob", [("Ada", 6, 9)], id="punctuation-glued"),
    pytest.param("José from Zürich", [("José", 0, 4), ("Zürich", 10, 16)], id="accents"),
    pytest.param("北京 Ada 是", [("Ada", 3, 6)], id="cjk-characters-are-words"),
    pytest.param("the Antidisestablishmentarianism party", [("Antidisestablishmentarianism", 4, 32)],
                 id="a-word-in-many-pieces"),
])
def test_the_runtime_answers_offsets_into_the_original_text(tokenizer: object, text: str,
                                                             expected: list[tuple[str, int, int]]) -> None:
    [prediction] = _rule_tagger(tokenizer).predict([text])  # type: ignore[attr-defined]
    assert [(e["text"], e["start"], e["end"]) for e in prediction.entities] == expected
    assert all(text[e["start"]:e["end"]] == e["text"] and e["type"] == "PER" for e in prediction.entities)
    assert prediction.label == ("PER" if expected else "O")


def test_a_text_longer_than_max_length_is_tagged_to_its_end_in_windows(tokenizer: object) -> None:
    # 16 pieces per window (14 besides [CLS]/[SEP]); the text has about 240 pieces.
    words = [("Ada" if i % 7 == 3 else "antidisestablishment") for i in range(60)]
    text = " ".join(words) + " Zed"
    [prediction] = _rule_tagger(tokenizer).predict([text])  # type: ignore[attr-defined]
    spans = [(e["text"], e["start"], e["end"]) for e in prediction.entities]
    assert len(spans) == words.count("Ada") + 1 and spans[-1] == ("Zed", len(text) - 3, len(text))
    assert all(text[s:e] == t and 0 <= s < e <= len(text) for t, s, e in spans)


def test_bad_texts_are_refused_as_for_a_classifier(tokenizer: object) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        _rule_tagger(tokenizer).predict(["   "])  # type: ignore[attr-defined]


# --- a real (tiny, random) tagger on both engines -------------------------------------------


def test_pytorch_and_onnx_taggers_answer_the_same_spans(tmp_path: Path, tiny_model_dir: Path,
                                                        tokenizer: object) -> None:
    import torch

    from chainkeeper.serving.export import export_onnx
    from chainkeeper.serving.onnx_runtime import make_session
    from chainkeeper.serving.tagging import TaggerPredictor, onnx_logits, torch_logits
    from chainkeeper.training.tokens import TokenTagger

    torch.manual_seed(0)
    model, tok = TokenTagger.from_base(tiny_model_dir, LABELS, max_length=12)
    with torch.no_grad():  # a head that finds entities often, so there are spans to compare
        model.head.bias.copy_(torch.tensor([0.0, 0.2, 0.1, 0.2, 0.1]))
    path = export_onnx(model, tmp_path / "tagger.onnx")
    kwargs = dict(max_length=12, model_version_id=1, artifact="x", casing=True)
    torch_tagger = TaggerPredictor(torch_logits(model), tok, LABELS, engine="torch", **kwargs)  # type: ignore[arg-type]
    onnx_tagger = TaggerPredictor(onnx_logits(make_session(path)), tok, LABELS, engine="onnx",  # type: ignore[arg-type]
                                  **kwargs)
    texts = ["  Ada Lovelace visited Zürich, Switzerland.  ", "北京欢迎你 Beijing welcomes you",
             " ".join(["word"] * 40 + ["Paris"])]
    a, b = torch_tagger.predict(texts), onnx_tagger.predict(texts)
    assert [p.entities for p in a] and any(p.entities for p in a)
    for pa, pb, text in zip(a, b, texts, strict=True):
        assert [(e["type"], e["start"], e["end"]) for e in pa.entities] == \
            [(e["type"], e["start"], e["end"]) for e in pb.entities]
        assert all(text[e["start"]:e["end"]] == e["text"] and e["end"] <= len(text) for e in pa.entities)
    sentences = [["Ada", "visited", "Zürich"], ["a"] * 30]
    assert torch_tagger.tag_sentences(sentences) == onnx_tagger.tag_sentences(sentences)
    assert [len(t) for t in torch_tagger.tag_sentences(sentences)] == [3, 30]
