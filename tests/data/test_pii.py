"""Personal-data detection: planted entities and hard negatives, precision and recall per type."""

from __future__ import annotations

import random

import pytest

from chainkeeper.data.pii import (
    PII_TYPES,
    cn_id_valid,
    count_pii,
    find_pii,
    iban_valid,
    luhn_valid,
    redact_text,
    redact_texts,
)

_CN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_IBAN_SHAPES = {"DE": 18, "GB": None, "FR": 23, "NL": None, "ES": 20, "IT": None, "CH": 17}


def _luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    for check in "0123456789":
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable")


def _card(rng: random.Random, valid: bool = True) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("37", 15), ("6011", 16), ("62", 19), ("4", 13)])
    number = _luhn_complete(rng, prefix, length)
    if not valid:
        number = number[:-1] + str((int(number[-1]) + rng.randint(1, 9)) % 10)
    style = rng.choice(["plain", "space", "dash"])
    if style == "plain" or length != 16:
        return number
    sep = " " if style == "space" else "-"
    return sep.join(number[i:i + 4] for i in range(0, 16, 4))


def _iban(rng: random.Random, valid: bool = True) -> str:
    country = rng.choice(["DE", "GB", "FR", "NL", "ES", "IT", "CH", "BE"])
    length = {"DE": 22, "GB": 22, "FR": 27, "NL": 18, "ES": 24, "IT": 27, "CH": 21, "BE": 16}[country]
    if country in ("GB", "NL"):
        bban = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
        bban += "".join(rng.choice("0123456789") for _ in range(length - 8))
    elif country == "IT":
        bban = rng.choice("ABCDEFGHIJ") + "".join(rng.choice("0123456789") for _ in range(length - 5))
    else:
        bban = "".join(rng.choice("0123456789") for _ in range(length - 4))
    numeric = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    check = 98 - numeric % 97
    if not valid:
        check = (check + rng.randint(1, 90)) % 97 + 2
    iban = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        iban = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
    return iban


def _cn_id(rng: random.Random, valid: bool = True) -> str:
    area = rng.choice(["110101", "310104", "440305", "510107", "330106"])
    born = f"{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    body = area + born + f"{rng.randint(0, 999):03d}"
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, _CN_WEIGHTS, strict=True)) % 11]
    if not valid:
        check = rng.choice([c for c in "0123456789X" if c != check])
    return body + check


def _phone(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9))
    if kind == 1:
        n = "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9))
        return f"+86 {n[:3]} {n[3:7]} {n[7:]}"
    if kind == 2:
        return f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}"
    if kind == 3:
        return f"+1-{rng.randint(201, 989)}-{rng.randint(200, 999)}-{rng.randint(1000, 9999)}"
    return f"+49 30 {rng.randint(100000, 999999)}{rng.randint(10, 99)}"


def _email(rng: random.Random) -> str:
    user = rng.choice(["anna.li", "j_smith", "wang.wei+bank", "support", "zhang99"])
    return f"{user}@{rng.choice(['example.com', 'mail.example.cn', 'qq.com', 'bank-example.co.uk'])}"


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return ".".join(str(rng.randint(0, 255)) for _ in range(4))
    return rng.choice(["2001:db8::1", "fe80::1ff:fe23:4567:890a", f"2001:db8:85a3::8a2e:370:{rng.randint(1, 9999)}"])


def _secret_url(rng: random.Random) -> str:
    token = "".join(rng.choice("abcdef0123456789") for _ in range(24))
    return rng.choice([
        f"https://api.example.com/v1/statements?account=7&access_token={token}",
        f"https://user:{token[:10]}@files.example.com/export.csv",
        f"http://example.com/reset?email=x&token={token}",
        f"https://storage.example.com/obj?sig={token}&expires=1700000000",
        f"https://example.com/login?user=bob&password={token[:8]}",
        f"https://maps.example.com/api?key={token}",
    ])


GENERATORS = {"email": _email, "phone": _phone, "card": _card, "iban": _iban, "ip": _ip, "cn_id": _cn_id,
              "secret_url": _secret_url}
TEMPLATES = [
    "my {kind} is {value}, please help",
    "您好，我的信息是{value}，谢谢",
    "Contact: {value}.",
    "({value}) was used for the transfer on 2024-03-15 of $1,250.00",
    "{value}",
    "请核实 {value} 并回电",
]


def _hard_negatives(rng: random.Random) -> list[str]:
    """Texts with look-alikes and no personal data."""
    return [
        f"order number {rng.randint(10**9, 10**10 - 1)} "
        f"shipped on 2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        f"amount 1,{rng.randint(100, 999)},{rng.randint(100, 999)}.{rng.randint(10, 99)} CNY transferred",
        f"ticket #{rng.randint(100000, 999999)}-{rng.randint(1000, 9999)} is open",
        f"card ending {_card(rng, valid=False)} declined",  # fails Luhn
        f"IBAN {_iban(rng, valid=False)} was rejected",  # wrong checksum
        f"身份证号 {_cn_id(rng, valid=False)} 校验失败",  # wrong check character
        f"reference 12{rng.randint(100000000, 999999999)} for your claim",  # 11 digits, not 1[3-9]
        "call at 10:30:45 on 2024.01.15, version 1.2.3 installed",
        "see https://example.com/help?page=2&lang=en for details",
        f"tracking code SF{rng.randint(10**11, 10**12 - 1)} arrives tomorrow",
        "the ratio was 3.14.15 and build 10.0.0.256.1",
        f"invoice INV-{rng.randint(2020, 2026)}-{rng.randint(10000, 99999)}, total ¥{rng.randint(10, 9999)}.00",
        f"date {rng.randint(1990, 2024)}{rng.randint(1, 12):02d}{rng.randint(10, 28)} and code ab:cd",
    ]


