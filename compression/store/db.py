"""The SQLite side of the run store: its schema, how a connection is opened (writable or read-only) and the errors
users see. Kept apart from :mod:`compression.store` (the queries) so each stays short."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

SCHEMA_VERSION = 1

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS runs(
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        recipe_json TEXT NOT NULL,
        status TEXT NOT NULL CHECK(status IN ('running','finished','failed')),
        host TEXT,
        pid INTEGER,
        started REAL NOT NULL,
        ended REAL,
        error TEXT)""",
    """CREATE TABLE IF NOT EXISTS variants(
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        parent TEXT,
        status TEXT NOT NULL CHECK(status IN ('building','finished','failed')),
        bundle TEXT,
        meta_json TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL,
        finished REAL)""",
    """CREATE TABLE IF NOT EXISTS metrics(
        variant_id INTEGER NOT NULL REFERENCES variants(id),
        name TEXT NOT NULL,
        value REAL,
        detail_json TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY(variant_id, name))""",
    """CREATE TABLE IF NOT EXISTS events(
        id INTEGER PRIMARY KEY,
        run_id INTEGER REFERENCES runs(id),
        ts REAL NOT NULL,
        level TEXT NOT NULL,
        stage TEXT,
        message TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS variants_name ON variants(name, status)",
    "CREATE INDEX IF NOT EXISTS variants_run ON variants(run_id)",
    "CREATE INDEX IF NOT EXISTS events_run ON events(run_id)",
    # per-example test results (store/predictions.py): older stores gain them when they open writable
    """CREATE TABLE IF NOT EXISTS test_splits(
        digest TEXT PRIMARY KEY,
        labels_json TEXT NOT NULL,
        gold_json TEXT NOT NULL,
        texts_json TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS predictions(
        variant_id INTEGER PRIMARY KEY REFERENCES variants(id),
        split_digest TEXT NOT NULL REFERENCES test_splits(digest),
        classes INTEGER NOT NULL,
        probs BLOB NOT NULL)""",
)


class StoreError(RuntimeError):
    """A user-facing store problem; the message is one clear line."""


class BuildLockedError(StoreError):
    """Another build holds the store's build lock."""


class StoreNotReady(StoreError):
    """The database file exists but its first build has not committed the tables yet."""


def _not_writable(root: Path, exc: BaseException) -> StoreError:
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    return StoreError(f"store folder {root} is not writable: {detail}")


def prepare_folder(root: Path, artifacts_dir: Path, lock_path: Path) -> None:
    """Create the store folder, its artifacts folder and the lock file (so recovery never fails on it later)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        artifacts_dir.mkdir(exist_ok=True)
        os.close(os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644))
    except OSError as exc:
        raise _not_writable(root, exc) from exc


def open_writable(root: Path, db_path: Path) -> sqlite3.Connection:
    """A connection in WAL mode with the schema in place; every failure is one StoreError line."""
    conn: sqlite3.Connection | None = None
    try:
        # Switching a new database to WAL ignores busy_timeout: processes opening one store at the same moment
        # (torchrun ranks, a CLI beside the app) take turns here instead of failing with "database is locked".
        with open(root / ".open.lock", "a+b") as gate:
            fcntl.flock(gate, fcntl.LOCK_EX)
            # isolation_level=None: the store issues BEGIN/COMMIT itself (see RunStore._tx).
            conn = sqlite3.connect(db_path, timeout=10, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            create_schema(conn, root)
    except BaseException as exc:
        if conn is not None:
            conn.close()
        if isinstance(exc, OSError):
            raise _not_writable(root, exc) from exc
        if isinstance(exc, sqlite3.DatabaseError):
            if isinstance(exc, sqlite3.OperationalError) and not os.access(root, os.W_OK):
                raise StoreError(f"store folder {root} is not writable: {exc}") from exc
            raise StoreError(f"cannot open store database {db_path}: {exc}") from exc
        raise
    return conn


def open_readonly(root: Path, db_path: Path) -> sqlite3.Connection:
    """A connection that can never write (``mode=ro``); no recovery, no schema change, no lock file."""
    if not db_path.is_file():
        raise StoreError(f"no run store at {root} (no lab.sqlite)")
    try:
        conn = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True, timeout=10, isolation_level=None,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 10000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot read store database {db_path}: {exc}") from exc
    if version > SCHEMA_VERSION:
        conn.close()
        raise StoreError(f"store {root} has schema version {version}; this code knows up to {SCHEMA_VERSION}")
    if version == 0:
        # The file appears a moment before its first build commits the tables.
        conn.close()
        raise StoreNotReady(f"store {root} is still being created (no tables yet); try again in a moment")
    return conn


def create_schema(conn: sqlite3.Connection, root: Path) -> None:
    """Create the tables of a new store, in one transaction; refuse a store written by newer code."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"store {root} has schema version {version}; "
                             f"this code knows up to {SCHEMA_VERSION}")
        for statement in SCHEMA:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
