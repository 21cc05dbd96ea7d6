"""What a new password must be (issue 15 item 5): at least ``MIN_LENGTH`` characters,
not one of the 30,000 most common passwords (nor one with digits or symbols around it,
or with letters written as digits: "P@ssw0rd123!"), and not built on the user's name.

The list is zxcvbn's (MIT licence; ``common_passwords.LICENSE`` beside it says where it
comes from), shipped as package data and read once per process.
"""

from __future__ import annotations

import functools
import string
from importlib import resources

from chainkeeper.core.errors import InvalidInput

__all__ = ["MAX_LENGTH", "MIN_LENGTH", "check_new_password"]

MIN_LENGTH = 10
# Sign-in accepts up to this many characters; a longer password could never be used.
MAX_LENGTH = 1024
_HINT = "A few unrelated words, or a password manager's random password, are long and hard to guess."
_AROUND = string.digits + string.punctuation + string.whitespace
_LEET = str.maketrans({"@": "a", "4": "a", "3": "e", "1": "i", "!": "i", "0": "o", "$": "s", "5": "s", "7": "t"})


@functools.cache
def common_passwords() -> frozenset[str]:
    """The bundled list of common passwords, lower case."""
    text = resources.files("chainkeeper.governance").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(text.split())


def _forms(password: str) -> set[str]:
    # The password as typed, without the digits and symbols people add to meet a rule,
    # and with the usual letter-for-digit swaps undone.
    lower = password.lower()
    core = lower.strip(_AROUND)
    return {form for form in (lower, core, core.translate(_LEET), lower.translate(_LEET)) if form}


def check_new_password(password: str, *, user_name: str, display_name: str = "") -> None:
    """Refuse a password that is too short, too long, built on the user's name, or common.

    Raises:
        InvalidInput: which rule it breaks, and a hint for a better one.
    """
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"The password is too short ({len(password)} characters).",
                           hint=f"Use at least {MIN_LENGTH} characters. {_HINT}")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"The password is too long ({len(password)} characters).",
                           hint=f"Use at most {MAX_LENGTH} characters.")
    lower = password.lower()
    names = {user_name.lower(), *(part.lower() for part in display_name.split())}
    for name in sorted(n for n in names if len(n) >= 3):
        if name in lower and len(lower.replace(name, "").strip(_AROUND)) < MIN_LENGTH:
            raise InvalidInput(f"The password is built on the name {name!r}.",
                               hint=f"Choose one without your name. {_HINT}")
    if _forms(password) & common_passwords():
        raise InvalidInput("The password is one of the most common passwords (digits, symbols or swapped "
                           "letters do not change that).", hint=f"Choose another. {_HINT}")
