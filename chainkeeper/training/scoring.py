"""Score a stored model folder on rows from outside its dataset version.

What ``chainkeeper models evaluate`` runs on a new file: the same numbers as a run's test
report — ``evaluate_split`` with calibration and slices for a classifier, entity- and
token-level scores for a tagger — so a file's figures compare with the run's. A label
the model does not know is refused before the model loads: no model can predict it, and
silently dropping those rows would flatter the figures.

Torch loads when a model is scored, not when this module is imported.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from chainkeeper.core.errors import InvalidInput

# Written by every saved classifier and tagger (``model.META_FILE``); read here without torch.
_META_FILE = "chainkeeper.json"

__all__ = ["model_labels", "score_classifier", "score_tagger"]


def model_labels(folder: Path) -> tuple[str, list[str]]:
    """The task and the label (or tag) set of a saved model folder, in output order.

    Raises:
        InvalidInput: the folder holds no Chainkeeper classifier or tagger.
    """
    meta_file = Path(folder) / _META_FILE
    if not meta_file.is_file():
        raise InvalidInput(f"{folder} holds no Chainkeeper classifier ({_META_FILE} missing).",
                           hint="Evaluate a model version trained by a classification or tagging run.")
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    if meta.get("multi_label"):
        raise InvalidInput("This model is multi-label; 'models evaluate' scores single-label classifiers and "
                           "taggers.", hint="Read the run's own multi-label report: 'chainkeeper train report RUN'.")
    return str(meta.get("task", "sequence-classification")), list(meta["labels"])


def check_known_labels(given: Iterable[str], known: Sequence[str], *, what: str = "label") -> None:
    """Refuse labels the model cannot predict (pure).

    Raises:
        InvalidInput: names each unknown label with how often it occurs, and the model's set.
    """
    counts = Counter(y for y in given if y not in set(known))
    if counts:
        found = ", ".join(f"{label!r} ({n} {'row' if n == 1 else 'rows'})" for label, n in counts.most_common(10))
        raise InvalidInput(
            f"The file has {what}s the model does not know: {found}.",
            hint=f"The model's {what}s: {', '.join(known)}. Relabel those rows, or evaluate a model trained on them.")


def score_classifier(folder: Path, texts: Sequence[str], labels: Sequence[str], *,
                     batch_size: int = 64) -> dict[str, Any]:
    """A classifier's test report on these rows (``jobs.evaluate_split`` with ``full``).

    Args:
        folder: a saved classifier.
        texts: the texts.
        labels: the gold label of each text.

    Returns:
        ``classification_metrics`` with ``calibration``, ``slices`` (text length) and
        ``by_language``.

    Raises:
        InvalidInput: no rows, a label the model does not know, or not a classifier.
    """
    task, known = model_labels(folder)
    if task != "sequence-classification":
        raise InvalidInput(f"This model is a {task} model; a CSV or JSON Lines file of texts scores a classifier.",
                           hint="Evaluate a tagger on a CoNLL file.")
    if not texts:
        raise InvalidInput("The file has no labelled rows to evaluate.", hint="Give a file with text and label.")
    check_known_labels(labels, known)
    from chainkeeper.training.jobs import Split, evaluate_split
    from chainkeeper.training.model import TextClassifier  # torch

    model, tokenizer = TextClassifier.load(folder)
    return evaluate_split(model, tokenizer, Split(list(texts), list(labels)), batch_size=batch_size, full=True)


def score_tagger(folder: Path, sentences: Sequence[Sequence[str]], tags: Sequence[Sequence[str]], *,
                 batch_size: int = 64) -> dict[str, Any]:
    """A tagger's test report on these sentences: entity level (seqeval) and token level.

    Raises:
        InvalidInput: no sentences, a tag the model does not know, a sentence whose
            tokens and tags differ in length, or not a tagger.
    """
    task, known = model_labels(folder)
    if task != "token-classification":
        raise InvalidInput(f"This model is a {task} model; a CoNLL file scores a tagger.",
                           hint="Evaluate a classifier on a CSV or JSON Lines file of texts and labels.")
    if not sentences:
        raise InvalidInput("The file has no tagged sentences to evaluate.")
    for i, (words, row) in enumerate(zip(sentences, tags, strict=True)):
        if len(words) != len(row):
            raise InvalidInput(f"Sentence {i + 1} has {len(words)} tokens but {len(row)} tags.")
    check_known_labels((t for row in tags for t in row), known, what="tag")
    from chainkeeper.training.tokens import TokenTagger, entity_metrics, predict_tags  # torch

    model, tokenizer = TokenTagger.load(folder)
    predicted = predict_tags(model, tokenizer, sentences, max_length=model.meta.max_length, batch_size=batch_size)
    return {**entity_metrics(tags, predicted, known), "sentences": len(sentences)}
