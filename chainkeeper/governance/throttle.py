"""How long a sign-in must wait: exponential back-off that slows guessing without
locking anyone out (issue 15 item 5). Values in, values out; the store is read and
written by ``passwords.login``.

Three counters, each a failure streak (failures since the last success, forgotten
after ``WINDOW`` without a failure) and the time of its last failure:

- the pair (user name, address): the first ``PAIR.free`` failures are free, then each
  further try waits 1, 2, 4, ... seconds after the last failure, up to 5 minutes. A
  success from the pair ends its streak. Guessing from one address at one account
  gets about 12 tries an hour once the wait is at its cap.
- the account, from all addresses, each address counting at most ``PAIR.free`` of its
  failures: one failing address (an attacker, or the user's own typos) never adds
  enough to slow anyone else; many addresses each trying a few times (a botnet) do.
  This counter slows only addresses the user has not signed in from within
  ``FAMILIAR_FOR``: the user at a usual address signs in at once during such an attack.
- the address, over every user name tried from it (one address spraying many
  accounts): 20 free failures, then the same doubling.

A try within the wait is refused before the password is checked, so a refusal says
nothing about the password, and costs the server no hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["ACCOUNT", "ADDRESS", "FAMILIAR_FOR", "LEDGER_WINDOW", "PAIR", "WINDOW", "Backoff", "Streak", "Wait",
           "wait_before_try"]

# A streak is forgotten after this long without a failure.
WINDOW = timedelta(hours=1)
# An address the user signed in from this recently is not slowed by failures elsewhere.
FAMILIAR_FOR = timedelta(days=30)
# At most one 'login.failed' ledger entry per (user name, address) per this long.
LEDGER_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Backoff:
    """``free`` failures without a wait, then ``base_s`` doubling per failure up to ``cap_s``."""

    free: int
    base_s: float
    cap_s: float

    def delay_s(self, failures: int) -> float:
        """The wait after the last of ``failures`` failures before the next try."""
        if failures < self.free:
            return 0.0
        # The exponent is bounded: a streak of millions must not overflow a float.
        return min(self.cap_s, self.base_s * 2.0 ** min(failures - self.free, 64))


PAIR = Backoff(free=3, base_s=1.0, cap_s=300.0)
ACCOUNT = Backoff(free=10, base_s=1.0, cap_s=300.0)
ADDRESS = Backoff(free=20, base_s=1.0, cap_s=300.0)


@dataclass(frozen=True)
class Streak:
    """Failures counted for one key and when the last of them was."""

    failures: int = 0
    last_at: datetime | None = None


@dataclass(frozen=True)
class Wait:
    """A refusal: which counter refused ('pair', 'account' or 'address') and for how long."""

    reason: str
    seconds: float


def wait_before_try(pair: Streak, account: Streak, address: Streak, *, familiar: bool, now: datetime) -> Wait | None:
    """The longest wait the three counters ask of a try at ``now``; None: try now.

    Args:
        pair: this user name from this address.
        account: this user name from every address (each counted up to ``PAIR.free``).
        address: every user name from this address.
        familiar: the user signed in from this address within ``FAMILIAR_FOR``; the
            account counter does not slow it.
    """
    checks = [("pair", PAIR, pair), ("address", ADDRESS, address)]
    if not familiar:
        checks.append(("account", ACCOUNT, account))
    longest: Wait | None = None
    for reason, backoff, streak in checks:
        delay = backoff.delay_s(streak.failures)
        if delay == 0 or streak.last_at is None or now - streak.last_at >= WINDOW:
            continue
        # A failure stamped a little ahead (another server's clock) waits no longer than its delay.
        left = delay - max(0.0, (now - streak.last_at).total_seconds())
        if left > 0 and (longest is None or left > longest.seconds):
            longest = Wait(reason, left)
    return longest
