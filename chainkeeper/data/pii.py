"""Personal data: find and redact it in free text (pure).

Detected types (``PII_TYPES``), each a candidate regex followed by a validity check so
that look-alikes (order numbers, dates, amounts) are not redacted:

    email       local@domain.tld
    phone       international "+<country> ..." or "00<country> ...", 8-15 digits; and
                mainland-China mobiles 1[3-9]x xxxx xxxx with an optional +86 / 0086
    card        13-19 digits, optionally grouped by spaces or dashes, Luhn-checked
    iban        ISO 13616: country code, length for that country, mod-97 checksum
    ip          IPv4 (each octet 0-255) and IPv6 (validated by ``ipaddress``)
    cn_id       mainland-China resident ID (GB 11643): 18 characters, a real birth
                date, and the ISO 7064 MOD 11-2 check character
    secret_url  a URL with credentials (user:pass@) or a token-like query parameter
                (token=, access_token=, api_key=, key=, sig=, password=, ...)

Where two matches overlap, the earlier type in ``PII_TYPES`` wins (a secret URL
contains something that looks like an e-mail; an ID number passes for a card number).
Limits: phone numbers written without a country prefix (other than Chinese mobiles)
are not detected, since "020 7946 0958" is indistinguishable from a reference number;
names and postal addresses need a model and are out of scope.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

__all__ = ["PII_TYPES", "PLACEHOLDERS", "PiiSpan", "RedactionMode", "find_pii", "redact_text", "redact_texts",
           "redact_tokens", "count_pii", "luhn_valid", "iban_valid", "cn_id_valid"]

PII_TYPES = ("secret_url", "email", "iban", "cn_id", "card", "ip", "phone")
PLACEHOLDERS = {"secret_url": "[URL]", "email": "[EMAIL]", "iban": "[IBAN]", "cn_id": "[CN_ID]", "card": "[CARD]",
                "ip": "[IP]", "phone": "[PHONE]"}
RedactionMode = Literal["mask", "placeholder"]

# A character that may not touch a number on either side: a longer run of digits or a
# code like "ORD4111..." is something else.
_EDGE = r"[0-9A-Za-z]"

# ASCII URL characters only, so a URL inside Chinese text stops at "，" or "。".
_URL = re.compile(r"(?<![A-Za-z0-9])(?:https?|ftp)://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+", re.IGNORECASE)
_URL_USERINFO = re.compile(r"^[a-z]+://[^/@\s:]+:[^/@\s]+@", re.IGNORECASE)
_SECRET_PARAMS = frozenset({"token", "access_token", "refresh_token", "id_token", "auth", "auth_token", "api_key",
                            "apikey", "key", "sig", "signature", "password", "passwd", "pwd", "secret",
                            "client_secret", "session", "sessionid", "x-amz-signature", "x-amz-credential"})
_QUERY_PARAM = re.compile(r"[?&#;]([A-Za-z0-9_.-]+)=([^&#;\s]*)")

_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+"
                    r"[A-Za-z]{2,24}(?![A-Za-z0-9-])")
_IBAN = re.compile(rf"(?<!{_EDGE})[A-Z]{{2}}\d{{2}}(?:[ ]?[A-Z0-9]){{11,30}}(?!{_EDGE})")
_CN_ID = re.compile(rf"(?<!{_EDGE})\d{{17}}[0-9Xx](?!{_EDGE})")
# Not inside a longer group of digit blocks (an IBAN's tail, a "+86 ..." phone).
_CARD = re.compile(r"(?<![0-9A-Za-z+-])(?<!\d[ -])\d(?:[ -]?\d){12,18}(?![0-9A-Za-z]|[ -]?\d)")
_IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
                   r"(?!\.?\d)")
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f]*:)[0-9A-Fa-f:]{2,39}(?![0-9A-Fa-f:])")
_PHONE_INTL = re.compile(r"(?<![0-9A-Za-z+])(?<!\d[ .-])(?:\+|00)[1-9]\d{0,2}"
                         r"(?:[ .-]?(?:\(\d{1,5}\)|\d{1,5})){1,5}(?![\d-])")
_PHONE_CN = re.compile(r"(?<![0-9A-Za-z+])(?<!\d[ -])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)")

# Characters per IBAN by country (ISO 13616 registry, SWIFT release 2024).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "BY": 28,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19,
    "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}
_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"


@dataclass(frozen=True)
class PiiSpan:
    """One piece of personal data found in a text: ``text[start:end]`` is of type ``kind``."""

    start: int
    end: int
    kind: str
    value: str


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check (payment cards).

    Args:
        digits: only digits.

    Returns:
        True when the checksum is 0 mod 10.
    """
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """Whether a string is a valid IBAN: known country, its length, mod-97 == 1.

    Args:
        candidate: the IBAN, spaces allowed.

    Returns:
        True for a valid IBAN.
    """
    iban = candidate.replace(" ", "").upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    # Letters become 10..35; int() of the joined digits is exact for these lengths.
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def cn_id_valid(candidate: str) -> bool:
    """Whether an 18-character string is a valid mainland-China resident ID (GB 11643-1999).

    Args:
        candidate: 17 digits and a check character (digit or X).

    Returns:
        True when the birth date (characters 7-14) is a real date from 1900 on and the
        check character matches.
    """
    if len(candidate) != 18 or not candidate[:17].isdigit():
        return False
    try:
        born = date(int(candidate[6:10]), int(candidate[10:12]), int(candidate[12:14]))
    except ValueError:
        return False
    if born.year < 1900:
        return False
    total = sum(int(d) * w for d, w in zip(candidate[:17], _CN_ID_WEIGHTS, strict=True))
    return _CN_ID_CHECK[total % 11] == candidate[17].upper()


