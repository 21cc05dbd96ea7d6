"""The built-in customer-service sample: bank intents in English and Chinese.

``generate_sample`` writes ``train.csv`` and ``test.csv`` (columns text,label) for ten
intents of a bank's customer service, from templates we wrote ourselves
(``templates.json``: per intent and language, with slots for amounts, currencies,
dates, merchants, cities...). It needs no download, so the quickstart runs offline.

Properties the tests rely on:

- deterministic for a seed (one ``random.Random`` drives every choice);
- about 60 % English and 40 % Chinese rows per intent;
- no two texts are the same after normalisation, and no test text appears in train,
  except for the deliberate mess below;
- 1-2 % of the train rows are messy the way real exports are (extra whitespace,
  full-width characters typed with a Chinese input method, one exact duplicate row), so
  the cleaning report of a quickstart shows real work. Each messy row is a clean row
  rewritten, so normalising it gives back a unique text.
"""

from __future__ import annotations

import csv
import importlib.resources
import json
import random
import unicodedata
from pathlib import Path
from typing import Any

from chainkeeper.core.errors import InvalidInput

__all__ = ["INTENTS", "generate_sample", "load_templates"]

INTENTS = ("card_arrival", "lost_card", "change_pin", "balance_inquiry", "transfer_failed", "refund_request",
           "exchange_rate", "close_account", "update_address", "top_up_failed")
MIN_PER_INTENT = 5
# Share of train rows rewritten messily (plus one exact duplicate).
MESSY_SHARE = 0.015
# Tries per wanted text before concluding the templates cannot give that many distinct texts.
_TRIES_PER_TEXT = 200


def load_templates() -> dict[str, Any]:
    """The templates shipped with the package (``templates.json``)."""
    resource = importlib.resources.files("chainkeeper.apps.customer_service") / "templates.json"
    return json.loads(resource.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _key(text: str) -> str:
    """What makes two texts the same: their cleaned form, ignoring case."""
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold()


def _fill(rng: random.Random, templates: dict[str, Any], intent: str, lang: str) -> str:
    template: str = rng.choice(templates["intents"][intent][lang])
    slots = templates["slots"][lang]
    # Draw only the slots this template names, so adding a slot elsewhere never changes
    # the texts generated from templates that do not use it.
    names = sorted({part.split("}", 1)[0] for part in template.split("{")[1:]})
    body = template.format_map({name: rng.choice(slots[name]) for name in names})
    opener: str = rng.choice(templates["openers"][lang])
    closer: str = rng.choice(templates["closers"][lang])
    return opener + body + closer


def _distinct_texts(rng: random.Random, templates: dict[str, Any], intent: str, lang: str, count: int,
                    seen: set[str]) -> list[str]:
    texts: list[str] = []
    for _ in range(count * _TRIES_PER_TEXT):
        if len(texts) == count:
            break
        text = _fill(rng, templates, intent, lang)
        if _key(text) not in seen:
            seen.add(_key(text))
            texts.append(text)
    if len(texts) < count:
        raise InvalidInput(f"The templates give only {len(texts)} distinct {lang} texts for {intent!r}, "
                           f"{count} were asked for.", hint="Use a smaller per_intent, or add templates.")
    return texts


def _fullwidth(text: str, *, whole: bool) -> str:
    """Full-width forms of ASCII characters: all of them, or only digits and capitals."""
    def widen(c: str) -> str:
        if c == " ":
            return "\u3000" if whole else c
        if "!" <= c <= "~" and (whole or c.isdigit() or c.isupper()):
            return chr(ord(c) + 0xFEE0)
        return c
    return "".join(widen(c) for c in text)


def _messy(rng: random.Random, text: str, kind: int) -> str:
    if kind == 0:  # copy-pasted with stray spaces, a tab and a line break
        words = text.split(" ")
        if len(words) > 2:
            at = rng.randrange(1, len(words))
            return "  " + " ".join(words[:at]) + "   " + " ".join(words[at:]) + " \t"
        return "  " + text + "\n "
    if kind == 1:  # typed with a Chinese input method in full-width mode
        wide = _fullwidth(text, whole=text.isascii())
        if wide != text:
            return wide
        return _messy(rng, text, 0)  # a Chinese text with no digit or capital to widen
    return "\u3000" + text + "  "  # an ideographic space in front, spaces behind


def generate_sample(dest: Path, *, seed: int = 7, per_intent: int = 60) -> dict[str, Path]:
    """Write the customer-service sample as train.csv and test.csv under ``dest``.

    Args:
        dest: the folder to write into (created if missing; the two files are replaced).
        seed: the seed; the same seed always writes the same bytes.
        per_intent: train rows per intent (test gets a quarter as many, at least 2).

    Returns:
        {"train": path, "test": path}.

    Raises:
        InvalidInput: ``per_intent`` is below 5, or more than the templates can vary.
    """
    if per_intent < MIN_PER_INTENT:
        raise InvalidInput(f"per_intent must be at least {MIN_PER_INTENT}, got {per_intent}.",
                           hint="Use the default (60) for a sample a small model learns well.")
    templates = load_templates()
    rng = random.Random(seed)
    test_per_intent = max(2, per_intent // 4)
    en_share = float(templates["languages"]["en"])
    seen: set[str] = set()
    train: list[tuple[str, str]] = []
    test: list[tuple[str, str]] = []
    for intent in INTENTS:
        for lang, n_train, n_test in (
            ("en", round(per_intent * en_share), round(test_per_intent * en_share)),
            ("zh", per_intent - round(per_intent * en_share), test_per_intent - round(test_per_intent * en_share)),
        ):
            texts = _distinct_texts(rng, templates, intent, lang, n_train + n_test, seen)
            train += [(t, intent) for t in texts[:n_train]]
            test += [(t, intent) for t in texts[n_train:]]
    rng.shuffle(train)
    rng.shuffle(test)

    # The mess: rewrite a few train rows in place, then add one exact duplicate.
    messy = rng.sample(range(len(train)), max(2, round(len(train) * MESSY_SHARE)))
    for n, i in enumerate(messy):
        train[i] = (_messy(rng, train[i][0], n % 3), train[i][1])
    rewritten = set(messy)
    original = rng.choice([i for i in range(len(train)) if i not in rewritten])
    train.insert(rng.randrange(len(train) + 1), train[original])

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    paths = {"train": dest / "train.csv", "test": dest / "test.csv"}
    for name, rows in (("train", train), ("test", test)):
        with paths[name].open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
    return paths
