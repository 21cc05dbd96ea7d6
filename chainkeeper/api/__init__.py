"""Chainkeeper HTTP API: the FastAPI application and the servers that run it.

The CLI reaches it through this entry point (``from chainkeeper import api``, then
``api.create_app(...)`` when a command runs), and each name loads its module on first use
(PEP 562): the app imports every router, and with them the stages' services, so a
``--help`` page that merely names ``serve`` or ``up`` must not load it.

- app: ``create_app`` (routers, problem+json errors, the web UI);
- server: ``serve`` (one process), ``serve_group`` (several on one port),
  ``check_port_free``, ``start_server_in_thread`` (tests and the quickstart).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chainkeeper.core.exports import lazy_exports

if TYPE_CHECKING:
    from chainkeeper.api.app import create_app
    from chainkeeper.api.server import check_port_free, serve, serve_group, start_server_in_thread

_EXPORTS = {
    "create_app": "app",
    "check_port_free": "server", "serve": "server", "serve_group": "server", "start_server_in_thread": "server",
}

# Literal, so type checkers and linters see the exports.
__all__ = [
    "check_port_free",
    "create_app",
    "serve",
    "serve_group",
    "start_server_in_thread",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
