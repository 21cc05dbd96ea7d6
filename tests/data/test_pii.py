"""Personal-data detection: planted entities and hard negatives, precision and recall per type.

The planted set (``tests/data/pii_planted.py``, written out as ``pii_planted.jsonl``) holds
English and Chinese sentences with values of every type at known offsets, hand-written
sentences, and hard negatives (order numbers, dates, amounts, tracking ids, phone-shaped
reference numbers, "pin" without a number, "password reset" without a secret).
"""

from __future__ import annotations

import csv
import random
import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from chainkeeper.data.pii import (
    PII_TYPES,
    PREFILTER,
    cn_id_valid,
    count_pii,
    find_pii,
    iban_valid,
    luhn_valid,
    nanp_valid,
    redact_text,
    redact_texts,
    redact_tokens,
    ssn_valid,
)
from tests.conftest import DATASETS_DIR
from tests.data.pii_planted import FILE, FILE_PER_TYPE, FILE_SEED, hard_negatives, planted_corpus, read_planted

# The types that existed before issue 15 (item 7).
OLD_TYPES = ("secret_url", "email", "iban", "cn_id", "card", "ip", "phone")


def precision_recall(rows: list[dict[str, Any]]) -> dict[str, tuple[float, float, int]]:
    """Type -> (precision, recall, planted); a detection counts when its offsets and type match."""
    tp = dict.fromkeys(PII_TYPES, 0)
    fp = dict.fromkeys(PII_TYPES, 0)
    fn = dict.fromkeys(PII_TYPES, 0)
    for row in rows:
        found = {(s.start, s.end, s.kind) for s in find_pii(row["text"])}
        expected = {tuple(s) for s in row["spans"]}
        for _, _, kind in found & expected:
            tp[kind] += 1
        for _, _, kind in found - expected:
            fp[kind] += 1
        for _, _, kind in expected - found:
            fn[kind] += 1
    return {k: (tp[k] / max(1, tp[k] + fp[k]), tp[k] / max(1, tp[k] + fn[k]), tp[k] + fn[k]) for k in PII_TYPES}


def _assert_at_least_95_percent(scores: dict[str, tuple[float, float, int]]) -> None:
    print("\ntype        precision  recall  planted")
    for kind, (precision, recall, planted) in scores.items():
        print(f"{kind:<11} {precision:9.3f} {recall:7.3f} {planted:8d}")
    for kind, (precision, recall, planted) in scores.items():
        assert planted >= 25, f"{kind}: only {planted} planted"
        assert precision >= 0.95, f"{kind} precision {precision:.3f}"
        assert recall >= 0.95, f"{kind} recall {recall:.3f}"


def test_the_planted_file_is_the_generators_output_with_values_at_their_offsets() -> None:
    rows = read_planted()

    assert rows == planted_corpus(FILE_SEED, FILE_PER_TYPE), f"rewrite {FILE.name}: python -m tests.data.pii_planted"
    assert {r["lang"] for r in rows} == {"en", "zh"}
    assert {s[2] for r in rows for s in r["spans"]} == set(PII_TYPES)
    assert sum(not r["spans"] for r in rows) >= 300  # hard negatives
    for row in rows:
        for start, end, _ in row["spans"]:
            assert 0 <= start < end <= len(row["text"]) and row["text"][start:end].strip() == row["text"][start:end]


def test_every_type_reaches_95_percent_precision_and_recall_on_the_planted_file() -> None:
    _assert_at_least_95_percent(precision_recall(read_planted()))


def test_every_type_reaches_95_percent_precision_and_recall_on_a_larger_planted_set() -> None:
    _assert_at_least_95_percent(precision_recall(planted_corpus(seed=7, per_type=150)))


def test_hard_negatives_alone_give_no_detections() -> None:
    rng = random.Random(3)
    texts = [t for _ in range(20) for _, t in hard_negatives(rng)]

    found = [(t, [(s.kind, s.value) for s in find_pii(t)]) for t in texts]

    assert [(t, s) for t, s in found if s] == []


@pytest.mark.datasets
def test_real_customer_texts_without_personal_data_give_no_detections() -> None:
    with (DATASETS_DIR / "banking77" / "train.csv").open(encoding="utf-8", newline="") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]

    # 10,003 BANKING77 questions, with "PIN", "passcode", "account number", "code" ... in them.
    found = [(t, [(s.kind, s.value) for s in find_pii(t)]) for t in texts]

    assert len(texts) > 10_000 and [(t, s) for t, s in found if s] == []


