"""Audit ledger speed: appends per second and verify time, against a named baseline.

Appends: N entries through ``record`` (one transaction each, HMAC chained with the ledger
key from a key file in the temp folder, serialised) vs the baseline of N plain INSERTs of
the same row shape, one transaction each, with no chain. The ratio is the price of tamper
evidence.
Verify: a ledger of ``--verify-entries`` entries (default 1,000,000; written in bulk with
the real chain), then ``verify_ledger`` over all of it.

    python benchmarks/ledger.py                      # SQLite in a temp folder
    python benchmarks/ledger.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from chainkeeper.core import migrations
from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.settings import load_settings
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import GENESIS, entry_hash, record, verify_ledger
from chainkeeper.governance.ledger_keys import ledger_keys_of, use_ledger_keys
from chainkeeper.governance.tables import SqlAuditEntry

ACTOR = Actor("bench", frozenset({"ml_engineer"}), request_id="bench")


def _fresh_db(postgres: str | None, folder: Path) -> tuple[Database, sa.Engine | None, str | None]:
    if not postgres:
        db = Database(f"sqlite:///{folder / 'bench.db'}")
        migrations.upgrade(db)
        use_ledger_keys(db, load_settings({}, home=folder))
        return db, None, None
    admin = sa.create_engine(postgres, isolation_level="AUTOCOMMIT")
    name = f"ck_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    db = Database(sa.engine.make_url(postgres).set(database=name).render_as_string(hide_password=False))
    migrations.upgrade(db)
    use_ledger_keys(db, load_settings({}, home=folder))
    return db, admin, name


def bench_appends(db: Database, n: int) -> tuple[float, float]:
    start = time.perf_counter()
    for i in range(n):
        record(db, ACTOR, "run.create", "run", i, after={"i": i}, details={"i": i})
    chained = n / (time.perf_counter() - start)

    table = SqlAuditEntry.__table__
    start = time.perf_counter()
    for i in range(n):
        with db.session() as s:
            s.execute(table.insert().values(
                seq=10_000_000 + i, at=utcnow(), actor="bench", role="ml_engineer", action="run.create",
                object_kind="run", object_id=str(i), details={"i": i}, prev_hash=uuid.uuid4().hex * 2,
                hash=uuid.uuid4().hex * 2))
    plain = n / (time.perf_counter() - start)
    with db.session() as s:
        s.execute(table.delete().where(table.c.seq >= 10_000_000))
    return chained, plain


def fill_chain(db: Database, n: int, batch: int = 20_000) -> None:
    """Write n correctly chained entries in bulk (verify does not care how they got there)."""
    table = SqlAuditEntry.__table__
    with db.session() as s:
        last = s.execute(sa.select(table.c.seq, table.c.hash, table.c.key_id)
                         .order_by(table.c.seq.desc()).limit(1)).first()
    seq, prev = (last.seq, last.hash) if last else (0, GENESIS)
    key = ledger_keys_of(db).signing_key(last.key_id if last else None)
    at = utcnow()
    while n > 0:
        rows = []
        for _ in range(min(batch, n)):
            seq += 1
            fields = dict(seq=seq, at=at, actor="bench", role="ml_engineer", action="run.create", object_kind="run",
                          object_id=str(seq), before_digest=None, after_digest=None, request_id=None,
                          details={"i": seq})
            h = entry_hash(prev, **fields, key=key)
            rows.append({**fields, "prev_hash": prev, "hash": h, "key_id": key.id})
            prev = h
        with db.session() as s:
            s.execute(table.insert(), rows)
        n -= len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", help="PostgreSQL server URL (a database is created and dropped)")
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--verify-entries", type=int, default=1_000_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        db, admin, name = _fresh_db(args.postgres, Path(tmp))
        backend = "PostgreSQL" if args.postgres else "SQLite (WAL)"
        try:
            chained, plain = bench_appends(db, args.appends)
            print(f"backend: {backend}")
            print(f"append, hash-chained ledger: {chained:,.0f} entries/s "
                  f"({args.appends:,} entries, one transaction each)")
            print(f"baseline, plain INSERT:      {plain:,.0f} rows/s")
            print(f"ratio ledger/baseline:       {chained / plain:.2f}")
            start = time.perf_counter()
            fill_chain(db, args.verify_entries - args.appends)
            print(f"bulk-wrote {args.verify_entries - args.appends:,} chained entries "
                  f"in {time.perf_counter() - start:.1f} s")
            start = time.perf_counter()
            verdict = verify_ledger(db)
            seconds = time.perf_counter() - start
            print(f"verify: {verdict.entries:,} entries in {seconds:.1f} s "
                  f"({verdict.entries / seconds:,.0f} entries/s), ok={verdict.ok}")
        finally:
            db.dispose()
            if admin is not None:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()


if __name__ == "__main__":
    main()
