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
    us_phone    North American numbers: (415) 555-0132, 415-555-0132, 415.555.0132,
                415 555 0132, with an optional +1 / 1- prefix; a valid area code and
                exchange (2-9 first, not N11, no N9X area); ten bare digits only after a
                phone word ("call", "tel", "mobile", 电话, ...)
    ssn         US social security numbers 123-45-6789 / 123 45 6789 (nine bare digits
                only after "SSN" / "social security"), without the ranges the SSA never
                issues: area 000, 666, 9xx; group 00; serial 0000
    credential  the secret after "password is / password: / passcode / pin / PIN is /
                OTP / one-time code / 密码是 / 验证码 ..."; only the secret is redacted
    cvv         3-4 digits after "CVV", "CVC", "security code", 安全码 ...
    sort_code   UK sort codes 12-34-56 / 12 34 56 / 123456 after "sort code"
    account     6-17 digits after "account number", "acct", "a/c", 账号 ...

Reference numbers that look like a US phone or an SSN are not redacted when a word
such as "order", "invoice", "ticket", "tracking", "ref", 订单 or "#" names them.
Where two matches overlap, the earlier type in ``PII_TYPES`` wins (a secret URL
contains something that looks like an e-mail; an ID number passes for a card number).
Limits: phone numbers written without a country prefix (other than Chinese mobiles and
North American numbers) are not detected, since "020 7946 0958" is indistinguishable
from a reference number; a password is recognised only after an explicit "is" / ":" /
"=" (or 是 / 为 / ：) and not when it is an ordinary English word ("password is wrong");
names and postal addresses need a model and are out of scope.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

__all__ = ["PII_TYPES", "PLACEHOLDERS", "PREFILTER", "PiiSpan", "RedactionMode", "find_pii", "redact_text",
           "redact_texts", "redact_tokens", "count_pii", "luhn_valid", "iban_valid", "cn_id_valid", "nanp_valid",
           "ssn_valid"]

# In priority order: where two matches overlap, the earlier type wins. Issue 15 (item 7)
# added credential, cvv, sort_code, account (a number named by its context word is that,
# even when it passes for a card), us_phone (a North American number with "+1" is one) and
# ssn.
PII_TYPES = ("secret_url", "email", "iban", "cn_id", "credential", "cvv", "sort_code", "account", "card", "ip",
             "us_phone", "ssn", "phone")
PLACEHOLDERS = {"secret_url": "[URL]", "email": "[EMAIL]", "iban": "[IBAN]", "cn_id": "[CN_ID]", "card": "[CARD]",
                "ip": "[IP]", "us_phone": "[PHONE]", "phone": "[PHONE]", "ssn": "[SSN]", "credential": "[SECRET]",
                "cvv": "[CVV]", "sort_code": "[SORT_CODE]", "account": "[ACCOUNT]"}
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

# North American numbers. The left edge refuses a number glued to a code ("ORD-415-...",
# "#415...", "v1.415..."); the right edge a longer run or a suffix ("...-0132-A").
_NANP_LEFT = r"(?<![0-9A-Za-z+#/_])(?<![0-9A-Za-z][.-])"
_NANP_RIGHT = r"(?![0-9A-Za-z_]|[.-][0-9A-Za-z])"
_US_PHONE = re.compile(
    _NANP_LEFT + r"(?:(?:\+1|001|1)[ .-]?)?"
    r"(?:\((?P<pa>\d{3})\)[ ]?|(?P<a>\d{3})(?P<s1>[ .-]))(?P<e>\d{3})(?P<s2>[ .-])\d{4}" + _NANP_RIGHT)
_US_PHONE_BARE = re.compile(_NANP_LEFT + r"(?:\+?1[ -]?)?(?P<a>\d{3})(?P<e>\d{3})\d{4}" + _NANP_RIGHT)
# "#" may precede an SSN only when "SSN" precedes that ("ssn#123-45-6789").
_SSN = re.compile(r"(?<![0-9A-Za-z+/_])(?<![0-9A-Za-z][.-])(?P<a>\d{3})(?P<s>[ -])(?P<g>\d{2})(?P=s)(?P<n>\d{4})"
                  + _NANP_RIGHT)
