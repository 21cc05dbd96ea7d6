"""Owner-only files: the store, artefacts, exports, logs and model folders are not readable
by the host's other users (issue 15, item 7).

The root fix is the process umask: with 077 in it, every file this process creates is
0600 at most and every folder 0700, whichever library writes it (SQLite and its WAL,
``save_pretrained``, ONNX export, checkpoints, log files, HTML reports, CSV exports).
Chainkeeper sets it where it starts using a store, not at import: ``Context.open`` (which
every CLI command, the server, the workers and library code go through), ``initialise``
(``chainkeeper init``) and the CLI's settings. A library user who opens a context gets the
same private files; the umask is process-wide, which is why ``private_files = false``
turns it off (for a folder a group shares on purpose).

Files created before this existed (0644 under a 0755 home) are covered by tightening the
folders that hold them: the home folder, a local artefact folder and the SQLite file
(with its -wal/-shm/-journal files) are set to 0700/0600 when a context opens, if this
user owns them. Without the execute bit on the home folder, nothing beneath it can be
reached by another user whatever its own mode.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

from chainkeeper.core.settings import Settings

__all__ = ["PRIVATE_UMASK", "keep_files_private", "make_private", "restrict_umask"]

# Group and others lose read, write and execute on everything created from now on.
PRIVATE_UMASK = 0o077
_SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def restrict_umask() -> int:
    """Add ``PRIVATE_UMASK`` to the process umask (bits already masked stay masked).

    Returns:
        The umask before.
    """
    before = os.umask(PRIVATE_UMASK)
    os.umask(before | PRIVATE_UMASK)
    return before


def make_private(path: Path, *, folder: bool) -> None:
    """Create ``path`` as a 0700 folder, or take group/other bits off an existing file or
    folder this user owns (one owned by another user is left as it is).

    Args:
        path: the file or folder.
        folder: create it as a folder when missing (a missing file is left missing).
    """
    if folder:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & PRIVATE_UMASK:
        path.chmod(stat.S_IMODE(info.st_mode) & ~PRIVATE_UMASK)


def keep_files_private(settings: Settings) -> None:
    """Apply ``settings.private_files``: restrict the umask and make the home folder, a local
    artefact folder and the SQLite file private; otherwise only create the home folder.

    Args:
        settings: the settings of the store about to be opened.
    """
    if not settings.private_files:
        settings.home.mkdir(parents=True, exist_ok=True)
        return
    restrict_umask()
    make_private(settings.home, folder=True)
    if "://" not in settings.resolved_artifacts_url:
        make_private(Path(settings.resolved_artifacts_url), folder=False)
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        for suffix in _SQLITE_COMPANIONS:
            make_private(Path(url.database + suffix), folder=False)
