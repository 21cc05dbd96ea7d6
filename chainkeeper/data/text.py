"""Pure text helpers of the cleaning steps: visible text of HTML, and the script a text
is written in. Values in, values out; the steps in ``cleaning.py`` apply them to tables."""

from __future__ import annotations

import html
from html.parser import HTMLParser

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["SCRIPTS", "detect_script", "html_to_text"]


class _TextExtractor(HTMLParser):
    """Collects the text of an HTML fragment; script and style bodies are skipped."""

    _BLOCK = frozenset({"br", "p", "div", "li", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol",
                        "table", "section", "article", "blockquote", "hr", "pre"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.skip += 1
        elif tag in self._BLOCK:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self.skip:
            self.skip -= 1
        elif tag in self._BLOCK:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """The visible text of an HTML fragment: tags dropped, entities unescaped, spaces collapsed.

    Args:
        markup: HTML or text with entities.

    Returns:
        The text; block elements (p, br, li, ...) become a space so words do not merge.
    """
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    # convert_charrefs leaves text of an unterminated tag; unescape what remains.
    return " ".join(html.unescape("".join(parser.parts)).split())


_CJK = r"[\x{3040}-\x{30FF}\x{3400}-\x{4DBF}\x{4E00}-\x{9FFF}\x{F900}-\x{FAFF}\x{AC00}-\x{D7AF}\x{20000}-\x{2FA1F}]"
_LATIN = r"[A-Za-z\x{00C0}-\x{024F}\x{1E00}-\x{1EFF}]"
_LETTER = r"\pL"
SCRIPTS = ("cjk", "latin", "other", "none")


def detect_script(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The dominant script of each text: "cjk", "latin", "other", or "none" (no letters).

    An honest, small detector: it counts letters per Unicode block and picks the script
    with the most letters. It tells Chinese/Japanese/Korean from Latin-script text from
    everything else; it cannot tell English from French, or Chinese from Japanese kanji,
    and a short text of mixed scripts goes to whichever has more letters.

    Args:
        texts: the texts.

    Returns:
        A string array, one script per text.
    """
    cjk = pc.fill_null(pc.count_substring_regex(texts, _CJK), 0).to_numpy(zero_copy_only=False)
    latin = pc.fill_null(pc.count_substring_regex(texts, _LATIN), 0).to_numpy(zero_copy_only=False)
    letters = pc.fill_null(pc.count_substring_regex(texts, _LETTER), 0).to_numpy(zero_copy_only=False)
    other = letters - cjk - latin
    choice = np.select([letters == 0, (cjk >= latin) & (cjk >= other), latin >= other], [3, 0, 1], default=2)
    return pa.array(np.asarray(SCRIPTS, dtype=object)[choice], pa.string())