_SSN_BARE = re.compile(_NANP_LEFT + r"(?P<a>\d{3})(?P<g>\d{2})(?P<n>\d{4})" + _NANP_RIGHT)
# How far before a number its naming word may be (a few words).
_CONTEXT_CHARS = 32
# A phone word shortly before ten bare digits ("call me on 4155550132").
_PHONE_WORDS = re.compile(r"(?ai)(?:\b(?:phone|tel|telephone|mobile|cell|cellphone|call|text|fax|whatsapp|sms)\b"
                          r"|电话|電話|手机|手機|致电|致電)[^\d\n]{0,20}$")
_SSN_WORDS = re.compile(r"(?ai)(?:\bssn\b|\bsocial\s+security\b(?:\s+(?:number|no\.?|#))?|\bss#|社会安全号|社會安全號)"
                        r"[^\d\n]{0,20}$")
# A word naming the number as a reference: "order 415-555-0132", "ticket #123-45-6789".
_REFERENCE_WORDS = re.compile(
    r"(?ai)(?:\b(?:order|invoice|ref|reference|ticket|case|tracking|confirmation|booking|transaction|txn|serial|"
    r"model|part|sku|isbn|claim|policy|batch|lot|item|po|shipment|parcel|package|receipt|file)s?\b"
    r"|订单|訂單|单号|單號|编号|編號|流水号|工单)"
    r"(?:[\s:#：.-]|\b(?:number|num|no|nr|id|code|is|was)\b)*$|#\s*$")

# Context-bound types: a naming word, a few filler words ("number", "is", ":"), the value.
_FILL = r"(?:[\s:=#：\-)]|\b(?:number|num|no|nr|is|are|was|now|code)\b\.?|是|为|為|码|碼){0,6}?"
# The value may not run on into a longer number or an amount ("123.45").
_DIGITS_END = r"(?![0-9A-Za-z_]|[.,]\d|[ -]\d)"
_DATE = re.compile(r"(?:19|20)\d\d[ -]\d\d?[ -]\d\d?|\d\d?[ -]\d\d?[ -](?:19|20)\d\d")
_SORT_CODE = re.compile(r"(?ai)\bsort[\s-]?codes?\b" + _FILL + r"(?P<v>\d{2}(?P<s>[ -]?)\d{2}(?P=s)\d{2})"
                        + _DIGITS_END)
_ACCOUNT = re.compile(r"(?ai)(?:\b(?:account|acct|acc)\b\.?|\ba/c\b|账号|帳號|账户|帳戶|帐号|帐户)" + _FILL
                      + r"(?P<v>\d(?:[ -]?\d){5,16})" + _DIGITS_END)
_CVV = re.compile(r"(?ai)(?:\b(?:cvv|cvc|cvn|csc)2?(?![A-Za-z])|\bcard\s+security\s+code\b|\bsecurity\s+code\b"
                  r"|\bcard\s+verification\s+(?:value|code|number)\b|安全码|安全碼|cvv码)" + _FILL
                  + r"(?P<v>\d{3,4})" + _DIGITS_END)
# Numeric secrets: "pin 1234", "PIN is 1234", "passcode 4821", "OTP: 123456", "密码123456".
_PIN = re.compile(r"(?ai)(?:\bpin(?:\s*(?:code|number|no\.?))?(?![A-Za-z])|\bpass[\s-]?code\b|\bpassword\b|\botp\b"
                  r"|\bone[\s-]time\s+(?:pass)?(?:code|password|pin)\b|\bverification\s+code\b"
                  r"|\b(?:login|access|auth|authentication)\s+code\b|密码|密碼|口令|验证码|驗證碼|动态码|動態碼)"
                  + _FILL + r"(?P<v>\d{4,8})" + _DIGITS_END)