def _id_shaped(digits: str) -> bool:
    try:
        born = date(int(digits[6:10]), int(digits[10:12]), int(digits[12:14]))
    except ValueError:
        return False
    return born.year >= 1900


def _secret_url(url: str) -> bool:
    if _URL_USERINFO.match(url):
        return True
    return any(name.lower() in _SECRET_PARAMS and value for name, value in _QUERY_PARAM.findall(url))


def _ipv6(candidate: str) -> bool:
    if not any(c in "0123456789abcdefABCDEF" for c in candidate):
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def _digit_count(value: str) -> int:
    return sum(c.isdigit() for c in value)


def _candidates(text: str) -> Iterable[tuple[int, int, str]]:
    for m in _URL.finditer(text):
        url = m.group().rstrip(".,;:!?)]")
        if _secret_url(url):
            yield m.start(), m.start() + len(url), "secret_url"
    if "@" in text:
        for m in _EMAIL.finditer(text):
            yield m.start(), m.end(), "email"
    # An IBAN-shaped run with a wrong checksum is a mistyped IBAN: its digit groups are
    # not offered as cards or phones either.
    iban_shaped: list[tuple[int, int]] = []
    for m in _IBAN.finditer(text):
        value = m.group().rstrip()
        iban_shaped.append((m.start(), m.start() + len(value)))
        if iban_valid(value):
            yield m.start(), m.start() + len(value), "iban"

    def inside_iban(m: re.Match[str]) -> bool:
        return any(m.start() < e and m.end() > s for s, e in iban_shaped)

    for m in _CN_ID.finditer(text):
        if cn_id_valid(m.group()):
            yield m.start(), m.end(), "cn_id"
    for m in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", m.group())
        # An 18-digit run laid out like a resident ID (a real birth date in place) is a
        # mistyped ID far more often than an 18-digit card; leave it to cn_id.
        if (13 <= len(digits) <= 19 and luhn_valid(digits) and not (len(digits) == 18 and _id_shaped(digits))
                and not inside_iban(m)):
            yield m.start(), m.end(), "card"
    for m in _IPV4.finditer(text):
        yield m.start(), m.end(), "ip"
    if "::" in text or text.count(":") >= 2:
        for m in _IPV6.finditer(text):
            if _ipv6(m.group()):
                yield m.start(), m.end(), "ip"
    for m in _PHONE_INTL.finditer(text):
        if 8 <= _digit_count(m.group()) <= 15 and not inside_iban(m):
            yield m.start(), m.end(), "phone"
    for m in _PHONE_CN.finditer(text):
        if not inside_iban(m):
            yield m.start(), m.end(), "phone"


