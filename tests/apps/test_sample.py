"""The built-in customer-service sample: deterministic, varied, bilingual, a little messy."""

from __future__ import annotations

import csv
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from chainkeeper.apps.customer_service.sample import INTENTS, generate_sample, load_templates
from chainkeeper.core.context import Context
from chainkeeper.core.errors import InvalidInput
from chainkeeper.data.ingest import import_csv
from chainkeeper.data.versions import create_dataset_version
from chainkeeper.governance.actors import Actor


def read(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        assert next(reader) == ["text", "label"]
        return [(text, label) for text, label in reader]


def cleaned(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def is_chinese(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in text)


def test_same_seed_writes_the_same_files_and_another_seed_others(tmp_path: Path) -> None:
    first = generate_sample(tmp_path / "a", seed=7)
    again = generate_sample(tmp_path / "b", seed=7)
    other = generate_sample(tmp_path / "c", seed=8)

    assert set(first) == {"train", "test"}
    assert first["train"].read_bytes() == again["train"].read_bytes()
    assert first["test"].read_bytes() == again["test"].read_bytes()
    assert first["train"].read_bytes() != other["train"].read_bytes()


def test_sample_has_ten_intents_in_english_and_chinese(tmp_path: Path) -> None:
    paths = generate_sample(tmp_path)
    train, test = read(paths["train"]), read(paths["test"])

    assert len(train) == 601 and len(test) == 150  # 600 + the one deliberate duplicate
    assert set(Counter(label for _, label in train)) == set(INTENTS) == set(label for _, label in test)
    assert min(Counter(label for _, label in test).values()) == 15
    chinese = sum(is_chinese(text) for text, _ in train) / len(train)
    assert 0.35 <= chinese <= 0.45


def test_test_texts_never_appear_in_train_and_train_repeats_only_once(tmp_path: Path) -> None:
    paths = generate_sample(tmp_path)
    train = [cleaned(text) for text, _ in read(paths["train"])]
    test = [cleaned(text) for text, _ in read(paths["test"])]

    assert not set(test) & set(train)
    assert len(set(test)) == len(test)
    assert [n for n in Counter(train).values() if n > 1] == [2]


def test_a_few_train_rows_are_messy(tmp_path: Path) -> None:
    train = read(generate_sample(tmp_path)["train"])

    messy = [text for text, _ in train if text != text.strip() or "  " in text
             or any("\uff01" <= c <= "\uff5e" and c not in "，？！：" for c in text)]

    assert 0.01 * len(train) <= len(messy) <= 0.02 * len(train)


def test_templates_have_at_least_eight_phrasings_per_intent_and_language() -> None:
    templates = load_templates()

    assert list(templates["intents"]) == list(INTENTS)
    for intent, by_language in templates["intents"].items():
        assert {lang: len(set(t)) >= 8 for lang, t in by_language.items()} == {"en": True, "zh": True}, intent


def test_too_small_a_sample_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="per_intent must be at least 5"):
        generate_sample(tmp_path, per_intent=2)


def test_cleaning_the_sample_shows_real_work(ctx: Context, tmp_path: Path) -> None:
    paths = generate_sample(tmp_path)
    steward = Actor(name="dana", roles=frozenset({"data_steward"}))
    train = import_csv(ctx, paths["train"], actor=steward)
    test = import_csv(ctx, paths["test"], actor=steward, split="test")

    version = create_dataset_version(ctx, name="sample", source_ids=[train.id, test.id], actor=steward)

    reports = {r["name"]: r for r in version.recipe}
    assert reports["normalize_text"]["changed"] > 0
    assert reports["dedup_exact"]["details"] == {
        "duplicates": 1, "conflicts": 0, "removed_from": {"undeclared": 1},
        "repeats": [{"kept_in": "undeclared", "removed_from": "undeclared", "rows": 1,
                     "why": "repeat within one split: the first row stays"}]}
    assert version.stats["rows_per_split"] == {"train": 540, "dev": 60, "test": 150}
    assert len(version.labels) == 10
