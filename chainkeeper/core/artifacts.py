"""Content-addressed artefact store.

A blob is named by the sha256 of its bytes and stored once, under
``<root>/sha256/ab/cdef...``. Writes go to a temporary name and are renamed into place,
so a crash never leaves a half-written blob under a real name; reads re-hash the bytes
and refuse a blob whose content no longer matches its name.

A folder (a trained model: weights, tokenizer, config) is stored as its files' blobs
plus a *manifest*, a small JSON blob mapping relative paths to digests; the manifest's
digest names the whole folder.

``LocalArtifactStore`` is the embedded default; ``FsspecArtifactStore`` takes any fsspec
URL (``s3://bucket/prefix`` with s3fs installed) and shares the layout.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from chainkeeper.core.errors import (
    ArtifactCorrupted,
    ArtifactError,
    ConfigError,
    NotFound,
)
from chainkeeper.core.storage_errors import storage_error

_CHUNK = 1 << 20
MANIFEST_KIND = "chainkeeper.manifest/1"
_SETTING = "CHAINKEEPER_ARTIFACTS_URL"


@contextlib.contextmanager
def named_write_errors(path: Path | str, what: str = "the artefact store", *,
                       setting: str | None = _SETTING) -> Iterator[None]:
    """Turn a write's ``OSError`` of a full disk or a refused write into ``DiskFull`` /
    ``StorageDenied`` naming the path and the fix (``core.storage_errors``); other
    ``OSError`` values pass unchanged."""
    try:
        yield
    except OSError as exc:
        where = Path(exc.filename or path)
        if where.name.startswith(".tmp-"):  # a temporary name means nothing to a reader: name its folder
            where = where.parent
        named = storage_error(exc, where, what, setting=setting)
        if named is None:
            raise
        raise named from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_digest(digest: str) -> str:
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise NotFound(f"Not an artefact digest: {digest!r}.", hint="Digests are 64 lowercase hex characters.")
    return digest


class ArtifactStore(Protocol):
    """What every stage needs from artefact storage."""

    def put_bytes(self, data: bytes) -> str:
        """Store bytes; return their sha256 digest."""
        ...

    def put_file(self, path: Path) -> str:
        """Store a file's content; return its sha256 digest."""
        ...

    def get_bytes(self, digest: str) -> bytes:
        """Return a blob's bytes. Raises NotFound, ArtifactCorrupted."""
        ...

    def exists(self, digest: str) -> bool: ...

    def put_tree(self, folder: Path) -> str:
        """Store every file below a folder; return the manifest's digest."""
        ...

    def read_manifest(self, digest: str) -> dict[str, str]:
        """A stored folder's files: relative path -> digest. Raises ArtifactError."""
        ...

    def get_tree(self, digest: str, dest: Path) -> Path:
        """Materialise a stored folder under ``dest``; return ``dest``."""
        ...


class _Blobs(Protocol):
    """The blob primitives ``_TreeMixin`` builds on (each backend has its own)."""

    def put_bytes(self, data: bytes) -> str: ...

    def put_file(self, path: Path) -> str: ...

    def get_bytes(self, digest: str) -> bytes: ...

    def read_manifest(self, digest: str) -> dict[str, str]: ...


