"""A planted set for the personal-data detectors (``chainkeeper.data.pii``), deterministic.

Sentences in English and Chinese with values of every type at known offsets, and hard
negatives: look-alikes that must not be redacted (order numbers, dates, amounts, tracking
ids, phone-shaped reference numbers, "pin" as a verb or a noun without a number,
"password reset" without a secret, failed checksums, the SSA's never-issued SSN ranges).
Each row is ``{"text", "lang", "group", "spans": [[start, end, kind], ...]}``; ``group``
names the planted type, or "negative".

``tests/data/pii_planted.jsonl`` is this module's output for ``FILE_SEED`` and
``FILE_PER_TYPE`` (the benchmark reads it; a test checks it is current). Rewrite it with

    .venv/bin/python -m tests.data.pii_planted
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

FILE = Path(__file__).with_name("pii_planted.jsonl")
FILE_SEED, FILE_PER_TYPE = 15, 30
DIGITS = "0123456789"
_CN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
Gen = Callable[[random.Random], str]


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(DIGITS) for _ in range(n))


def luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    """A number of ``length`` digits starting with ``prefix`` whose last digit makes the Luhn check pass."""
    body = prefix + _digits(rng, length - len(prefix) - 1)
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def card(rng: random.Random, valid: bool = True) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("37", 15), ("6011", 16), ("62", 19), ("4", 13)])
    number = luhn_complete(rng, prefix, length)
    if not valid:
        number = number[:-1] + str((int(number[-1]) + rng.randint(1, 9)) % 10)
    style = rng.choice(["plain", "space", "dash"])
    if style == "plain" or length != 16:
        return number
    return (" " if style == "space" else "-").join(number[i:i + 4] for i in range(0, 16, 4))


def iban(rng: random.Random, valid: bool = True) -> str:
    country = rng.choice(["DE", "GB", "FR", "NL", "ES", "IT", "CH", "BE"])
    length = {"DE": 22, "GB": 22, "FR": 27, "NL": 18, "ES": 24, "IT": 27, "CH": 21, "BE": 16}[country]
    if country in ("GB", "NL"):
        bban = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4)) + _digits(rng, length - 8)
    elif country == "IT":
        bban = rng.choice("ABCDEFGHIJ") + _digits(rng, length - 5)
    else:
        bban = _digits(rng, length - 4)
    check = 98 - int("".join(str(int(c, 36)) for c in bban + country + "00")) % 97
    if not valid:
        check = (check + rng.randint(1, 90)) % 97 + 2
    value = f"{country}{check:02d}{bban}"
    return " ".join(value[i:i + 4] for i in range(0, len(value), 4)) if rng.random() < 0.5 else value


def cn_id(rng: random.Random, valid: bool = True) -> str:
    area = rng.choice(["110101", "310104", "440305", "510107", "330106"])
    body = area + f"{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, _CN_WEIGHTS, strict=True)) % 11]
    if not valid:
        check = rng.choice([c for c in "0123456789X" if c != check])
    return body + check


def phone(rng: random.Random) -> str:
    """International and Chinese mobile numbers (the "phone" type; North American ones are us_phone)."""
    kind = rng.randrange(5)
    mobile = "1" + rng.choice("3456789") + _digits(rng, 9)
    if kind == 0:
        return mobile
    if kind == 1:
        return f"+86 {mobile[:3]} {mobile[3:7]} {mobile[7:]}"
    if kind == 2:
        return f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}"
    if kind == 3:
        return f"+33 1 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}"
    return f"+49 30 {rng.randint(100000, 999999)}{rng.randint(10, 99)}"


def email(rng: random.Random) -> str:
    user = rng.choice(["anna.li", "j_smith", "wang.wei+bank", "support", "zhang99"])
    return f"{user}@{rng.choice(['example.com', 'mail.example.cn', 'qq.com', 'bank-example.co.uk'])}"


def ip(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return ".".join(str(rng.randint(0, 255)) for _ in range(4))
    return rng.choice(["2001:db8::1", "fe80::1ff:fe23:4567:890a", f"2001:db8:85a3::8a2e:370:{rng.randint(1, 9999)}"])


def secret_url(rng: random.Random) -> str:
    token = "".join(rng.choice("abcdef0123456789") for _ in range(24))
    return rng.choice([
        f"https://api.example.com/v1/statements?account=7&access_token={token}",
        f"https://user:{token[:10]}@files.example.com/export.csv",
        f"http://example.com/reset?email=x&token={token}",
        f"https://storage.example.com/obj?sig={token}&expires=1700000000",
        f"https://example.com/login?user=bob&password={token[:8]}",
        f"https://maps.example.com/api?key={token}",
    ])


def _nanp_code(rng: random.Random, area: bool) -> str:
    while True:
        code = str(rng.randint(2, 9)) + _digits(rng, 2)
        if code[1:] != "11" and not (area and code[1] == "9"):
            return code


def us_phone(rng: random.Random) -> str:
    a, e, s = _nanp_code(rng, True), _nanp_code(rng, False), _digits(rng, 4)
    return rng.choice([f"({a}) {e}-{s}", f"{a}-{e}-{s}", f"{a}.{e}.{s}", f"{a} {e} {s}", f"+1 {a}-{e}-{s}",
                       f"+1 ({a}) {e}-{s}", f"1-{a}-{e}-{s}", f"+1.{a}.{e}.{s}", f"({a}){e}-{s}", f"{a} {e}-{s}"])


def us_phone_bare(rng: random.Random) -> str:
    return _nanp_code(rng, True) + _nanp_code(rng, False) + _digits(rng, 4)


def _ssn_parts(rng: random.Random) -> tuple[str, str, str]:
    while True:
        area = f"{rng.randint(1, 899):03d}"
        if area != "666":
            return area, f"{rng.randint(1, 99):02d}", f"{rng.randint(1, 9999):04d}"


def ssn(rng: random.Random) -> str:
    return rng.choice(["-", "-", " "]).join(_ssn_parts(rng))


def ssn_bare(rng: random.Random) -> str:
    return "".join(_ssn_parts(rng))


def pin(rng: random.Random) -> str:
    return _digits(rng, rng.choice([4, 4, 4, 6, 6, 8]))


def password(rng: random.Random) -> str:
    word = rng.choice(["hunter", "dragon", "sunshine", "Tr0ub4dor", "qwerty", "letmein", "Summer", "Pa55word",
                       "monkey", "zx", "tiger"])
    suffix = rng.choice(["2", "123", "!", "&3", "#2024", "_99", "", "$", "2025!"])
    value = word + suffix
    return value if len(value) >= 6 else value + _digits(rng, 4)


def quoted_password(rng: random.Random) -> str:
    return rng.choice(["correct horse battery staple", "open sesame 42", "my dog rex", "blue moon rising"])


def cvv(rng: random.Random) -> str:
    return _digits(rng, rng.choice([3, 3, 3, 4]))


def sort_code(rng: random.Random) -> str:
    a, b, c = (f"{rng.randint(0, 99):02d}" for _ in range(3))
    return rng.choice([f"{a}-{b}-{c}", f"{a}-{b}-{c}", f"{a} {b} {c}", f"{a}{b}{c}"])


def account(rng: random.Random) -> str:
    n = rng.choice([6, 8, 8, 8, 10, 12, 14, 17])
    number = str(rng.randint(1, 9)) + _digits(rng, n - 1)
    if n in (12, 8) and rng.random() < 0.3:
        return " ".join(number[i:i + 4] for i in range(0, n, 4))
    return number


# Slot name -> (type, generator). A template names its slots in braces.
SLOTS: dict[str, tuple[str, Gen]] = {
    "email": ("email", email), "phone": ("phone", phone), "card": ("card", card), "iban": ("iban", iban),
    "ip": ("ip", ip), "cn_id": ("cn_id", cn_id), "secret_url": ("secret_url", secret_url),
    "us_phone": ("us_phone", us_phone), "us_phone_bare": ("us_phone", us_phone_bare), "ssn": ("ssn", ssn),
    "ssn_bare": ("ssn", ssn_bare), "pin": ("credential", pin), "password": ("credential", password),
    "quoted": ("credential", quoted_password), "cvv": ("cvv", cvv), "sort_code": ("sort_code", sort_code),
    "account": ("account", account),
}
# Sentences for the types that need no naming word: {x} is the value.
GENERIC = {
    "en": ["my details: {x}, please help", "Contact: {x}.",
           "({x}) was used for the transfer on 2024-03-15 of $1,250.00", "{x}",
           "Hi, it's Sam again - {x} - can you check?", "please update my record to {x} thanks"],
    "zh": ["您好，我的信息是{x}，谢谢", "请核实 {x} 并回电", "联系方式：{x}。", "我昨天转账失败了，{x}，请帮忙处理"],
}
# Sentences for each type (or slot) that has its own wording.
TEMPLATES: dict[str, dict[str, list[str]]] = {
    "us_phone": {
        "en": ["call me at {us_phone} after 5pm", "My cell is {us_phone}.", "you can reach me on {us_phone} anytime",
               "Phone: {us_phone}", "text me at {us_phone_bare} please", "my phone number is {us_phone_bare}"],
        "zh": ["请拨打 {us_phone} 联系我", "我在美国的电话是{us_phone}，谢谢", "手机 {us_phone_bare}"],
    },
    "ssn": {
        "en": ["my SSN is {ssn}", "social security number: {ssn}", "SSN {ssn_bare} for the tax form",
               "they asked for {ssn} to verify me", "ssn: {ssn_bare}"],
        "zh": ["我的社会安全号是 {ssn}", "社会安全号{ssn_bare}，请核实"],
    },
    "credential": {
        "en": ["my password is {password}", "Password: {password}", "my new pin is {pin}", "PIN is {pin}",
               "pin {pin}", "the passcode is {pin}", "passcode {pin}, don't tell anyone",
               "pwd={password}", "my password for the online banking is {password} but it fails",
               "password is '{quoted}'", "OTP: {pin}", "my one-time code is {pin}",
               "login failed, password was {password}"],
        "zh": ["我的密码是{password}，登录不了", "密码：{pin}", "支付密码为{pin}", "验证码是{pin}",
               "登录密码是 {password}", "我的PIN码是{pin}"],
    },
    "cvv": {
        "en": ["the CVV is {cvv}", "cvc: {cvv}", "card security code {cvv}", "CVV2 {cvv} and expiry 09/27",
               "security code is {cvv}", "card {card} exp 12/27 cvv {cvv}"],
        "zh": ["卡背面的安全码是{cvv}", "CVV码：{cvv}"],
    },
    "sort_code": {
        "en": ["sort code {sort_code}", "my sort code is {sort_code}, thanks", "Sort code: {sort_code}",
               "sort code {sort_code}, account number {account}"],
        "zh": ["英国银行 sort code {sort_code}，请转账"],
    },
    "account": {
        "en": ["account number {account}", "my account no. is {account}", "acct #{account}",
               "please send it to a/c {account}", "Account Number: {account}, name J Smith"],
        "zh": ["我的账号是{account}", "收款账户：{account}，谢谢", "帐号 {account} 被冻结了"],
    },
}


def _fill(rng: random.Random, template: str) -> tuple[str, list[list[Any]]]:
    """The template with each slot replaced by a generated value, and the values' spans."""
    parts = re.split(r"\{(\w+)\}", template)
    text, spans = "", []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            text += part
            continue
        kind, make = SLOTS[part]
        value = make(rng)
        spans.append([len(text), len(text) + len(value), kind])
        text += value
    return text, spans


