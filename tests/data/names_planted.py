"""A planted set for person-name redaction (``monitoring.names``), deterministic.

Customer-service messages in English with person names at known offsets (the caller's
own name, an agent's, a payee's, a relative's), and hard negatives: company names
(several named after people: Wells Fargo, Charles Schwab, Morgan Stanley, Johnson &
Johnson), product and plan names, places, months and weekdays (May, June, August),
capitalised words and shouting. Names come in four forms: "First Last", a first name
alone, a title and surname ("Ms. Okafor": only the surname is the name, as CoNLL tags
it) and lower case ("my name is priya patel"), the hardest for a tagger reading case.

Each row is ``{"text", "group", "names": [[start, end], ...]}``; ``group`` is the form of
the names it holds (full, first, title, lower) or "negative". ``planted(seed, n)`` returns
the same rows for the same arguments on every machine.

    .venv/bin/python -m tests.data.names_planted | head
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

SEED, SIZE = 15, 300

FIRST = ["James", "Maria", "Wei", "Aisha", "Carlos", "Priya", "Olga", "Kwame", "Sophie", "Mohammed", "Emily", "Hiroshi",
         "Fatima", "Lucas", "Grace", "Daniel", "Ines", "Tomasz", "Chloe", "Rahul", "Laura", "Ahmed", "Hannah", "Diego",
         "Mei", "Oliver", "Amara", "Patrick", "Yuki", "Elena", "Samuel", "Zoe", "Ivan", "Nadia", "Ethan", "Leila"]
LAST = ["Smith", "Garcia", "Chen", "Okafor", "Patel", "Kowalski", "Nguyen", "Murphy", "Rossi", "Schmidt", "Khan",
        "Johansson", "Silva", "Tanaka", "Dubois", "Mensah", "Novak", "Fernandez", "Obi", "Larsen", "Haddad", "Kim",
        "Walsh", "Moreau", "Brennan", "Ivanova", "Sato", "Adeyemi", "Lopez", "Fischer", "O'Brien", "McAllister"]
TITLES = ["Mr.", "Ms.", "Mrs.", "Dr."]
COMPANIES = ["Amazon", "Apple", "Netflix", "PayPal", "Visa", "Mastercard", "Tesco", "Walmart", "Uber", "Spotify",
             "Revolut", "Barclays", "HSBC", "Chase", "Wells Fargo", "American Express", "Starbucks", "Charles Schwab",
             "Morgan Stanley", "Johnson & Johnson", "Marks & Spencer", "McDonald's", "Western Union", "eBay",
             "Booking.com", "Deliveroo", "Vodafone", "British Airways", "Ryanair", "IKEA"]
PRODUCTS = ["iPhone 14", "Galaxy S23", "Apple Pay", "Google Pay", "Prime", "Platinum Card", "Gold Card",
            "Premium plan", "Kindle", "Travel Money card", "Student Account", "Visa Debit card", "Business Saver",
            "PlayStation 5", "AirPods"]
PLACES = ["London", "Paris", "New York", "Berlin", "Madrid", "Tokyo", "Dublin", "Chicago", "Spain", "Germany",
          "Heathrow", "Manchester", "Lisbon", "Toronto", "Sydney", "Mexico", "Florida", "Jordan", "Victoria"]
MONTHS = ["January", "March", "April", "May", "June", "July", "August", "December"]
DAYS = ["Monday", "Tuesday", "Friday", "Saturday"]

# {name}: a person name (planted); the other slots are hard negatives.
NAME_TEMPLATES = [
    "Hi, my name is {name} and I can't log in to my account.",
    "This is {name}, I was charged twice for my {company} order.",
    "Please transfer 200 pounds to {name} today.",
    "{name} from your fraud team told me the refund would take 5 days.",
    "Can you ask {name} to call me back on {day}?",
    "I spoke with {name} yesterday but my {product} still doesn't work.",
    "The card is in the name of {name}, not mine.",
    "Thanks {name} for sorting out my {product} so quickly!",
    "My husband {name} added me as a joint account holder in {month}.",
    "I am writing on behalf of my mother, {name}, who is in hospital in {place}.",
    "Send the replacement card to {name} at the same address.",
    "Regards, {name}",
    "Hello, {name} here. My payment to {company} on {day} was declined.",
    "Why did {name} receive my statement? I never authorised that.",
    "I want to add {name} as a beneficiary before I fly to {place}.",
    "Your agent {name} was very rude to me on the phone.",
    "Could you check whether {name} has paid the invoice for {month}?",
    "Dear {name}, my {company} subscription renewed without warning.",
    "My daughter {name} lost her {product} in {place} last {day}.",
    "Is {name} still my account manager? I need help with a transfer.",
]
NEGATIVE_TEMPLATES = [
    "My {company} order hasn't arrived and it's been two weeks.",
    "Why was I charged by {company} twice in {month}?",
    "I can't add my card to {product}, it says the card is not supported.",
    "I'm travelling to {place} on {day}, will my card work there?",
    "The ATM in {place} kept my card, what do I do now?",
    "Please cancel my {product} before the end of {month}.",
    "I was refunded by {company} but I can't see the money.",
    "URGENT: someone used my card at {company} in {place}!!",
    "How do I change my PIN for the {product}?",
    "My direct debit to {company} failed on {day}, can you retry it?",
    "Is there a fee for paying {company} in euros from {place}?",
    "I got a text from Card Services about a payment in {place}, is it real?",
    "Can I get a {product} if I live in {place}?",
    "The transfer to my {company} account on {month} 3 is still pending.",
    "Why does my statement say {company} {place} when I never went there?",
    "May I pay the balance of my {product} early?",
    "I want to dispute a charge from {company} made on {day}.",
    "Customer Support told me to call back in {month}, it is now {month} and nothing happened.",
    "Top up my {product} with 50 from my Student Account please.",
    "Does {company} accept the {product} for online purchases?",
]
_SLOT = re.compile(r"\{(\w+)\}")


def _name(rng: random.Random, form: str) -> tuple[str, int, int]:
    """A person name in one of the forms: (as written, start and end of the name in it)."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    if form == "full":
        return f"{first} {last}", 0, len(first) + 1 + len(last)
    if form == "first":
        return first, 0, len(first)
    if form == "title":
        title = rng.choice(TITLES)
        return f"{title} {last}", len(title) + 1, len(title) + 1 + len(last)
    written = f"{first} {last}".lower()
    return written, 0, len(written)


