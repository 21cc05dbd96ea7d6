"""An uploaded file on the server's disk: a private temporary copy under the upload's own name.

The body of an upload route is bounded before it is read (``body_limit`` on the route,
enforced by ``chainkeeper.api.body_limits``, chunked bodies included), so the multipart
parser's spooled file is bounded too. ``saved_upload`` copies it into a new folder only
the server's user may open (0700), as a file only it may read (0600), named after the
upload so row origins read ``name:line``, and removes both afterwards, whatever happens.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import BinaryIO

from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool

__all__ = ["safe_upload_name", "saved_upload"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_CHUNK = 1024 * 1024


def safe_upload_name(filename: str | None) -> str:
    """The upload's file name reduced to letters, digits, ``.``, ``_`` and ``-`` (no folders)."""
    return _UNSAFE.sub("_", Path(filename or "upload").name).strip("._") or "upload"


@asynccontextmanager
async def saved_upload(file: UploadFile, *, prefix: str) -> AsyncIterator[Path]:
    """The upload as a private file, removed when the block ends.

    Args:
        file: the multipart upload, as the route received it.
        prefix: the temporary folder's name prefix (``ck-upload-``), to tell them apart.

    Yields:
        The file's path: ``<tmp>/<prefix>XXXX/<safe name>``, mode 0600 in a 0700 folder.
    """
    name = safe_upload_name(file.filename)
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:  # mkdtemp: 0700
        path = Path(folder) / name
        # O_EXCL with 0600: the copy is never readable by another user, not even for a moment.
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            await file.seek(0)
            # A copy of up to the route's limit: on a worker thread, off the event loop.
            await run_in_threadpool(_copy, file.file, out)
        yield path


def _copy(source: BinaryIO, target: BinaryIO) -> None:
    shutil.copyfileobj(source, target, _CHUNK)