# Spoken secrets: "password is hunter2", "my password: s3cret!", "密码是abc123"; the
# secret must follow an explicit "is" / ":" / "=" (or 是 / 为 / ：). A quoted secret may
# hold spaces.
_PASSWORD = re.compile(
    r"(?ai)(?:\b(?:password|passwd|pwd|passcode|pass[\s-]code|passphrase|pass\s+word)\b|密码|密碼|口令)"
    r"(?:\s+(?:for|to|of|on)\s+(?:my|the|your|our)\s+[A-Za-z]+(?:\s+[A-Za-z]+)?"
    r"|\s+(?:i|we|you)\s+(?:use|used|entered|typed|chose|set|have|had|gave))?"
    r"(?:\s*(?:\b(?:is|was)\b(?:\s+(?:now|still))?|[:=：]|是|为|為)){1,2}\s*"
    r"""(?:["'“‘«](?P<quoted>[^"'”’»\n]{3,64})["'”’»]|(?P<v>[!-~]{3,64}))""")
# What a spoken "password is ..." is followed by when no secret is given.
_NOT_SECRETS = frozenset("""
    a an the my your his her our their its this that these those it same different new old
    not no none null empty blank missing wrong incorrect invalid correct right ok okay good bad weak strong
    too very so still also just now already never always only really quite
    case sensitive required needed optional necessary mandatory
    expired expiring locked blocked frozen disabled enabled reset changed updated incorrectly
    forgotten lost stolen compromised leaked hacked known unknown secret private safe secure insecure
    short long simple easy hard complex complicated similar
    working broken fine valid accepted rejected denied declined
    set sent saved stored shown hidden displayed encrypted hashed masked
    click enter type use choose create tap see follow contact call please must should will would
    can could cannot may might need needs has have had being been be is are was were do does did
    in on at of for to from with by about into over under after before than then
    what which who where when why how there here
    least most more less minimum maximum min max characters chars digits letters numbers
    and or but if because""".split())

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
# Two-digit country calling codes, and the first two digits of the three-digit ones.
_COUNTRY_CODES_2 = frozenset("20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 60 61 "
                             "62 63 64 65 66 81 82 84 86 90 91 92 93 94 95 98".split())
_COUNTRY_CODES_3_PREFIXES = frozenset("21 22 23 24 25 26 29 35 37 38 42 50 59 67 68 69 80 85 87 88 96 97 99".split())
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


def nanp_valid(area: str, exchange: str) -> bool:
    """Whether an area code and exchange can form a North American (NANP) number.

    Args:
        area: the three-digit area code.
        exchange: the three-digit central-office code.

    Returns:
        True when both start with 2-9, neither is an N11 service code (411, 911, ...) and
        the area code is not in the N9X block held back for expansion.
    """
    return (area[0] not in "01" and area[1:] != "11" and area[1] != "9"
            and exchange[0] not in "01" and exchange[1:] != "11")


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """Whether a number could be a US social security number (SSA issuance rules).

    Args:
        area: the first three digits.
        group: the middle two digits.
        serial: the last four digits.

    Returns:
        False for the ranges the SSA never issues: area 000, 666 or 900-999, group 00,
        serial 0000.
    """
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _secret_word(value: str) -> bool:
    """Whether what follows "password is" reads as a secret, not as an ordinary word ("wrong")."""
    if len(value) < 4:
        return False
    if value.isdigit():
        return True
    lowered = value.lower()
    if value.isalpha() and (lowered in _NOT_SECRETS or lowered.endswith(("ed", "ing", "ly"))):
        return False
    return not lowered.startswith(("http://", "https://", "[", "<"))


def _card_grouping(number: str) -> bool:
    """Whether a card candidate is laid out as cards are: in one run, in groups of four
    (the last may be shorter), or 4-6-5 / 4-6-4; an ISBN's 978-3-16-148410-0 is not."""
    groups = [len(g) for g in re.split(r"[ -]", number)]
    return (len(groups) == 1 or groups in ([4, 6, 5], [4, 6, 4])
            or (all(n == 4 for n in groups[:-1]) and 1 <= groups[-1] <= 4))


