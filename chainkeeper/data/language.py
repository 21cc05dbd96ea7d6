"""Which language a text is written in, as far as the models here care: Chinese or not.

A pure, dependency-free helper (no pyarrow, so training's metrics can use it without
loading the data stack). It counts Han characters against Latin letters: a text is
``"zh"`` when Han characters make up at least ``ZH_SHARE`` of them, else ``"en"``.
"en" therefore means "not Chinese": a French or Russian text is "en" here too, and a
Japanese text with many kanji is "zh". That is the split the built-in customer-service
sample (English and Chinese) needs for per-language metrics; it is no general detector.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["LANGUAGES", "ZH_SHARE", "is_han_character", "text_language"]

Language = Literal["en", "zh"]
LANGUAGES: tuple[Language, ...] = ("en", "zh")
# Share of Han characters among Han characters and Latin letters that makes a text Chinese:
# "我的Visa卡丢了" (5 of 9) is Chinese, "Card ending 1234 at 星巴克" (3 of 14) is not.
ZH_SHARE = 0.3

# The code-point blocks BERT's tokenizer treats as CJK ideographs (each one becomes a
# word of its own): unified ideographs, extensions A-F and the compatibility blocks.
_HAN_BLOCKS = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
               (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def is_han_character(char: str) -> bool:
    """Whether one character is a CJK ideograph (the blocks BERT's tokenizer splits)."""
    code = ord(char)
    return any(low <= code <= high for low, high in _HAN_BLOCKS)


def text_language(text: str) -> Language:
    """``"zh"`` when Han characters are at least ``ZH_SHARE`` of the text's Han characters
    and Latin letters, else ``"en"`` (also for a text with neither, such as "1234").

    Args:
        text: any text.

    Returns:
        "zh" or "en".
    """
    han = latin = 0
    for char in text:
        if is_han_character(char):
            han += 1
        elif (char.isascii() and char.isalpha()) or "\u00c0" <= char <= "\u024f" or "\uff21" <= char <= "\uff5a":
            latin += 1  # ASCII, accented Latin, and full-width letters typed with a Chinese input method
    return "zh" if han and han >= ZH_SHARE * (han + latin) else "en"
