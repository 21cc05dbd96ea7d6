"""What the layers above plug into the ones below: job handlers, approval gates, hooks.

Imports run down the chain only (core → governance → data → … → monitoring → chain), so a
lower layer never names a higher one's function. Where it needs one — the worker needs a
training job's handler, an approval needs the promotion it executes — the higher layer
registers the function here, and ``chainkeeper.chain.wiring`` builds the whole table once
at start-up. The ``Context`` carries it, so every entry point (CLI, API, worker, tests)
runs with the same wiring and nothing is registered at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chainkeeper.core.errors import ConfigError, InvalidInput

if TYPE_CHECKING:
    from chainkeeper.core.context import Context
    from chainkeeper.core.jobs import JobHandle

# A job handler is called as handler(ctx, job) and returns the job's result.
JobHandler = Callable[["Context", "JobHandle"], dict[str, Any]]


@dataclass
class Wiring:
    """Functions registered by the layer that owns them, looked up by the layer that runs them.

    Attributes:
        job_handlers: job kind -> handler.
        gates: gated action -> ``governance.approvals.Gate`` (typed there: core knows no gate).
        hooks: hook name -> the function a higher layer registered for it.
    """

    job_handlers: dict[str, JobHandler] = field(default_factory=dict)
    gates: dict[str, Any] = field(default_factory=dict)
    hooks: dict[str, Callable[..., Any]] = field(default_factory=dict)

    def register_job(self, kind: str, handler: JobHandler) -> None:
        if kind in self.job_handlers:
            raise ValueError(f"job kind {kind!r} is registered twice")
        self.job_handlers[kind] = handler

    def job_handler(self, kind: str) -> JobHandler:
        """The handler of ``kind``.

        Raises:
            InvalidInput: no layer registered that kind.
        """
        try:
            return self.job_handlers[kind]
        except KeyError:
            known = ", ".join(sorted(self.job_handlers)) or "none (the context was opened without the chain's wiring)"
            raise InvalidInput(f"Unknown job kind {kind!r}.", hint=f"Known kinds: {known}.") from None

    def register_hook(self, name: str, function: Callable[..., Any]) -> None:
        if name in self.hooks:
            raise ValueError(f"hook {name!r} is registered twice")
        self.hooks[name] = function

    def hook(self, name: str) -> Callable[..., Any]:
        """The function registered for ``name``.

        Raises:
            ConfigError: nothing registered it — the context was opened without the
                chain's wiring (open it with ``chainkeeper.chain.open_context``).
        """
        try:
            return self.hooks[name]
        except KeyError:
            raise ConfigError(
                f"No function is registered for {name!r}.",
                hint="Open the context with chainkeeper.chain.open_context, which wires every stage.",
            ) from None