def _international_number(number: str) -> bool:
    """Whether "+..." / "00..." reads as a phone number: 8-15 digits after the prefix, the
    first group starting with an assigned country calling code (ITU E.164; "+44 20 ..."
    does, "004-72-5997" with a lone 4 does not), 11 digits for "+1" and "+7"."""
    national = number.removeprefix("+").removeprefix("00")
    digits = _digit_count(national)
    first = re.split(r"[ .()-]", national, maxsplit=1)[0]
    if first[:1] in ("1", "7"):  # North America, Russia and Kazakhstan: ten digits after the code
        return digits == 11
    return 8 <= digits <= 15 and (first[:2] in _COUNTRY_CODES_2
                                  or (len(first) >= 3 and first[:2] in _COUNTRY_CODES_3_PREFIXES))


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


def _preceded_by(pattern: re.Pattern[str], text: str, start: int) -> bool:
    return pattern.search(text, max(0, start - _CONTEXT_CHARS), start) is not None


def _secret_urls(text: str) -> Iterable[tuple[int, int]]:
    for m in _URL.finditer(text):
        url = m.group().rstrip(".,;:!?)]")
        if _secret_url(url):
            yield m.start(), m.start() + len(url)


def _emails(text: str) -> Iterable[tuple[int, int]]:
    if "@" in text:
        for m in _EMAIL.finditer(text):
            yield m.span()


def _cn_ids(text: str) -> Iterable[tuple[int, int]]:
    for m in _CN_ID.finditer(text):
        if cn_id_valid(m.group()):
            yield m.span()


def _ipv4s(text: str) -> Iterable[tuple[int, int]]:
    for m in _IPV4.finditer(text):
        yield m.span()


def _ipv6s(text: str) -> Iterable[tuple[int, int]]:
    if "::" in text or text.count(":") >= 2:
        for m in _IPV6.finditer(text):
            if _ipv6(m.group()):
                yield m.span()


def _us_phones(text: str) -> Iterable[tuple[int, int]]:
    for m in _US_PHONE.finditer(text):
        area = m.group("pa") or m.group("a")
        # One separator throughout, or "415 555-0132"; "(415) 555-0132" takes any.
        separators_ok = m.group("pa") is not None or m.group("s1") in (m.group("s2"), " ")
        if (separators_ok and nanp_valid(area, m.group("e"))
                and not _preceded_by(_REFERENCE_WORDS, text, m.start())):
            yield m.span()
    for m in _US_PHONE_BARE.finditer(text):
        if (nanp_valid(m.group("a"), m.group("e")) and _preceded_by(_PHONE_WORDS, text, m.start())
                and not _preceded_by(_REFERENCE_WORDS, text, m.start())):
            yield m.span()


def _ssns(text: str) -> Iterable[tuple[int, int]]:
    for m in _SSN.finditer(text):
        if not ssn_valid(m.group("a"), m.group("g"), m.group("n")):
            continue
        if _preceded_by(_SSN_WORDS, text, m.start()) or not (
                text[m.start() - 1:m.start()] == "#" or _preceded_by(_REFERENCE_WORDS, text, m.start())):
            yield m.span()
    for m in _SSN_BARE.finditer(text):
        if ssn_valid(m.group("a"), m.group("g"), m.group("n")) and _preceded_by(_SSN_WORDS, text, m.start()):
            yield m.span()


def _pins(text: str) -> Iterable[tuple[int, int]]:
    for m in _PIN.finditer(text):
        yield m.span("v")


def _passwords(text: str) -> Iterable[tuple[int, int]]:
    for m in _PASSWORD.finditer(text):
        if m.group("quoted") is not None:
            yield m.span("quoted")
            continue
        value = m.group("v").rstrip(".,;:?)]}'\"")
        if _secret_word(value):
            yield m.start("v"), m.start("v") + len(value)