def hard_negatives(rng: random.Random) -> list[tuple[str, str]]:
    """Look-alikes with no personal data, as (lang, text)."""
    a, e = _nanp_code(rng, True), _nanp_code(rng, False)
    s = _digits(rng, 4)
    return [
        # The types that existed before (issue 14).
        ("en", f"order number {rng.randint(10**9, 10**10 - 1)} shipped on 2024-{rng.randint(1, 12):02d}-"
               f"{rng.randint(1, 28):02d}"),
        ("en", f"amount 1,{rng.randint(100, 999)},{rng.randint(100, 999)}.{rng.randint(10, 99)} CNY transferred"),
        ("en", f"ticket #{rng.randint(100000, 999999)}-{rng.randint(1000, 9999)} is open"),
        ("en", f"card ending {card(rng, valid=False)} declined"),  # fails Luhn
        ("en", f"IBAN {iban(rng, valid=False)} was rejected"),  # wrong checksum
        ("zh", f"身份证号 {cn_id(rng, valid=False)} 校验失败"),  # wrong check character
        ("en", f"reference 12{rng.randint(100000000, 999999999)} for your claim"),  # 11 digits, not 1[3-9]
        ("en", "call at 10:30:45 on 2024.01.15, version 1.2.3 installed"),
        ("en", "see https://example.com/help?page=2&lang=en for details"),
        ("en", f"tracking code SF{rng.randint(10**11, 10**12 - 1)} arrives tomorrow"),
        ("en", "the ratio was 3.14.15 and build 10.0.0.256.1"),
        ("en", f"invoice INV-{rng.randint(2020, 2026)}-{rng.randint(10000, 99999)}, total ¥{rng.randint(10, 9999)}.00"),
        ("en", f"date {rng.randint(1990, 2024)}{rng.randint(1, 12):02d}{rng.randint(10, 28)} and code ab:cd"),
        # North American phone look-alikes: reference numbers, invalid codes, dates, amounts.
        ("en", f"order {a}-{e}-{s} was shipped"),
        ("en", f"ticket #{a}-{e}-{s} is closed"),
        ("en", f"your tracking number is {a} {e} {s} {rng.randint(10, 99)}"),
        ("en", f"reference no. {a}.{e}.{s} on the invoice"),
        ("en", f"SKU ORD-{a}-{e}-{s}-B in stock"),
        ("en", f"call {rng.choice('01')}{_digits(rng, 2)}-{e}-{s} is not a valid number"),  # area code 0xx/1xx
        ("en", f"dial {a}-{rng.choice('2345678')}11-{s} from the lobby"),  # N11 exchange
        ("en", f"on {rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/{rng.randint(2000, 2030)} we paid "
               f"${rng.randint(1, 9)},{rng.randint(100, 999)}.{rng.randint(10, 99)}"),
        ("en", f"I was charged {a}.{rng.randint(10, 99)} twice for order {rng.randint(10**9, 10**10 - 1)}"),
        ("en", f"ISBN 978-{rng.randint(0, 9)}-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}-{rng.randint(0, 9)}"),
        ("zh", f"订单号 {a}-{e}-{s} 已发货"),
        ("zh", f"快递单号{rng.randint(10**11, 10**12 - 1)}，预计明天到"),
        # SSN look-alikes: never-issued ranges, reference numbers.
        ("en", f"number 666-{rng.randint(10, 99)}-{rng.randint(1000, 9999)} is not an SSN"),
        ("en", f"code 9{_digits(rng, 2)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)} expired"),
        ("en", f"id {rng.randint(100, 899)}-00-{rng.randint(1000, 9999)} and {rng.randint(100, 899)}-"
               f"{rng.randint(10, 99)}-0000 are placeholders"),
        ("en", f"case 0{_digits(rng, 2)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)} filed"),
        ("en", f"invoice {rng.randint(100, 665)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)} paid"),
        ("en", f"part number {rng.randint(100, 665)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"),
        ("en", f"transfer {rng.randint(100000000, 899999999)} completed"),  # nine digits, no SSN word
        # Credentials: the words without a secret.
        ("en", "I forgot my password, can you send a password reset link?"),
        ("en", "my password is wrong and now I am locked out"),
        ("en", "Password is not working since yesterday"),
        ("en", "the password is case sensitive"),
        ("en", "password: please reset it for me"),
        ("en", "Your password must be at least 8 characters long"),
        ("en", "my password is the same as before"),
        ("en", "my password was changed without my permission"),
        ("en", f"I entered the wrong PIN {rng.randint(3, 5)} times and my card is blocked"),
        ("en", "Can I change my PIN at an ATM?"),
        ("en", "PIN is blocked, please unblock it"),
        ("en", "please pin this message to the top of the chat"),
        ("en", "I put a pin on the map at the branch"),
        ("en", "what is my PIN number? I lost the letter"),
        ("en", "the passcode is expired, send me a new one"),
        ("en", f"the verification code expires in {rng.randint(5, 15)} minutes"),
        ("en", "I didn't receive the one-time code"),
        ("zh", "忘记密码了怎么办"),
        ("zh", "密码错误，账户被锁定"),
        ("zh", "我的密码是多少？"),
        ("zh", "验证码一直收不到"),
        ("zh", "请修改密码：点击下方链接"),
        # CVV, sort code and account: the words without a value, or with a value of another shape.
        ("en", "what is the CVV and where is it on the card?"),
        ("en", "the CVV is on the back of the card"),
        ("en", f"the security code has {rng.choice([3, 4])} digits"),
        ("en", f"cvv {rng.randint(10000, 99999)} looks too long"),
        ("en", "what is a sort code?"),
        ("en", f"sort the list by code {rng.randint(100000, 999999)}"),
        ("en", f"sort code {rng.randint(10, 99)}-{rng.randint(10, 99)} is incomplete"),
        ("en", "the account number definitely is the right one, I've checked that"),
        ("en", f"my account was charged ${rng.randint(1, 9)},{rng.randint(100, 999)}.{rng.randint(10, 99)} twice"),
        ("en", f"account balance {rng.randint(100000, 999999)}.{rng.randint(10, 99)} EUR"),
        ("en", f"account ending in {rng.randint(1000, 9999)}"),
        ("en", f"account opened on 2024-{rng.randint(1, 12):02d}-{rng.randint(10, 28)}"),
        ("en", f"account is {rng.randint(100, 999)} 000 in credit"),
        ("en", f"account {rng.randint(10000, 99999)} is too short to be real"),
        ("zh", f"账户余额 {rng.randint(100000, 999999)}.{rng.randint(10, 99)} 元"),
        ("zh", "账号被冻结了，怎么解冻？"),
    ]