class _TreeMixin:
    """Folder manifests, built on the blob primitives of each backend."""

    def put_tree(self: _Blobs, folder: Path) -> str:
        folder = Path(folder)
        if not folder.is_dir():
            raise ArtifactError(f"Cannot store {folder}: it is not a folder.")
        files = {
            str(p.relative_to(folder).as_posix()): self.put_file(p)
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
        manifest = json.dumps({"kind": MANIFEST_KIND, "files": files}, sort_keys=True).encode()
        return self.put_bytes(manifest)

    def read_manifest(self: _Blobs, digest: str) -> dict[str, str]:
        raw = self.get_bytes(digest)
        try:
            manifest = json.loads(raw)
            if manifest.get("kind") != MANIFEST_KIND:
                raise ValueError
        except ValueError:
            raise ArtifactError(f"Artefact {digest[:12]} is not a folder manifest.") from None
        return dict(manifest["files"])

    def get_tree(self: _Blobs, digest: str, dest: Path) -> Path:
        dest = Path(dest)
        for rel, file_digest in self.read_manifest(digest).items():
            target = dest / rel
            if target.is_file() and sha256_file(target) == file_digest:
                continue  # already materialised (a cache hit)
            with named_write_errors(dest, "the model cache", setting="CHAINKEEPER_HOME"):
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                atomic_write(target, self.get_bytes(file_digest))
        return dest


def atomic_write(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file of its own: readers (and other
    processes writing the same file) see the old file or the whole new one, never a part."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LocalArtifactStore(_TreeMixin):
    """Artefacts in a local folder, the embedded default."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        try:
            with named_write_errors(self.root):
                # Owner-only folders; blobs are written through mkstemp, 0600 (core.file_modes).
                (self.root / "sha256").mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ArtifactError(
                f"Cannot create the artefact folder {self.root}: {exc.strerror}.",
                hint="Set CHAINKEEPER_ARTIFACTS_URL (or CHAINKEEPER_HOME) to a writable folder.",
            ) from None

    def path_of(self, digest: str) -> Path:
        digest = _check_digest(digest)
        return self.root / "sha256" / digest[:2] / digest[2:]

    def exists(self, digest: str) -> bool:
        return self.path_of(digest).is_file()

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path_of(digest)
        if not target.exists():
            with named_write_errors(self.root):
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                atomic_write(target, data)
        return digest

    def put_file(self, path: Path) -> str:
        # Stream: hash while copying into a temp file beside the final place.
        try:
            src = Path(path).open("rb")
        except FileNotFoundError:
            raise ArtifactError(f"Cannot store {path}: no such file.") from None
        digest = hashlib.sha256()
        with src, named_write_errors(self.root):
            staging = self.root / "staging"
            staging.mkdir(mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=staging, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                target = self.path_of(digest.hexdigest())
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return digest.hexdigest()

    def get_bytes(self, digest: str) -> bytes:
        path = self.path_of(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"Artefact {digest[:12]} is not in the store at {self.root}.") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise ArtifactCorrupted(
                f"Artefact {digest[:12]} at {path} is corrupted: its content no longer matches its sha256.",
                hint="Restore the file from a backup or re-run the step that produced it.",
            )
        return data

    def open_verified(self, digest: str) -> BinaryIO:
        """Open a blob for reading after checking its hash (for large files)."""
        path = self.path_of(digest)
        if not path.is_file():
            raise NotFound(f"Artefact {digest[:12]} is not in the store at {self.root}.")
        if sha256_file(path) != digest:
            raise ArtifactCorrupted(
                f"Artefact {digest[:12]} at {path} is corrupted: its content no longer matches its sha256.",
                hint="Restore the file from a backup or re-run the step that produced it.",
            )
        return path.open("rb")


class FsspecArtifactStore(_TreeMixin):
    """Artefacts behind any fsspec URL (object stores); same layout as the local one."""

    def __init__(self, url: str) -> None:
        import fsspec

        try:
            self.fs, self.root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise ConfigError(
                f"Cannot open artefact store {url!r}: {exc}.",
                hint="Install the fsspec backend for that scheme (e.g. 's3fs' for s3://).",
            ) from None
        self.root = self.root.rstrip("/")

    def _path(self, digest: str) -> str:
        digest = _check_digest(digest)
        return f"{self.root}/sha256/{digest[:2]}/{digest[2:]}"

    def exists(self, digest: str) -> bool:
        return bool(self.fs.exists(self._path(digest)))

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self._path(digest)
        if not self.fs.exists(target):
            # Object stores write whole objects atomically; on file-like backends the
            # temporary name + move keeps readers from seeing a partial blob.
            tmp = f"{self.root}/staging/{uuid.uuid4().hex}"
            with named_write_errors(self.root):
                self.fs.makedirs(f"{self.root}/staging", exist_ok=True)
                self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
                self.fs.pipe_file(tmp, data)
                self.fs.mv(tmp, target)
        return digest

    def put_file(self, path: Path) -> str:
        try:
            return self.put_bytes(Path(path).read_bytes())
        except FileNotFoundError:
            raise ArtifactError(f"Cannot store {path}: no such file.") from None

    def get_bytes(self, digest: str) -> bytes:
        try:
            data = self.fs.cat_file(self._path(digest))
        except FileNotFoundError:
            raise NotFound(f"Artefact {digest[:12]} is not in the store at {self.root}.") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise ArtifactCorrupted(f"Artefact {digest[:12]} is corrupted: its content no longer matches its sha256.")
        return bytes(data)


def open_artifact_store(url: str) -> LocalArtifactStore | FsspecArtifactStore:
    """A plain path (or file://) gives the local store; any other scheme goes to fsspec."""
    if "://" not in url:
        return LocalArtifactStore(Path(url))
    if url.startswith("file://"):
        return LocalArtifactStore(Path(url[len("file://"):]))
    return FsspecArtifactStore(url)
