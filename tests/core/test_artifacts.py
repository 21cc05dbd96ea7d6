import hashlib
import os
import threading
from pathlib import Path

import pytest

from chainkeeper.core.artifacts import FsspecArtifactStore, LocalArtifactStore, atomic_write, open_artifact_store
from chainkeeper.core.errors import ArtifactCorrupted, NotFound


def test_bytes_are_named_by_their_sha256_and_stored_once(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    digest = store.put_bytes(b"hello")
    assert digest == hashlib.sha256(b"hello").hexdigest()
    assert store.put_bytes(b"hello") == digest
    assert store.get_bytes(digest) == b"hello"
    assert len(list((tmp_path / "sha256").rglob("*"))) == 2  # one folder, one blob


def test_file_and_folder_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(os.urandom(3_000_000))
    (src / "sub" / "b.txt").write_text("b")
    store = LocalArtifactStore(tmp_path / "store")
    assert store.put_file(src / "a.bin") == hashlib.sha256((src / "a.bin").read_bytes()).hexdigest()
    manifest = store.put_tree(src)
    out = store.get_tree(manifest, tmp_path / "out")
    assert (out / "a.bin").read_bytes() == (src / "a.bin").read_bytes()
    assert (out / "sub" / "b.txt").read_text() == "b"
    assert store.put_tree(src) == manifest  # same content, same name


def test_a_corrupted_blob_is_detected_on_read(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    digest = store.put_bytes(b"precious weights")
    store.path_of(digest).write_bytes(b"precious weighTs")
    with pytest.raises(ArtifactCorrupted, match=digest[:12]):
        store.get_bytes(digest)
    with pytest.raises(ArtifactCorrupted):
        store.open_verified(digest)


@pytest.mark.parametrize("write", ["put_bytes", "put_file"])
def test_a_write_that_crashes_leaves_no_blob_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write: str
) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    src = tmp_path / "weights.bin"
    src.write_bytes(b"x" * (3 << 20))

    def crash(fd: int) -> None:
        raise OSError("disk went away")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk went away"):
        store.put_bytes(src.read_bytes()) if write == "put_bytes" else store.put_file(src)
    files = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert files == []


def test_unknown_and_malformed_digests(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    with pytest.raises(NotFound):
        store.get_bytes("0" * 64)
    with pytest.raises(NotFound, match="Not an artefact digest"):
        store.get_bytes("../../etc/passwd")


def test_fsspec_store_shares_the_layout_and_checks(tmp_path: Path) -> None:
    # The in-memory fsspec filesystem stands in for a remote object store.
    store = open_artifact_store("memory://ck-test")
    assert isinstance(store, FsspecArtifactStore)
    digest = store.put_bytes(b"abc")
    assert store.get_bytes(digest) == b"abc" and store.exists(digest)
    store.fs.pipe_file(store._path(digest), b"abd")
    with pytest.raises(ArtifactCorrupted):
        store.get_bytes(digest)


def test_writers_of_one_file_at_once_never_collide(tmp_path: Path) -> None:
    """Several server processes materialise the same cached model file at start."""
    target, errors = tmp_path / "model.onnx", []
    data = [bytes([i]) * 200_000 for i in range(8)]

    def write(i: int) -> None:
        try:
            atomic_write(target, data[i])
        except OSError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and target.read_bytes() in data
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temporary file left