# Written by hand, not from the templates above: values marked [[value|type]].
HANDWRITTEN = [
    ("en", "Hi, I moved. New number is [[(212) 555-0187|us_phone]], old one is disconnected."),
    ("en", "Please call me back on [[646.555.0143|us_phone]] between 9 and 5."),
    ("en", "If the app fails again my husband's cell is [[1-917-555-0122|us_phone]]"),
    ("en", "Customer gave [[+1 (312) 555-0199|us_phone]] as contact and [[anna.li@example.com|email]]."),
    ("en", "tel [[2025550164|us_phone]]"),
    ("en", "I'm calling from [[773 555 0101|us_phone]] about the charge of $42.10 on 03/14/2024"),
    ("en", "For verification my SSN is [[078-05-1121|ssn]], DOB 1984-02-11."),
    ("en", "Social Security No. [[219 09 9999|ssn]] please update the tax record"),
    ("en", "ssn#[[432-51-7789|ssn]]"),
    ("en", "the agent asked me for my social security number, it's [[531824467|ssn]]"),
    ("en", "I know I shouldn't, but my online banking password is [[Blue42Sky!|credential]]"),
    ("en", "login: jsmith / password: [[p@ssw0rd2024|credential]]"),
    ("en", "My PIN is [[7391|credential]] and the card still gets declined at the ATM."),
    ("en", "pin number [[048213|credential]] doesn't work anymore"),
    ("en", "Set my new passcode to... no wait, the passcode is [[662019|credential]]"),
    ("en", "The bank texted me an OTP [[553120|credential]], is that legit?"),
    ("en", "password was [[sunshine99|credential]] until yesterday"),
    ("en", "Card [[4539 1488 0343 6467|card]], exp 11/26, CVV [[381|cvv]]"),
    ("en", "the three digits on the back (cvc) are [[907|cvv]]"),
    ("en", "security code: [[5521|cvv]] (amex)"),
    ("en", "Pay into sort code [[20-00-00|sort_code]] account [[55779911|account]], ref RENT MAY"),
    ("en", "sort-code [[309634|sort_code]] acc no [[01234567|account]]"),
    ("en", "My account number is [[000123456789|account]], routing number 021000021."),
    ("en", "wire to acct. [[4402 1187 3390|account]] at First National"),
    ("en", "Could you refund to A/C [[98765432|account]]? Thanks"),
    ("zh", "我的美国手机号是[[(415) 555-0136|us_phone]]，请帮忙更新"),
    ("zh", "社会安全号：[[123-45-6780|ssn]]"),
    ("zh", "我的登录密码是[[Abc12345|credential]]，为什么登不上？"),
    ("zh", "密码[[889900|credential]]被锁了"),
    ("zh", "刚收到的验证码[[402913|credential]]能告诉客服吗"),
    ("zh", "请把钱转到我的账号[[6225880137654321|account]]"),
    ("zh", "收款账户 [[1234 5678 9012|account]]，户名张三"),
    ("zh", "信用卡[[6222 0212 3456 7894|card]]，安全码[[123|cvv]]"),
    ("en", "My card got charged twice. Details: card ending 4242, order #4415550132."),
    ("en", "Please call 911 if this is an emergency; our line 1-800-FLOWERS is closed."),
    ("en", "Invoice 2024-555-0132 was paid on 2024-05-01 for $3,125.50."),
    ("en", "The reference number is 415-555-01328 (eleven digits)."),
    ("en", "Ticket REF-212-555-0187 is still pending, please escalate."),
    ("en", "UPS tracking 1Z 999 AA1 01 2345 6784 shows delivered."),
    ("en", "My policy number is 223-45-6789, not my SSN."),
    ("en", "Serial 123-45-6789 on the terminal is faulty."),
    ("en", "I reset my password and it still says the password is incorrect."),
    ("en", "What is my password? I never set one."),
    ("en", "Password: must contain 8 characters including a digit."),
    ("en", "Please pin the announcement, and send the PIN reminder email."),
    ("en", "How many PIN attempts do I have left? I tried 3 times."),
    ("en", "I've forgotten my passcode, how do I reset it?"),
    ("en", "The CVV on my replacement card is hard to read."),
    ("en", "Where do I find my sort code and account number in the app?"),
    ("en", "My account has been charged 250 000 yen"),
    ("en", "The account was opened 12 years ago with a 5000 deposit."),
    ("en", "The code 482913 in your email is for the discount, not for login."),
    ("en", "The meeting is at 10.30.2024 and room 415.555 is booked."),
    ("en", "Transfer of 1,234,567.89 to savings is pending."),
    ("zh", "我忘记密码了，怎么重置？"),
    ("zh", "订单号：212-555-0187，还没发货"),
    ("zh", "账户余额还有 12345.67 元吗"),
    ("zh", "快递单号 SF1234567890123 到哪里了"),
    ("zh", "验证码为什么收不到？"),
]