def _after_context(pattern: re.Pattern[str]) -> Callable[[str], Iterable[tuple[int, int]]]:
    def find(text: str) -> Iterable[tuple[int, int]]:
        for m in pattern.finditer(text):
            yield m.span("v")
    return find


def _accounts(text: str) -> Iterable[tuple[int, int]]:
    for m in _ACCOUNT.finditer(text):
        groups = re.split(r"[ -]", m.group("v"))
        # "250 000" is an amount, "2024-03-15" a date: a grouped account number has a
        # group of 4+ digits and is not a date.
        if len(groups) == 1 or (max(len(g) for g in groups) >= 4 and not _DATE.match(m.group("v"))):
            yield m.span("v")


@dataclass(frozen=True)
class _Detector:
    """A detector and what a text must hold for it to find anything, checked first since
    most texts hold no personal data: at least ``min_digits`` digits and, when ``words``
    is not empty, one of them (in the lower-cased text)."""

    kind: str
    find: Callable[[str], Iterable[tuple[int, int]]]
    min_digits: int
    words: tuple[str, ...] = ()


# The naming words of the context-bound types. A spoken secret may have no digits; every
# other context-bound value is digits.
_SECRET_WORDS = ("pass", "pwd", "密码", "密碼", "口令")
_PIN_WORDS = ("pin", "pass", "otp", "code", "密码", "密碼", "口令", "验证码", "驗證碼", "动态码", "動態碼")
_CVV_WORDS = ("cvv", "cvc", "cvn", "csc", "code", "verification", "安全码", "安全碼")
_ACCOUNT_WORDS = ("acc", "a/c", "账号", "帳號", "账户", "帳戶", "帐号", "帐户")
# Ordered by the digits they need, so a text stops at the first detector needing more.
_DETECTORS = (
    _Detector("secret_url", _secret_urls, 0, ("://",)),
    _Detector("email", _emails, 0, ("@",)),
    _Detector("ip", _ipv6s, 0, (":",)),
    _Detector("credential", _passwords, 0, _SECRET_WORDS),
    _Detector("cvv", _after_context(_CVV), 3, _CVV_WORDS),
    _Detector("ip", _ipv4s, 4, (".",)),
    _Detector("credential", _pins, 4, _PIN_WORDS),
    _Detector("sort_code", _after_context(_SORT_CODE), 6, ("sort",)),
    _Detector("account", _accounts, 6, _ACCOUNT_WORDS),
    _Detector("ssn", _ssns, 9),
    _Detector("us_phone", _us_phones, 10),
    _Detector("cn_id", _cn_ids, 17),
)
_DIGIT = re.compile(r"\d")


def _candidates(text: str, kinds: frozenset[str]) -> Iterable[tuple[int, int, str]]:
    digits = len(_DIGIT.findall(text))
    lowered = text.lower()
    for detector in _DETECTORS:
        if digits < detector.min_digits:
            break
        if detector.kind in kinds and (not detector.words or any(w in lowered for w in detector.words)):
            yield from ((start, end, detector.kind) for start, end in detector.find(text))
    # IBANs (2+ digits), cards (13+) and phones (8+) share the IBAN-shaped runs.
    if digits < 2 or not kinds & {"iban", "card", "phone"}:
        return
    # An IBAN-shaped run with a wrong checksum is a mistyped IBAN: its digit groups are
    # not offered as cards or phones either.
    iban_shaped: list[tuple[int, int]] = []
    for m in _IBAN.finditer(text):
        value = m.group().rstrip()
        iban_shaped.append((m.start(), m.start() + len(value)))
        if "iban" in kinds and iban_valid(value):
            yield m.start(), m.start() + len(value), "iban"

    def inside_iban(m: re.Match[str]) -> bool:
        return any(m.start() < e and m.end() > s for s, e in iban_shaped)

    if "card" in kinds and digits >= 13:
        for m in _CARD.finditer(text):
            number = re.sub(r"[ -]", "", m.group())
            # An 18-digit run laid out like a resident ID (a real birth date in place) is a
            # mistyped ID far more often than an 18-digit card; leave it to cn_id.
            if (13 <= len(number) <= 19 and luhn_valid(number) and not (len(number) == 18 and _id_shaped(number))
                    and _card_grouping(m.group()) and not inside_iban(m)):
                yield m.start(), m.end(), "card"
    if "phone" in kinds and digits >= 8:
        for m in _PHONE_INTL.finditer(text):
            if _international_number(m.group()) and not inside_iban(m):
                yield m.start(), m.end(), "phone"
        for m in _PHONE_CN.finditer(text):
            if not inside_iban(m):
                yield m.start(), m.end(), "phone"


