"""Who is acting: every service function that changes state takes an ``Actor``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Actor:
    """A user (or the local system) acting with a set of roles."""

    name: str
    roles: frozenset[str] = field(default_factory=frozenset)
    # (role, project) bindings that hold only inside one project.
    scoped_roles: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    user_id: int | None = None
    request_id: str | None = None

    def __str__(self) -> str:
        return self.name


# The local operator of an embedded install, used by commands run on the machine that
# holds the store (the CLI before users exist, the quickstart's bootstrap).
SYSTEM = Actor(name="system", roles=frozenset({"admin"}))