def fill(template: str, rng: random.Random, form: str | None) -> dict[str, Any]:
    """One row: the template's slots filled, with the offsets of each name."""
    text, names = "", []
    at = 0
    for match in _SLOT.finditer(template):
        text += template[at:match.start()]
        slot = match.group(1)
        if slot == "name":
            assert form is not None
            written, start, end = _name(rng, form)
            names.append([len(text) + start, len(text) + end])
            text += written
        else:
            text += rng.choice({"company": COMPANIES, "product": PRODUCTS, "place": PLACES, "month": MONTHS,
                                "day": DAYS}[slot])
        at = match.end()
    text += template[at:]
    return {"text": text, "group": form or "negative", "names": names}


def planted(seed: int = SEED, n: int = SIZE) -> list[dict[str, Any]]:
    """``n`` rows: three in five with a name (forms full 50 %, first 20 %, title 15 %, lower 15 %), the
    rest hard negatives; every name template and negative template used in turn."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        if i % 5 < 3:
            form = rng.choices(["full", "first", "title", "lower"], weights=[50, 20, 15, 15])[0]
            row = fill(NAME_TEMPLATES[(i // 5 * 3 + i % 5) % len(NAME_TEMPLATES)], rng, form)
        else:
            row = fill(NEGATIVE_TEMPLATES[(i // 5 * 2 + i % 5 - 3) % len(NEGATIVE_TEMPLATES)], rng, None)
        rows.append(row)
    return rows


if __name__ == "__main__":
    for row in planted():
        print(json.dumps(row, ensure_ascii=False))
