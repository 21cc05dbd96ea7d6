"""Running the app on uvicorn: in the foreground (``serve``), as several processes on one
port (``serve_group``), or in a thread.

We bind the listening socket ourselves and hand it to uvicorn. That turns "port in
use" into our ``ServiceUnavailable`` with the next step, instead of uvicorn's log line
and ``sys.exit(1)``, and makes port 0 (any free port) report the port it got.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from chainkeeper.api.app import create_app
from chainkeeper.chain import open_context
from chainkeeper.core.errors import ServiceUnavailable
from chainkeeper.core.settings import Settings
from chainkeeper.serving import (
    GROUP_ENV,
    METRICS_ENV,
    ProcessGroup,
    preload_deployments,
    share_invalidations,
)

__all__ = ["RunningServer", "bind_socket", "check_port_free", "group_app", "proxy_options", "serve",
           "serve_group", "start_server_in_thread"]

log = logging.getLogger("chainkeeper.api")

STARTUP_TIMEOUT_S = 30.0


def _hint(port: int) -> str:
    return (f"Stop the other process or pass --port with another port (e.g. --port {port + 1}, "
            "or --port 0 for any free one).")


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: any free port), not yet listening.

    SO_REUSEADDR is set as uvicorn sets it: a port held only by connections in
    TIME_WAIT (a server just stopped) is free, one with a listener is not.

    Raises:
        ServiceUnavailable: the port is in use, the address is not on this machine, or
            the port needs privileges.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServiceUnavailable(f"Cannot resolve the address {host!r}: {exc.strerror}.",
                                 hint="Pass --host with an address of this machine, e.g. 127.0.0.1.") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServiceUnavailable(f"Port {port} on {host} is already in use.", hint=_hint(port)) from None
        if exc.errno == errno.EACCES:
            raise ServiceUnavailable(f"Port {port} on {host} needs administrator rights.",
                                     hint="Pass --port 1024 or higher.") from None
        raise ServiceUnavailable(f"Cannot listen on {host}:{port}: {exc.strerror}.",
                                 hint="Pass --host with an address of this machine, e.g. 127.0.0.1.") from None
    sock.set_inheritable(True)
    return sock


def check_port_free(host: str, port: int) -> None:
    """Raise ``ServiceUnavailable`` unless ``host:port`` can be listened on now (port 0 always can)."""
    bind_socket(host, port).close()


def _config(app: FastAPI, host: str, port: int, log_level: str | None) -> uvicorn.Config:
    if log_level is None:
        ctx = getattr(app.state, "ctx", None)
        log_level = ctx.settings.log_level if ctx is not None else "INFO"
    ctx = getattr(app.state, "ctx", None)
    return uvicorn.Config(app, host=host, port=port, log_level=log_level.lower(), lifespan="on",
                          **proxy_options(ctx.settings if ctx is not None else None))


def proxy_options(settings: Settings | None) -> dict[str, Any]:
    """uvicorn's proxy-header options: believed only from ``settings.trusted_proxies``.

    uvicorn's own default trusts X-Forwarded-For from 127.0.0.1, so anyone on this host
    could claim any address (bypassing per-address sign-in limits, lying to the ledger).
    """
    trusted = list(settings.trusted_proxies) if settings is not None else []
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted or ""}


def serve(app: FastAPI, host: str, port: int, *, log_level: str | None = None) -> None:
    """Serve ``app`` in the foreground until Ctrl+C or SIGTERM.

    Raises:
        ServiceUnavailable: the port is taken or the server did not start.
    """
    sock = bind_socket(host, port)
    config = _config(app, host, sock.getsockname()[1], log_level)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except SystemExit:
        # uvicorn exits the process when start-up fails (its lifespan failed); the
        # reason is in its log above. Our callers expect an error, not an exit.
        raise ServiceUnavailable(f"The server on {host}:{config.port} did not start.",
                                 hint="See the log lines above for the reason.") from None
    finally:
        sock.close()


def serve_group(settings: Settings, host: str, port: int) -> None:
    """Serve the app from ``settings.serve_processes`` processes on one port until Ctrl+C or SIGTERM.

    Binds the port here (a taken port is our error, as for ``serve``), makes the group
    folder the processes share (``serving.processes``) and lets uvicorn's supervisor start
    them (``group_app`` builds each one's app; a process that dies is replaced). The
    folder is removed when the server stops.

    Raises:
        ServiceUnavailable: the port is taken.
    """
    sock = bind_socket(host, port)
    group = ProcessGroup.create(settings)
    # The processes are spawned: they inherit the environment, read before anything else.
    os.environ[GROUP_ENV], os.environ[METRICS_ENV] = str(group.path), str(group.metrics_dir)
    config = uvicorn.Config("chainkeeper.api.server:group_app", factory=True, host=host,
                            port=sock.getsockname()[1], workers=group.processes,
                            log_level=settings.log_level.lower(), lifespan="on", **proxy_options(settings))
    log.info("serving on http://%s:%d with %d processes", host, config.port, group.processes)
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
        os.environ.pop(GROUP_ENV, None)
        os.environ.pop(METRICS_ENV, None)
        group.remove()


def group_app() -> FastAPI:
    """The app of one process of ``serve_group`` (uvicorn calls it in each process).

    Opens the stores with the group's settings (each process its own share of the
    cores), joins the group's shared caches, rate limits and metrics, and starts warming
    every deployed model, so the process is ready before its first request needs one.
    """
    group = ProcessGroup.from_env()
    if group is None:  # a programming error: only serve_group names this factory
        raise RuntimeError("group_app runs only in the processes serve_group starts")
    settings = group.settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx = open_context(settings)
    group.join()
    share_invalidations(group.stamp())
    app = create_app(ctx)
    app.state.group = group
    preload_deployments(ctx, app.state.predictors)
    return app


def _run_quietly(server: uvicorn.Server, sock: socket.socket) -> None:
    # uvicorn calls sys.exit when start-up fails; in a thread that would end it with an
    # "unhandled exception" report. The caller sees the failure as `started` never set.
    try:
        server.run(sockets=[sock])
    except SystemExit:
        pass
    finally:
        sock.close()


@dataclass
class RunningServer:
    """A uvicorn server answering from a daemon thread."""

    server: uvicorn.Server
    thread: threading.Thread
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to finish in-flight requests and stop; wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout=timeout)


def start_server_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0, *,
                           log_level: str | None = "warning") -> RunningServer:
    """Start ``app`` on uvicorn in a daemon thread and wait until it accepts connections.

    Args:
        port: 0 picks a free port; ``RunningServer.port`` holds the real one.

    Returns:
        The running server; call ``stop()`` when done.

    Raises:
        ServiceUnavailable: the port is taken, or the server did not start within
            ``STARTUP_TIMEOUT_S`` seconds.
    """
    sock = bind_socket(host, port)
    real_port = sock.getsockname()[1]
    # uvicorn installs signal handlers only on the main thread, so a thread is safe.
    server = uvicorn.Server(_config(app, host, real_port, log_level))
    thread = threading.Thread(target=_run_quietly, args=(server, sock), name=f"uvicorn-{real_port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout=5)
            raise ServiceUnavailable(f"The server on {host}:{real_port} did not start.",
                                     hint="See the log for the reason (the app's start-up failed).")
        time.sleep(0.01)
    return RunningServer(server=server, thread=thread, host=host, port=real_port)