@pytest.mark.parametrize(("text", "kind", "value"), [
    pytest.param("write to anna.li@example.com today", "email", "anna.li@example.com", id="email"),
    pytest.param("手机13912345678联系", "phone", "13912345678", id="cn-mobile-inside-chinese"),
    pytest.param("call +86 139 1234 5678", "phone", "+86 139 1234 5678", id="cn-mobile-with-country-code"),
    pytest.param("card 4111 1111 1111 1111 lost", "card", "4111 1111 1111 1111", id="card-grouped"),
    pytest.param("GB82 WEST 1234 5698 7654 32", "iban", "GB82 WEST 1234 5698 7654 32", id="iban-grouped"),
    pytest.param("from 192.168.0.1.", "ip", "192.168.0.1", id="ipv4-end-of-sentence"),
    pytest.param("host 2001:db8::ff00:42:8329 down", "ip", "2001:db8::ff00:42:8329", id="ipv6"),
    pytest.param("ID 11010519491231002X ok", "cn_id", "11010519491231002X", id="cn-id-with-x"),
    pytest.param("see https://u:secret@example.com/x", "secret_url", "https://u:secret@example.com/x",
                 id="url-userinfo"),
    pytest.param("call (415) 555-0132 today", "us_phone", "(415) 555-0132", id="us-phone-parentheses"),
    pytest.param("call 415-555-0132", "us_phone", "415-555-0132", id="us-phone-dashes"),
    pytest.param("call 415.555.0132", "us_phone", "415.555.0132", id="us-phone-dots"),
    pytest.param("call +1 415 555 0132", "us_phone", "+1 415 555 0132", id="us-phone-plus-one"),
    pytest.param("mobile 4155550132", "us_phone", "4155550132", id="us-phone-bare-after-phone-word"),
    pytest.param("SSN 123-45-6789 on file", "ssn", "123-45-6789", id="ssn-dashes"),
    pytest.param("ssn: 123456789", "ssn", "123456789", id="ssn-bare-after-ssn"),
    pytest.param("my password is hunter2", "credential", "hunter2", id="password-is"),
    pytest.param("my password: s3cret!", "credential", "s3cret!", id="password-colon"),
    pytest.param("PIN is 1234", "credential", "1234", id="pin-is"),
    pytest.param("pin 4821", "credential", "4821", id="pin-number"),
    pytest.param("the passcode is 662019", "credential", "662019", id="passcode"),
    pytest.param("密码是abc123，谢谢", "credential", "abc123", id="chinese-password"),
    pytest.param("CVV 381", "cvv", "381", id="cvv"),
    pytest.param("cvc: 9071", "cvv", "9071", id="cvc-four-digits"),
    pytest.param("sort code 12-34-56", "sort_code", "12-34-56", id="sort-code-dashes"),
    pytest.param("sort code: 123456", "sort_code", "123456", id="sort-code-bare"),
    pytest.param("account number 12345678", "account", "12345678", id="account-number"),
    pytest.param("a/c 1234 5678 9012", "account", "1234 5678 9012", id="account-grouped"),
    pytest.param("我的账号是6225880137654321", "account", "6225880137654321", id="chinese-account"),
])
def test_each_type_is_detected_in_context(text: str, kind: str, value: str) -> None:
    assert [(s.kind, s.value) for s in find_pii(text)] == [(kind, value)]


@pytest.mark.parametrize("text", [
    pytest.param("order 415-555-0132 shipped", id="us-phone-shaped-order-number"),
    pytest.param("ticket #415-555-0132", id="us-phone-shaped-ticket"),
    pytest.param("call 123-456-7890", id="area-code-starting-with-1"),
    pytest.param("dial 415-911-0132", id="n11-exchange"),
    pytest.param("reference 4155550132", id="ten-digits-without-phone-word"),
    pytest.param("number 666-12-3456", id="ssn-area-666"),
    pytest.param("code 912-34-5678", id="ssn-area-9xx"),
    pytest.param("id 123-00-4567", id="ssn-group-00"),
    pytest.param("id 123-45-0000", id="ssn-serial-0000"),
    pytest.param("transfer 123456789 done", id="nine-digits-without-ssn-word"),
    pytest.param("I forgot my password, send a password reset link", id="password-reset"),
    pytest.param("my password is wrong", id="password-is-wrong"),
    pytest.param("please pin this message", id="pin-as-verb"),
    pytest.param("I entered the wrong PIN 3 times", id="pin-without-number"),
    pytest.param("the CVV is on the back", id="cvv-without-number"),
    pytest.param("cvv 12345", id="cvv-too-long"),
    pytest.param("sort the list by code 123456", id="sort-not-sort-code"),
    pytest.param("my account was charged $1,250.00", id="account-amount"),
    pytest.param("account opened on 2024-03-15", id="account-date"),
    pytest.param("ISBN 978-3-16-148410-0", id="isbn-not-a-card"),
    pytest.param("case 004-72-5997 filed", id="00-prefix-without-country-code"),
])
def test_look_alikes_are_not_detected(text: str) -> None:
    assert find_pii(text) == []