def _planted_corpus(seed: int, per_type: int) -> list[tuple[str, list[tuple[str, str]]]]:
    rng = random.Random(seed)
    corpus: list[tuple[str, list[tuple[str, str]]]] = []
    for kind, make in GENERATORS.items():
        for _ in range(per_type):
            value = make(rng)
            corpus.append((rng.choice(TEMPLATES).format(kind=kind, value=value), [(kind, value)]))
    for _ in range(per_type // 2):
        corpus.extend((text, []) for text in _hard_negatives(rng))
    rng.shuffle(corpus)
    return corpus


def precision_recall(corpus: list[tuple[str, list[tuple[str, str]]]]) -> dict[str, tuple[float, float, int]]:
    tp = dict.fromkeys(PII_TYPES, 0)
    fp = dict.fromkeys(PII_TYPES, 0)
    fn = dict.fromkeys(PII_TYPES, 0)
    for text, planted in corpus:
        found = {(s.kind, s.value) for s in find_pii(text)}
        expected = set(planted)
        for kind, _ in found & expected:
            tp[kind] += 1
        for kind, _ in found - expected:
            fp[kind] += 1
        for kind, _ in expected - found:
            fn[kind] += 1
    return {k: (tp[k] / max(1, tp[k] + fp[k]), tp[k] / max(1, tp[k] + fn[k]), tp[k] + fn[k]) for k in PII_TYPES}


def test_planted_entities_are_found_with_precision_and_recall_of_at_least_95_percent() -> None:
    scores = precision_recall(_planted_corpus(seed=7, per_type=300))

    print("\ntype        precision  recall  planted")
    for kind, (precision, recall, planted) in scores.items():
        print(f"{kind:<11} {precision:9.3f} {recall:7.3f} {planted:8d}")
    for kind, (precision, recall, _) in scores.items():
        assert precision >= 0.95, f"{kind} precision {precision:.3f}"
        assert recall >= 0.95, f"{kind} recall {recall:.3f}"


def test_hard_negatives_alone_give_no_detections() -> None:
    rng = random.Random(3)
    texts = [t for _ in range(50) for t in _hard_negatives(rng)]

    found = [(t, find_pii(t)) for t in texts]

    assert [(t, s) for t, s in found if s] == []


@pytest.mark.parametrize(("text", "kind"), [
    pytest.param("write to anna.li@example.com today", "email", id="email"),
    pytest.param("手机13912345678联系", "phone", id="cn-mobile-inside-chinese"),
    pytest.param("call +86 139 1234 5678", "phone", id="cn-mobile-with-country-code"),
    pytest.param("card 4111 1111 1111 1111 lost", "card", id="card-grouped"),
    pytest.param("GB82 WEST 1234 5698 7654 32", "iban", id="iban-grouped"),
    pytest.param("from 192.168.0.1.", "ip", id="ipv4-end-of-sentence"),
    pytest.param("host 2001:db8::ff00:42:8329 down", "ip", id="ipv6"),
    pytest.param("ID 11010519491231002X ok", "cn_id", id="cn-id-with-x"),
    pytest.param("see https://u:secret@example.com/x", "secret_url", id="url-userinfo"),
])
def test_each_type_is_detected_in_context(text: str, kind: str) -> None:
    assert [s.kind for s in find_pii(text)] == [kind]


def test_checksums_accept_known_valid_values_and_reject_altered_ones() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB83 WEST 1234 5698 7654 32")
    assert not iban_valid("GB82 WEST 1234 5698 7654")  # wrong length for GB
    assert cn_id_valid("11010519491231002X") and not cn_id_valid("110105194912310021")
    assert not cn_id_valid("110105194902300028")  # 30 February


def test_redaction_writes_placeholders_or_masks_and_counts_per_type() -> None:
    text = "mail anna@example.com or call +44 20 7946 0958"

    placeholder, spans = redact_text(text, "placeholder")
    masked, _ = redact_text(text, "mask")

    assert placeholder == "mail [EMAIL] or call [PHONE]"
    assert masked == "mail " + "*" * 16 + " or call " + "*" * 16
    assert count_pii(spans)["email"] == 1 and count_pii(spans)["phone"] == 1


def test_redact_texts_passes_nulls_and_reports_changed_positions() -> None:
    out, counts, changed = redact_texts(["clean", None, "ip 10.0.0.1", "x@y.org"])

    assert out == ["clean", None, "ip [IP]", "[EMAIL]"]
    assert changed == [2, 3]
    assert counts["ip"] == 1 and counts["email"] == 1 and sum(counts.values()) == 2
