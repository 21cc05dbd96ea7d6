"""A full disk and a refused write are named, and jobs retry only what may pass (issue 15, item 8).

What is real in each test, since a real full disk or read-only folder needs a mount:
- SQLite's own ``SQLITE_FULL``, which SQLite raises when a database reaches its
  ``max_page_count`` (the same code and text as a full disk): runs everywhere;
- a real full disk (a 64-256 KiB tmpfs) and a real read-only folder (a read-only bind
  mount), mounted in a private user and mount namespace (``unshare -Urm``) in which the
  worker, the CLI or the server under test runs: no root needed, nothing seen outside.
  Skipped, with the reason, where the kernel does not allow user namespaces;
- the kernel's ``ENOSPC`` from ``/dev/full`` for a job's own write;
- ``EACCES`` from a folder chmod 0500, only when not root (root writes through it).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from chainkeeper.core.artifacts import LocalArtifactStore
from chainkeeper.core.context import Context
from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import DiskFull, StorageDenied, StoreError
from chainkeeper.core.jobs import JobHandle, JobState, get_job, job_logs, retry_delay, submit_job
from chainkeeper.core.settings import Settings
from chainkeeper.core.worker import Worker
from chainkeeper.governance.users import create_user, issue_token

KIND = "test.store_blob"  # a job that writes one blob to the artefact store


@functools.cache
def _no_namespaces() -> str | None:
    """Why a private mount namespace cannot be made here, or None when it can."""
    if shutil.which("unshare") is None:
        return "the unshare command (util-linux) is not installed"
    probe = subprocess.run(["unshare", "-Urm", "sh", "-c", "mount -t tmpfs -o size=64k none /tmp"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"user namespaces are not allowed here ({probe.stderr.strip()})"
    return None


needs_mounts = pytest.mark.skipif(_no_namespaces() is not None, reason=str(_no_namespaces()))


def _read_only(folder: Path) -> str:
    """Shell that makes ``folder`` a read-only bind mount of itself (EROFS on every write)."""
    q = shlex.quote(str(folder))
    return f"mount --bind {q} {q} && mount -o remount,bind,ro {q}"


def _full_disk(folder: Path, kib: int = 64) -> str:
    """Shell that mounts a ``kib`` KiB tmpfs on ``folder`` and fills it (ENOSPC on every write)."""
    q = shlex.quote(str(folder))
    return (f"mount -t tmpfs -o size={kib}k none {q} && mkdir -p {q}/sha256 {q}/staging "
            f"&& (cat /dev/zero > {q}/filler 2>/dev/null; true)")


def _in_namespace(mount: str, argv: list[str], env: dict[str, str], **popen: Any) -> subprocess.Popen[str]:
    """Run ``argv`` where ``mount`` (shell) was done first, in a user+mount namespace of its own."""
    command = f"{mount} && exec {shlex.join(argv)}"
    return subprocess.Popen(["unshare", "-Urm", "sh", "-c", command], env=env, text=True, **popen)


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINKEEPER_")}
    env.update({"CHAINKEEPER_HOME": str(settings.home), "COLUMNS": "250", **extra})
    return env


def _store_blob(ctx: Context, job: JobHandle) -> dict[str, Any]:
    return {"digest": ctx.artifacts.put_bytes(os.urandom(int(job.params.get("bytes", 256 * 1024))))}


# The worker of these tests: the real Worker and artefact store, plus the job above.
_WORKER = """
from chainkeeper.chain import open_context
from chainkeeper.core.settings import load_settings
from chainkeeper.core.worker import Worker
from tests.core.test_storage_errors import KIND, _store_blob
ctx = open_context(load_settings())
ctx.wiring.register_job(KIND, _store_blob)
job = Worker(ctx).run_one()
print("ran", job and job.id, job and job.state)
"""


def _run_worker_in(mount: str, settings: Settings, **extra: str) -> str:
    proc = _in_namespace(mount, [sys.executable, "-c", _WORKER], _env(settings, **extra),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2])
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    return out


# --- the metadata store ---------------------------------------------------------------------


def test_sqlite_reporting_a_full_database_is_named_a_full_disk(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'small.db'}")

    @event.listens_for(db.engine, "connect")
    def _cap(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA max_page_count = 8")  # SQLite then answers SQLITE_FULL

    try:
        with db.session() as s:
            s.execute(sa.text("CREATE TABLE notes (body TEXT)"))
        with pytest.raises(DiskFull) as caught, db.session() as s:
            for _ in range(200):
                s.execute(sa.text("INSERT INTO notes VALUES (:b)"), {"b": "x" * 4000})
    finally:
        db.dispose()
    error = caught.value
    assert error.message.startswith(f"The disk is full: the metadata store could not write {tmp_path / 'small.db'}")
    assert "database or disk is full" in error.message and " free)" in error.message
    assert f"Free space on the disk holding {tmp_path}" in str(error.hint)
    assert "database server" not in str(error)
    assert error.status == 507 and error.transient


def test_only_a_server_database_that_does_not_answer_gets_the_server_hint() -> None:
    db = Database("postgresql+psycopg://nobody@127.0.0.1:9/none")  # port 9 refuses at once
    try:
        with pytest.raises(StoreError) as caught:
            db.ping()
    finally:
        db.dispose()
    assert type(caught.value) is StoreError and caught.value.transient
    assert "Check that the database server is running" in str(caught.value.hint)


@needs_mounts
def test_a_full_disk_under_the_store_is_named_with_the_folder_to_clear(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINKEEPER_")} | {"COLUMNS": "250"}
    proc = _in_namespace(_full_disk(home, kib=128), [sys.executable, "-m", "chainkeeper.cli.main", "--home",
                                                    str(home), "init"], env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3, out  # the store's exit code, not a traceback
    assert f"The disk is full: the metadata store could not write {home / 'chainkeeper.db'}" in out
    assert "0 bytes free" in out and f"Free space on the disk holding {home}" in out
    assert "database server" not in out and "Traceback" not in out


# --- the artefact store ---------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a chmod 0500 folder; the read-only mount "
                    "tests cover a refused write there")
def test_a_folder_the_user_may_not_write_is_named(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    (tmp_path / "artifacts" / "sha256").chmod(0o500)
    try:
        with pytest.raises(StorageDenied) as caught:
            store.put_bytes(b"a model")
    finally:
        (tmp_path / "artifacts" / "sha256").chmod(0o700)
    assert caught.value.message.startswith(f"Permission denied writing {tmp_path / 'artifacts' / 'sha256'}")
    assert f"uid {os.getuid()}" in str(caught.value.hint) and "CHAINKEEPER_ARTIFACTS_URL" in str(caught.value.hint)


@needs_mounts
def test_a_read_only_artefact_folder_fails_the_job_at_once_with_the_reason(ctx: Context) -> None:
    ctx.wiring.register_job(KIND, _store_blob)
    job = submit_job(ctx, KIND, {}, actor="t", max_attempts=3)
    out = _run_worker_in(_read_only(ctx.settings.home / "artifacts"), ctx.settings)

    failed = get_job(ctx.db, job.id)
    assert failed.state == JobState.FAILED and failed.attempts == 1, out  # not retried: it cannot pass
    assert str(failed.error).startswith(f"Permission denied writing {ctx.settings.home / 'artifacts' / 'sha256'}")
    assert "mounted read-only" in str(failed.error) and "Remount" in str(failed.error)


@needs_mounts
def test_a_full_artefact_disk_retries_the_job_with_back_off(ctx: Context) -> None:
    ctx.wiring.register_job(KIND, _store_blob)
    job = submit_job(ctx, KIND, {}, actor="t", max_attempts=3)
    before = utcnow()
    out = _run_worker_in(_full_disk(ctx.settings.home / "artifacts"), ctx.settings,
                         CHAINKEEPER_JOB_RETRY_DELAY_S="1")

    waiting = get_job(ctx.db, job.id)
    assert waiting.state == JobState.QUEUED and waiting.attempts == 1 and waiting.worker_id is None, out
    assert waiting.not_before is not None and waiting.not_before >= before + timedelta(seconds=1)
    assert "attempt 1 failed: The disk is full: the artefact store could not write" in waiting.message
    assert "(attempt 2 of 3)" in waiting.message
    assert any("Retrying in 1 s." in line for _, _, line in job_logs(ctx.db, job.id))

    # Outside that namespace the folder has room: the next attempt, once due, succeeds.
    assert Worker(ctx).run_one() is None  # not before its back-off
    time.sleep(max(0.0, (waiting.not_before - utcnow()).total_seconds()) + 0.1)
    done = Worker(ctx).run_one()
    assert done is not None and done.state == JobState.SUCCEEDED and done.attempts == 2


# --- a job's own writes ---------------------------------------------------------------------


def _write_to_full_device(ctx: Context, job: JobHandle) -> dict[str, Any]:
    with open("/dev/full", "wb") as device:  # noqa: PTH123 - the device, not a path we own
        device.write(b"checkpoint")
        device.flush()  # the kernel answers ENOSPC here
    return {}


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs the /dev/full device (Linux)")
def test_a_jobs_own_write_to_a_full_disk_is_named_and_retried_until_its_attempts_run_out(ctx: Context) -> None:
    ctx.wiring.register_job("test.full", _write_to_full_device)
    job = submit_job(ctx, "test.full", {}, actor="t", max_attempts=2)
    settings = ctx.settings.model_copy(update={"job_retry_delay_s": 0.0})
    worker = Worker(Context(settings=settings, db=ctx.db, artifacts=ctx.artifacts, wiring=ctx.wiring))

    first = worker.run_one()
    assert first is not None and first.id == job.id and first.state == JobState.QUEUED and first.attempts == 1
    assert "The disk is full: the job could not write a file (No space left on device)" in first.message
    assert "Retrying after" in first.message and "(attempt 2 of 2)" in first.message
    last = worker.run_one()
    assert last is not None and last.state == JobState.FAILED and last.attempts == 2
    assert str(last.error).startswith("The disk is full: the job could not write a file")


def test_a_job_meeting_a_locked_store_is_retried(ctx: Context) -> None:
    """A real lock: another connection holds SQLite's write lock while the job writes. The
    store's connections wait 0.2 s for it here instead of 30 s, so the test is quick."""
    @event.listens_for(ctx.db.engine, "connect")
    def _short_wait(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout = 200")

    ctx.db.engine.dispose()  # the pooled connections take the shorter wait

    def write_while_locked(c: Context, job: JobHandle) -> dict[str, Any]:
        other = sqlite3.connect(str(c.settings.home / "chainkeeper.db"), isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # the write lock, held by someone else
            job.progress(50, "half way")
        finally:
            other.close()
        return {}

    ctx.wiring.register_job("test.locked", write_while_locked)
    job = submit_job(ctx, "test.locked", {}, actor="t")
    waiting = Worker(ctx).run_one()
    assert waiting is not None and waiting.id == job.id
    assert waiting.state == JobState.QUEUED and waiting.attempts == 1 and waiting.not_before is not None
    assert "is locked: another process held its write lock" in waiting.message
    assert "database server" not in waiting.message


def test_retries_wait_longer_each_time_up_to_the_cap() -> None:
    assert [retry_delay(n, base_s=30, max_s=600) for n in range(1, 7)] == [30, 60, 120, 240, 480, 600]


# --- the API ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def steward_token(ctx: Context) -> str:
    """A data steward's token, in the store the server under test opens (``ctx`` made its folders)."""
    create_user(ctx.db, "sam", roles=["data_steward"])
    return issue_token(ctx.db, "sam", name="test").secret


@contextlib.contextmanager
def _serve_in(mount: str, settings: Settings, log: Path) -> Iterator[tuple[str, int]]:
    """A real server in its own namespace: (its URL, its pid; /proc/PID/root shows its mounts)."""
    port = _free_port()
    with log.open("w") as out:
        proc = _in_namespace(mount, [sys.executable, "-m", "chainkeeper.cli.main", "serve", "--port", str(port)],
                             _env(settings), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        assert proc.poll() is None, log.read_text()
        yield url, proc.pid  # unshare and sh exec the server: the same process
    finally:
        proc.terminate()
        proc.wait(timeout=30)


_CSV = b"text,label\n" + b"".join(f"my card was lost {i},lost_card\n".encode() for i in range(30))


@needs_mounts
def test_the_api_names_a_read_only_artefact_folder_not_a_500(settings: Settings, steward_token: str,
                                                             tmp_path: Path) -> None:
    with _serve_in(_read_only(settings.home / "artifacts"), settings, tmp_path / "serve.log") as (url, _):
        answer = httpx.post(f"{url}/api/sources", headers={"Authorization": f"Bearer {steward_token}"},
                            files={"file": ("intents.csv", _CSV, "text/csv")}, timeout=30)
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        problem = answer.json()
        assert problem["title"] == "Permission denied"
        assert problem["detail"].startswith(f"Permission denied writing {settings.home / 'artifacts' / 'sha256'}")
        assert "Remount" in problem["hint"] and "Retry-After" not in answer.headers  # it will not pass by itself
        listed = httpx.get(f"{url}/api/sources", headers={"Authorization": f"Bearer {steward_token}"})
        assert listed.json() == []  # nothing half-stored


@needs_mounts
def test_the_api_answers_a_full_artefact_disk_507_and_recovers_once_space_is_freed(
        settings: Settings, steward_token: str, tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {steward_token}"}
    upload = {"file": ("intents.csv", _CSV, "text/csv")}
    with _serve_in(_full_disk(settings.home / "artifacts"), settings, tmp_path / "serve.log") as (url, pid):
        answer = httpx.post(f"{url}/api/sources", headers=auth, files=upload, timeout=30)
        assert answer.status_code == 507, answer.text
        problem = answer.json()
        assert problem["title"] == "Disk full" and answer.headers["retry-after"] == "30"
        assert problem["detail"].startswith("The disk is full: the artefact store could not write")
        assert f"Free space on the disk holding {settings.home / 'artifacts'}" in problem["hint"]
        assert httpx.get(f"{url}/api/sources", headers=auth).json() == []

        # The operator frees space on that disk (seen through the server's own mounts).
        Path(f"/proc/{pid}/root{settings.home / 'artifacts' / 'filler'}").unlink()
        again = httpx.post(f"{url}/api/sources", headers=auth, files=upload, timeout=30)
        assert again.status_code == 201, again.text


@pytest.mark.slow
@needs_mounts
def test_a_training_job_on_a_read_only_artefact_folder_fails_with_the_reason(ctx: Context, tmp_path: Path,
                                                                             tiny_model_dir: Path) -> None:
    """The probe's case: a real training run whose model cannot be stored fails once, named."""
    from chainkeeper.training.runs import RunState, get_run, start_training_run
    from tests.training.test_runs import ALICE, FAST, _dataset_version

    version_id = _dataset_version(ctx, tmp_path)
    run = start_training_run(ctx, dataset_version_id=version_id, config=FAST.model_copy(update={"epochs": 1}),
                             actor=ALICE, base_model=tiny_model_dir)
    assert run.job_id is not None
    worker = _in_namespace(_read_only(ctx.settings.home / "artifacts"),
                           [sys.executable, "-m", "chainkeeper.cli.main", "worker", "--max-jobs", "1",
                            "--exit-when-idle"], _env(ctx.settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = worker.communicate(timeout=300)
    assert worker.returncode == 0, out

    job = get_job(ctx.db, run.job_id)
    assert job.state == JobState.FAILED and job.attempts == 1, (job, out)  # not retried: it cannot pass
    assert str(job.error).startswith(f"Permission denied writing {ctx.settings.home / 'artifacts'}")
    assert "the file system is mounted read-only" in str(job.error) and "Traceback" not in str(job.error)
    assert get_run(ctx.db, run.id).state == RunState.FAILED
