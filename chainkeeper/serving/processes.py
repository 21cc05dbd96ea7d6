"""Several server processes on one port, and what they share.

``chainkeeper serve --processes N`` binds the port once and hands it to N uvicorn worker
processes (uvicorn's supervisor starts them and replaces one that dies). Each process
loads the deployed models and answers requests on its own interpreter, so the Python of
the request path (HTTP, routing, authentication, logging) no longer waits for one GIL:
on two cores two processes answer about a quarter more requests than one
(docs/serving.md).

The processes share a *group folder*, made fresh for each server run and named to them by
the ``CHAINKEEPER_SERVE_GROUP`` environment variable. It holds:

* ``settings.json``: the server's settings (readable by the owner only);
* ``metrics/``: the Prometheus counters of every process (prometheus-client's
  multiprocess mode): ``/metrics`` of any process answers the totals, and only the
  process holding ``sampler.lock`` stores the metric series;
* ``pids/``: one empty file per live process, for the group's memory;
* ``stamp``: a change counter, memory-mapped: a rollout, rollback or revoked key in one
  process bumps it, and every other process drops its serving caches at its next
  request (reading it costs no system call);
* ``buckets``: the rate-limit token buckets of the API keys, memory-mapped and locked,
  so a key's limit holds across the processes.
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from chainkeeper.core.settings import Settings
from chainkeeper.serving.onnx_runtime import default_threads

__all__ = ["GROUP_ENV", "METRICS_ENV", "ProcessGroup", "SharedFile", "SharedStamp"]

GROUP_ENV = "CHAINKEEPER_SERVE_GROUP"
# prometheus-client reads this when it is first imported: it must be set before that.
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def _locked(fd: int) -> Iterator[None]:
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


class SharedFile:
    """A small file of ``size`` bytes, memory-mapped; ``locked()`` serialises writers across processes."""

    def __init__(self, path: Path, size: int) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        with _locked(self._fd):
            if os.fstat(self._fd).st_size < size:
                os.ftruncate(self._fd, size)  # zero-filled
        self.map = mmap.mmap(self._fd, size)

    def locked(self) -> Any:
        return _locked(self._fd)

    def close(self) -> None:
        self.map.close()
        os.close(self._fd)


class SharedStamp:
    """A counter every process of a group reads and any may bump."""

    def __init__(self, path: Path) -> None:
        self._file = SharedFile(path, 8)

    @property
    def value(self) -> int:
        return struct.unpack_from("q", self._file.map, 0)[0]  # type: ignore[no-any-return]

    def bump(self) -> None:
        with self._file.locked():
            struct.pack_into("q", self._file.map, 0, self.value + 1)

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class ProcessGroup:
    """The group folder of a multi-process server (see the module docstring)."""

    path: Path
    processes: int

    @classmethod
    def create(cls, settings: Settings) -> ProcessGroup:
        """A fresh group folder for ``settings.serve_processes`` processes serving with ``settings``."""
        path = Path(tempfile.mkdtemp(prefix="chainkeeper-serve-"))
        (path / "metrics").mkdir()
        (path / "pids").mkdir()
        values = {name: _plain(getattr(settings, name)) for name in type(settings).model_fields}
        fd = os.open(path / "settings.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(values, f)
        return cls(path, settings.serve_processes)

    @classmethod
    def from_env(cls) -> ProcessGroup | None:
        """The group this process serves in, or None for a lone server."""
        path = os.environ.get(GROUP_ENV)
        if not path:
            return None
        return cls(Path(path), int(_read_settings(Path(path))["serve_processes"]))

    def settings(self) -> Settings:
        """The server's settings, with each process's share of the cores: model workers
        and threads are totals over the group, split evenly (at least one each)."""
        values = _read_settings(self.path)
        share = {name: max(1, (values.get(name) or default_threads()) // self.processes)
                 for name in ("torch_threads", "serve_model_workers")}
        return Settings(**{**values, **share})

    @property
    def metrics_dir(self) -> Path:
        return self.path / "metrics"

    def stamp(self) -> SharedStamp:
        return SharedStamp(self.path / "stamp")

    def join(self) -> None:
        """Count this process in the group (for the group's memory)."""
        (self.path / "pids" / str(os.getpid())).touch()

    def pids(self) -> list[int]:
        """The live processes of the group."""
        live = []
        for entry in (self.path / "pids").iterdir():
            pid = int(entry.name)
            try:
                os.kill(pid, 0)  # no signal: only whether the process exists
            except ProcessLookupError:
                entry.unlink(missing_ok=True)
            else:
                live.append(pid)
        return live

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _read_settings(path: Path) -> dict[str, Any]:
    return json.loads((path / "settings.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value) if isinstance(value, Path) else value