def test_a_credential_phrase_keeps_its_words_and_loses_only_the_secret() -> None:
    assert redact_text("PIN is 1234, password: hunter2")[0] == "PIN is [SECRET], password: [SECRET]"
    assert redact_text('my password is "correct horse battery" ok')[0] == 'my password is "[SECRET]" ok'
    assert redact_text("我的支付密码为 888999，验证码是 402913")[0] == "我的支付密码为 [SECRET]，验证码是 [SECRET]"
    assert redact_text("card 4111111111111111 cvv 123 sort code 12-34-56 account 12345678")[0] == \
        "card [CARD] cvv [CVV] sort code [SORT_CODE] account [ACCOUNT]"
    assert redact_text("ssn 123-45-6789, call (415) 555-0132")[0] == "ssn [SSN], call [PHONE]"


def test_token_redaction_replaces_only_the_secret_token() -> None:
    tokens, spans = redact_tokens(["my", "PIN", "is", "1234", "and", "sort", "code", "12-34-56"])

    assert tokens == ["my", "PIN", "is", "[SECRET]", "and", "sort", "code", "[SORT_CODE]"]
    assert [s.kind for s in spans] == ["credential", "sort_code"]


def test_kinds_restrict_the_search_and_unknown_kinds_are_refused() -> None:
    text = "mail a@b.org, ssn 123-45-6789"

    assert [s.kind for s in find_pii(text, OLD_TYPES)] == ["email"]
    assert [s.kind for s in find_pii(text, ["ssn"])] == ["ssn"]
    with pytest.raises(ValueError, match="unknown personal-data types"):
        find_pii(text, ["passport"])


def test_the_prefilter_passes_every_text_with_personal_data_in_python_and_in_arrow() -> None:
    rows = read_planted()
    holding = [r["text"] for r in rows if find_pii(r["text"])]

    in_arrow = pc.match_substring_regex(pa.array(holding, pa.string()), PREFILTER).to_pylist()

    assert len(holding) >= 400
    assert [t for t in holding if not re.search(PREFILTER, t)] == []
    assert [t for t, hit in zip(holding, in_arrow, strict=True) if not hit] == []


def test_checksums_and_issuance_rules() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB83 WEST 1234 5698 7654 32")
    assert not iban_valid("GB82 WEST 1234 5698 7654")  # wrong length for GB
    assert cn_id_valid("11010519491231002X") and not cn_id_valid("110105194912310021")
    assert not cn_id_valid("110105194902300028")  # 30 February
    assert nanp_valid("415", "555") and nanp_valid("800", "201")
    assert not nanp_valid("123", "555") and not nanp_valid("415", "011") and not nanp_valid("911", "555")
    assert not nanp_valid("415", "411") and not nanp_valid("295", "555")  # N11 exchange, N9X area
    assert ssn_valid("123", "45", "6789") and ssn_valid("899", "01", "0001")
    assert not any(ssn_valid(*parts) for parts in [("000", "12", "3456"), ("666", "12", "3456"),
                                                    ("900", "12", "3456"), ("123", "00", "4567"),
                                                    ("123", "45", "0000")])


def test_redaction_writes_placeholders_or_masks_and_counts_per_type() -> None:
    text = "mail anna@example.com or call +44 20 7946 0958"

    placeholder, spans = redact_text(text, "placeholder")
    masked, _ = redact_text(text, "mask")

    assert placeholder == "mail [EMAIL] or call [PHONE]"
    assert masked == "mail " + "*" * 16 + " or call " + "*" * 16
    assert count_pii(spans)["email"] == 1 and count_pii(spans)["phone"] == 1


def test_redact_texts_passes_nulls_and_reports_changed_positions() -> None:
    out, counts, changed = redact_texts(["clean", None, "ip 10.0.0.1", "x@y.org", "PIN is 1234"])

    assert out == ["clean", None, "ip [IP]", "[EMAIL]", "PIN is [SECRET]"]
    assert changed == [2, 3, 4]
    assert counts["ip"] == 1 and counts["email"] == 1 and counts["credential"] == 1 and sum(counts.values()) == 3
