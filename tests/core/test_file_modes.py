"""The store's files are owner-only (issue 15, item 7): nothing under the home folder is
readable by the host's other users, whether Chainkeeper runs as the CLI (a fresh process,
started with the usual umask 022) or as a library through ``open_context``."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainkeeper.chain import open_context
from chainkeeper.core.file_modes import make_private, restrict_umask
from chainkeeper.core.settings import Settings, load_settings
from chainkeeper.data.ingest import import_file
from chainkeeper.data.versions import create_dataset_version
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.bootstrap import initialise
from tests.model_rows import save_tiny_classifier

STEWARD = Actor(name="dana", roles=frozenset({"data_steward"}))


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The process starts with umask 022 (files 0644, folders 0755), as a login shell's does."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def _readable_by_others(home: Path) -> list[str]:
    """Every entry under ``home`` (itself included) with a group or other permission bit."""
    loose = []
    for path in [home, *home.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            loose.append(f"{oct(mode)} {path.relative_to(home.parent)}")
    return loose


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_library_use_creates_the_store_and_its_artefacts_owner_only(usual_umask: None, tmp_path: Path,
                                                                      tiny_model_dir: Path) -> None:
    settings = load_settings({}, home=tmp_path / "home")
    initialise(settings)
    ctx = open_context(settings)
    try:
        data = tmp_path / "rows.csv"
        data.write_text("text,label\n" + "".join(f"text number {i},l{i % 3}\n" for i in range(30)), encoding="utf-8")
        assert _mode(data) == 0o600  # the process's umask now masks group and others
        source = import_file(ctx, data, actor=STEWARD)
        create_dataset_version(ctx, name="intents", source_ids=[source.id], actor=STEWARD)
        model = ctx.artifacts.put_tree(save_tiny_classifier(tiny_model_dir, tmp_path / "model"))
        ctx.artifacts.get_tree(model, settings.home / "cache" / "models" / model)  # a model folder, materialised
        (settings.home / "exports").mkdir()
        (settings.home / "exports" / "report.html").write_text("<p>report</p>", encoding="utf-8")
    finally:
        ctx.close()

    assert _mode(settings.home) == 0o700 and _mode(settings.home / "chainkeeper.db") == 0o600
    assert len(list(settings.home.rglob("*"))) > 20
    assert _readable_by_others(settings.home) == []


def test_an_existing_store_of_an_older_version_is_tightened_when_opened(usual_umask: None,
                                                                         settings: Settings) -> None:
    (settings.home / "artifacts").mkdir()
    for path, mode in ((settings.home, 0o755), (settings.home / "artifacts", 0o755),
                       (settings.home / "chainkeeper.db", 0o644)):
        path.chmod(mode)

    open_context(settings).close()

    assert _mode(settings.home) == 0o700 and _mode(settings.home / "artifacts") == 0o700
    assert _mode(settings.home / "chainkeeper.db") == 0o600


def test_private_files_false_leaves_modes_and_umask_as_they_are(usual_umask: None, settings: Settings) -> None:
    settings.home.chmod(0o750)
    shared = settings.model_copy(update={"private_files": False})

    open_context(shared).close()
    (settings.home / "shared.txt").write_text("x", encoding="utf-8")

    assert _mode(settings.home) == 0o750 and _mode(settings.home / "shared.txt") == 0o644


def test_the_umask_keeps_stricter_bits_and_make_private_leaves_a_missing_file_missing(tmp_path: Path) -> None:
    before = os.umask(0o027)
    try:
        assert restrict_umask() == 0o027
        assert os.umask(0o027) == 0o077
        os.umask(0o277)
        restrict_umask()
        assert os.umask(0o022) == 0o277
    finally:
        os.umask(before)
    make_private(tmp_path / "missing", folder=False)
    assert not (tmp_path / "missing").exists()


@pytest.mark.slow
def test_nothing_the_quickstart_leaves_under_the_home_folder_is_readable_by_others(tmp_path: Path,
                                                                                   tiny_model_dir: Path) -> None:
    """The whole chain in a fresh process with umask 022: import, clean, annotate, release,
    train (checkpoints), register, export, deploy, serve (the prediction log), monitor (drift
    caches), the exported sample and labelled data, the ledger's keys."""
    home = tmp_path / "home"
    env = {**os.environ, "CHAINKEEPER_HOME": str(home), "CHAINKEEPER_BASE_MODEL": str(tiny_model_dir),
           "COLUMNS": "200"}

    done = subprocess.run([sys.executable, "-m", "chainkeeper.cli.main", "quickstart", "--limit", "80",
                           "--max-steps", "4"], env=env, capture_output=True, text=True, timeout=600, umask=0o022)

    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    names = {p.name for p in home.rglob("*")}
    assert {"chainkeeper.db", "artifacts", "cache", "runs", "sample", "secrets"} <= names, sorted(names)
    assert _readable_by_others(home) == []