def _parse_marked(text: str) -> tuple[str, list[list[Any]]]:
    """A [[value|type]]-marked sentence: its plain text and the values' spans."""
    plain, spans, at = "", [], 0
    for m in re.finditer(r"\[\[(.+?)\|(\w+)\]\]", text):
        plain += text[at:m.start()]
        spans.append([len(plain), len(plain) + len(m.group(1)), m.group(2)])
        plain += m.group(1)
        at = m.end()
    return plain + text[at:], spans


def planted_corpus(seed: int, per_type: int) -> list[dict[str, Any]]:
    """``per_type`` sentences for every type (about 30% Chinese) and hard negatives, shuffled.

    Args:
        seed: the random seed (the corpus is a function of it).
        per_type: sentences per type; the hard negatives are ``per_type // 3`` rounds of
            ``hard_negatives``.

    Returns:
        Rows ``{"text", "lang", "group", "spans"}``, each text once; every planted value at
        its offsets.
    """
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for kind in ("email", "phone", "card", "iban", "ip", "cn_id", "secret_url", "us_phone", "ssn", "credential",
                 "cvv", "sort_code", "account"):
        for _ in range(per_type):
            lang = "zh" if rng.random() < 0.3 else "en"
            own = TEMPLATES.get(kind, {}).get(lang)
            template = rng.choice(own) if own else rng.choice(GENERIC[lang]).replace("{x}", "{" + kind + "}")
            text, spans = _fill(rng, template)
            rows.append({"text": text, "lang": lang, "group": kind, "spans": spans})
    for _ in range(max(1, per_type // 3)):
        rows.extend({"text": text, "lang": lang, "group": "negative", "spans": []}
                    for lang, text in hard_negatives(rng))
    for lang, marked in HANDWRITTEN:
        text, spans = _parse_marked(marked)
        rows.append({"text": text, "lang": lang, "group": "handwritten" if spans else "negative", "spans": spans})
    # The fixed negatives come once each (a repeat would count its verdict again).
    rows = list({row["text"]: row for row in rows}.values())
    rng.shuffle(rows)
    return rows


def read_planted(path: Path = FILE) -> list[dict[str, Any]]:
    """The rows of a planted-set JSON Lines file."""
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_planted(path: Path = FILE) -> int:
    """Write the planted set for ``FILE_SEED`` / ``FILE_PER_TYPE``; return its number of rows."""
    rows = planted_corpus(FILE_SEED, FILE_PER_TYPE)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


if __name__ == "__main__":
    print(f"{write_planted()} rows written to {FILE}")
