"""``text_language``: the Chinese/other split per-language metrics rest on."""

from __future__ import annotations

import pytest

from chainkeeper.data import is_han_character, text_language


@pytest.mark.parametrize(("text", "language"), [
    ("我的卡丢了，怎么办", "zh"),
    ("我的Visa卡丢了", "zh"),  # 5 Han characters of 9 letters
    ("用支付宝充了2000元，余额一直没到账", "zh"),
    ("My card still hasn't arrived", "en"),
    ("Card ending 1234 declined at 星巴克 in Shanghai today", "en"),  # a Chinese name in English
    ("ＭＹ ＣＡＲＤ", "en"),  # full-width Latin letters are Latin
    ("Où est ma carte ?", "en"),  # "en" means "not Chinese"
    ("1234 5678", "en"),
    ("", "en"),
])
def test_text_language(text: str, language: str) -> None:
    assert text_language(text) == language


def test_han_characters_are_the_blocks_bert_splits() -> None:
    assert all(is_han_character(c) for c in "我卡丢㐀\U00020000")
    assert not any(is_han_character(c) for c in "a，。あア한1 ")
