"""What a failed write to disk means, said so a person can act on it.

The metadata store (a SQLite file) and the artefact folder both write to a disk. When a
write fails the operating system gives an ``errno`` (SQLite its own code); this module
names the few that need a different action from the operator:

- no space left (``ENOSPC``, a quota's ``EDQUOT``, SQLite's ``SQLITE_FULL``): ``DiskFull``,
  with the free space left and the folder to clear. It may pass (space is freed, a
  temporary file goes), so a job that meets it is retried with back-off;
- not allowed (``EACCES``, ``EPERM``, a read-only mount's ``EROFS``): ``StorageDenied``,
  naming the path and the fix. Retrying cannot help, so the job fails at once;
- a passing I/O hiccup (``EAGAIN``, ``EBUSY``, ``ETIMEDOUT``, ``EINTR``, ``EIO``):
  ``is_transient`` says a job may be retried.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from chainkeeper.core.errors import ChainkeeperError, DiskFull, StorageDenied

__all__ = ["DISK_FULL_ERRNOS", "DENIED_ERRNOS", "TRANSIENT_ERRNOS", "disk_full", "free_bytes", "is_transient",
           "permission_denied", "storage_error"]

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
DENIED_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
# Errors of a write that may well succeed when tried again a little later.
TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.EBUSY, errno.ETIMEDOUT, errno.EINTR, errno.EIO})


def free_bytes(path: Path) -> int | None:
    """Free bytes on the disk holding ``path`` (its nearest existing folder); None if unknown."""
    for folder in (path, *path.parents):
        try:
            return shutil.disk_usage(folder).free
        except OSError:
            continue
    return None


def _size(n: int) -> str:
    if n < 1024:
        return f"{n:,} bytes"
    value, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:,.1f} {unit}"


def _folder(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def disk_full(path: Path | None, what: str, *, setting: str | None = None, detail: str = "") -> DiskFull:
    """``DiskFull`` for a failed write of ``what`` at ``path``, with the space left there.

    Args:
        path: the file or folder written, None when the system did not say.
        what: what was writing ("the artefact store", "the metadata store", "the job").
        setting: the setting that moves it elsewhere, named in the hint.
        detail: the system's own words, added in brackets.
    """
    free = free_bytes(_folder(path)) if path is not None else None
    notes = [note for note in (detail, f"{_size(free)} free" if free is not None else "") if note]
    said = f" ({'; '.join(notes)})" if notes else ""
    move = f", or move it to a larger disk ({setting})" if setting else ""
    if path is None:
        return DiskFull(f"The disk is full: {what} could not write a file{said}.",
                        hint=f"Free space on the disk {what} writes to ('df -h' shows each disk){move}.")
    folder = _folder(path)
    return DiskFull(f"The disk is full: {what} could not write {path}{said}.",
                    hint=f"Free space on the disk holding {folder} ('df -h {folder}' shows it){move}.")


def permission_denied(path: Path | None, what: str, *, setting: str | None = None, code: int = errno.EACCES,
                      detail: str = "") -> StorageDenied:
    """``StorageDenied`` for a write of ``what`` at ``path`` (None: not said) the system refused."""
    said = f" ({detail})" if detail else ""
    elsewhere = f", or set {setting} to a writable folder" if setting else ""
    where = f" {path}" if path is not None else " a file"
    folder = str(_folder(path)) if path is not None else "the folder it writes to"
    if code == errno.EROFS:
        return StorageDenied(f"Permission denied writing{where}: the file system is mounted read-only{said}.",
                             hint=f"Remount the disk holding {folder} read-write{elsewhere}.")
    uid = os.getuid()
    fix = f" ('chown -R {uid} {folder}' or 'chmod -R u+rwX {folder}')" if path is not None else ""
    return StorageDenied(f"Permission denied writing{where}: {what} may not write there{said}.",
                         hint=f"Let the user running Chainkeeper (uid {uid}) write {folder}{fix}{elsewhere}.")


def storage_error(exc: OSError, path: Path | str | None, what: str, *,
                  setting: str | None = None) -> DiskFull | StorageDenied | None:
    """The named error for ``exc``, an ``OSError`` of ``what`` writing ``path`` (default the
    file the error names); None when its errno is neither a full disk nor a refused write
    (the caller keeps its own error)."""
    named = path if path is not None else exc.filename
    where = Path(named) if isinstance(named, str | Path) else None
    if exc.errno in DISK_FULL_ERRNOS:
        return disk_full(where, what, setting=setting, detail=exc.strerror or "")
    if exc.errno in DENIED_ERRNOS:
        # EACCES and EROFS are said in the message already; EPERM's own words add to it.
        detail = (exc.strerror or "") if exc.errno == errno.EPERM else ""
        return permission_denied(where, what, setting=setting, code=exc.errno or errno.EACCES, detail=detail)
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether doing the same again later may succeed (a job is then retried with back-off)."""
    if isinstance(exc, ChainkeeperError):
        return exc.transient
    if isinstance(exc, OSError):
        return exc.errno in DISK_FULL_ERRNOS or exc.errno in TRANSIENT_ERRNOS
    return False