def _kinds(kinds: Collection[str] | None) -> frozenset[str]:
    if kinds is None:
        return _ALL_KINDS
    if isinstance(kinds, frozenset) and kinds <= _ALL_KINDS:  # a caller's constant, checked cheaply
        return kinds
    unknown = sorted(set(kinds) - _ALL_KINDS)
    if unknown:
        raise ValueError(f"unknown personal-data types {unknown}; known: {', '.join(PII_TYPES)}")
    return frozenset(kinds)


_ALL_KINDS = frozenset(PII_TYPES)
_PRIORITY = {kind: i for i, kind in enumerate(PII_TYPES)}


def find_pii(text: str, kinds: Collection[str] | None = None) -> list[PiiSpan]:
    """Find personal data in a text.

    Args:
        text: any text.
        kinds: the types to look for (default: all of ``PII_TYPES``).

    Returns:
        Non-overlapping spans, ordered by position; where candidates overlap, the type
        listed first in ``PII_TYPES`` wins, then the longer match.

    Raises:
        ValueError: an unknown type in ``kinds``.
    """
    found = list(_candidates(text, _kinds(kinds)))
    if not found:
        return []
    found.sort(key=lambda c: (_PRIORITY[c[2]], -(c[1] - c[0]), c[0]))
    taken: list[tuple[int, int, str]] = []
    for start, end, kind in found:
        if all(end <= s or start >= e for s, e, _ in taken):
            taken.append((start, end, kind))
    return [PiiSpan(s, e, k, text[s:e]) for s, e, k in sorted(taken)]


def redact_text(text: str, mode: RedactionMode = "placeholder",
                kinds: Collection[str] | None = None) -> tuple[str, list[PiiSpan]]:
    """Replace the personal data in a text.

    Args:
        text: any text.
        mode: "placeholder" writes the type, e.g. ``[EMAIL]``; "mask" writes one ``*``
            per character (digit groups and lengths stay visible, the values do not).
        kinds: the types to redact (default: all of ``PII_TYPES``).

    Returns:
        The redacted text and the spans found (positions in the original text).

    Raises:
        ValueError: an unknown mode or type (callers validate user input first).
    """
    if mode not in ("mask", "placeholder"):
        raise ValueError(f"unknown redaction mode {mode!r}")
    spans = find_pii(text, kinds)
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
# (cards, IDs, phones, IBANs, SSNs), no "@", no "://", no IPv4 dot-quad, no "::"/hex
# colon pair, no 415.555.0132, no secret word ("password", 密码) and no other naming word
# ("pin", "cvv", "sort code", "account", ...) followed by 3 digits within 40 characters. Used to skip most rows
# of a table without running the detectors (Arrow's RE2 kernels; valid for Python's re
# too); ``find_pii`` checks the same conditions itself, per detector.
PREFILTER = (r"\d[\d -]{6,}|@|://|\d\.\d+\.\d+\.\d|[0-9A-Fa-f]:[0-9A-Fa-f]*:|\d{3}\.\d{3}\.\d{4}"
             f"|(?i:{'|'.join(_SECRET_WORDS)})"
             f"|(?i:{'|'.join(dict.fromkeys(_PIN_WORDS + _CVV_WORDS + ('sort',) + _ACCOUNT_WORDS))})"
             r".{0,40}\d{3}")


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