def find_pii(text: str) -> list[PiiSpan]:
    """Find personal data in a text.

    Args:
        text: any text.

    Returns:
        Non-overlapping spans, ordered by position; where candidates overlap, the type
        listed first in ``PII_TYPES`` wins, then the longer match.
    """
    priority = {kind: i for i, kind in enumerate(PII_TYPES)}
    found = sorted(_candidates(text), key=lambda c: (priority[c[2]], -(c[1] - c[0]), c[0]))
    taken: list[tuple[int, int, str]] = []
    for start, end, kind in found:
        if all(end <= s or start >= e for s, e, _ in taken):
            taken.append((start, end, kind))
    return [PiiSpan(s, e, k, text[s:e]) for s, e, k in sorted(taken)]


def redact_text(text: str, mode: RedactionMode = "placeholder") -> tuple[str, list[PiiSpan]]:
    """Replace the personal data in a text.

    Args:
        text: any text.
        mode: "placeholder" writes the type, e.g. ``[EMAIL]``; "mask" writes one ``*``
            per character (digit groups and lengths stay visible, the values do not).

    Returns:
        The redacted text and the spans found (positions in the original text).

    Raises:
        ValueError: an unknown mode (callers validate user input first).
    """
    if mode not in ("mask", "placeholder"):
        raise ValueError(f"unknown redaction mode {mode!r}")
    spans = find_pii(text)
    if not spans:
        return text, spans
    out, last = [], 0
    for span in spans:
        out.append(text[last:span.start])
        out.append(PLACEHOLDERS[span.kind] if mode == "placeholder" else "*" * (span.end - span.start))
        last = span.end
    out.append(text[last:])
    return "".join(out), spans


def redact_tokens(tokens: Sequence[str], mode: RedactionMode = "placeholder") -> tuple[list[str], list[PiiSpan]]:
    """Replace the personal data in a tokenised sentence, whole tokens at a time.

    The sentence is searched as its tokens joined by single spaces (the ``text`` of a
    token-classification row), so a phone number split over tokens is still found. Every
    token a span touches is replaced whole, so the sentence keeps its number of tokens and
    each tag still belongs to its token; a span over three tokens gives three placeholders.

    Args:
        tokens: the sentence's tokens.
        mode: "placeholder" replaces a token with its type (``[PHONE]``); "mask" with one
            ``*`` per character of the token.

    Returns:
        The tokens, as many as given, and the spans found (positions in the joined text).

    Raises:
        ValueError: an unknown mode (callers validate user input first).
    """
    if mode not in ("mask", "placeholder"):
        raise ValueError(f"unknown redaction mode {mode!r}")
    spans = find_pii(" ".join(tokens))
    if not spans:
        return list(tokens), spans
    out, start = [], 0
    for token in tokens:
        end = start + len(token)
        # A span touching this token (an empty token touches nothing).
        hit = next((s for s in spans if s.start < end and s.end > start), None)
        out.append(token if hit is None else PLACEHOLDERS[hit.kind] if mode == "placeholder" else "*" * len(token))
        start = end + 1
    return out, spans


def count_pii(spans: Iterable[PiiSpan]) -> dict[str, int]:
    """Count spans per type.

    Args:
        spans: found spans.

    Returns:
        Type -> count, every type of ``PII_TYPES`` present (0 when none).
    """
    counts = dict.fromkeys(PII_TYPES, 0)
    for span in spans:
        counts[span.kind] += 1
    return counts


# A text without any of these cannot hold a detectable entity: no run of 7 digits
# (cards, IDs, phones, IBANs), no "@", no "://", no IPv4 dot-quad and no "::"/hex colon
# pair. Used to skip most rows without running the detectors.
PREFILTER = r"\d[\d -]{6,}|@|://|\d\.\d+\.\d+\.\d|[0-9A-Fa-f]:[0-9A-Fa-f]*:"


def redact_texts(texts: Sequence[str | None], mode: RedactionMode = "placeholder",
                 ) -> tuple[list[str | None], dict[str, int], list[int]]:
    """Redact a list of texts (nulls pass through).

    Args:
        texts: the texts.
        mode: see ``redact_text``.

    Returns:
        The redacted texts, counts per type over all texts, and the positions of the
        texts that changed.
    """
    counts = dict.fromkeys(PII_TYPES, 0)
    out: list[str | None] = list(texts)
    changed: list[int] = []
    for i, text in enumerate(texts):
        if not text:
            continue
        redacted, spans = redact_text(text, mode)
        if spans:
            out[i] = redacted
            changed.append(i)
            for span in spans:
                counts[span.kind] += 1
    return out, counts, changed
