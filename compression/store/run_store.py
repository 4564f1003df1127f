"""SQLite run store: runs, variants, metrics and an event log in one folder.

Layout of a store folder:
    lab.sqlite   the database (WAL, so readers never block the build)
    artifacts/   bundles written by other code
    build.lock   flock'ed exclusively by a build for its whole life

A run still marked 'running' whose build lock is free belongs to a process
that died, so opening the store marks it failed (see RunStore.recover).
The schema and connections live in :mod:`compression.store.db`, the lock in
:mod:`compression.store.lock`; this module holds the queries.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from compression.store import lock as store_lock
from compression.store.db import (
    SCHEMA_VERSION,
    BuildLockedError,
    StoreError,
    open_readonly,
    open_writable,
    prepare_folder,
)
from compression.store.predictions import ExampleResults

__all__ = ["RunStore", "StoreError", "BuildLockedError", "VariantRecord", "INTERRUPTED", "SCHEMA_VERSION",
           "resolve_store_dir"]

ENV_VAR = "COMPRESSION_LAB_STORE"
DEFAULT_DIR = "runs"

RUN_STATUSES = ("running", "finished", "failed")
VARIANT_STATUSES = ("building", "finished", "failed")
LEVELS = ("debug", "info", "warning", "error")
INTERRUPTED = "interrupted: the build process ended before finishing"


@dataclass(frozen=True)
class VariantRecord:
    """A variant as readers get it: its row, with its metrics and their details joined in."""

    id: int
    run_id: int
    name: str
    kind: str
    parent: str | None
    status: str
    bundle: str | None
    meta: dict
    created: float
    finished: float | None  # when it stopped building (finished or failed)
    metrics: dict[str, float | None]
    metric_details: dict[str, dict]


def resolve_store_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Explicit path, else $COMPRESSION_LAB_STORE, else ./runs; absolute."""
    chosen = explicit if explicit is not None else os.environ.get(ENV_VAR) or DEFAULT_DIR
    return Path(chosen).expanduser().resolve()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)


def _metric_value(name: str, value: Any) -> float | None:
    """Finite float or None; NaN/inf become None so the column stays comparable."""
    if value is None:
        return None
    # bool is an int, but a True "accuracy" is certainly a bug upstream.
    if isinstance(value, bool) or not hasattr(type(value), "__float__"):
        raise StoreError(f"metric {name!r} must be a number or None, got {type(value).__name__}")
    number = float(value)
    return number if math.isfinite(number) else None


class RunStore(ExampleResults):
    """One store folder. Thread-safe per instance; many processes may share it."""

    def __init__(self, root: str | os.PathLike | None = None, readonly: bool = False) -> None:
        """``readonly``: for readers (the dashboard, ``list``): no recovery, no build lock, no write ever."""
        self.root = resolve_store_dir(root)
        self.artifacts_dir = self.root / "artifacts"
        self.db_path = self.root / "lab.sqlite"
        self.lock_path = self.root / "build.lock"
        self._lock = threading.Lock()
        if readonly:
            self._conn = open_readonly(self.root, self.db_path)
            return
        prepare_folder(self.root, self.artifacts_dir, self.lock_path)
        self._conn = open_writable(self.root, self.db_path)
        try:
            self.recover()
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction. Writes take the write lock up front (IMMEDIATE) so a
        read-then-write sequence cannot fail half way on lock upgrade."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    # -- build lock and recovery ---------------------------------------------

    def recover(self) -> int:
        """Mark runs of dead builds failed; return how many runs were marked.

        A live build holds build.lock for its whole life, so if the lock is free
        every run still 'running' belongs to a process that died. Runs started
        without holding build_lock() are therefore treated as dead too.
        """
        with store_lock.try_flock(self.lock_path) as fd:
            if fd is None:
                return 0
            # Keep the lock while marking so no build can start in between.
            with self._tx() as conn:
                ids = [row["id"] for row in conn.execute(
                    "SELECT id FROM runs WHERE status = 'running' ORDER BY id")]
                for run_id in ids:
                    self._fail_run_tx(conn, run_id, INTERRUPTED)
            store_lock.remove_junk(self.root, self.artifacts_dir)
            return len(ids)

    def build_lock(self, wait: bool = False) -> contextlib.AbstractContextManager[None]:
        """Hold the exclusive build lock for a build's lifetime.

        wait=False raises BuildLockedError if another build holds it.
        """
        return store_lock.build_lock(self.lock_path, self.root, wait)

    # -- runs ----------------------------------------------------------------

    def start_run(self, name: str, recipe: dict) -> int:
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO runs(name, recipe_json, status, host, pid, started) "
                "VALUES (?, ?, 'running', ?, ?, ?)",
                (name, _dumps(recipe), socket.gethostname(), os.getpid(), time.time()))
            return int(cur.lastrowid)

    def finish_run(self, run_id: int) -> None:
        with self._tx() as conn:
            status = self._run_status(conn, run_id)
            if status != "running":
                raise StoreError(f"run {run_id} is {status}; only a running run can finish")
            conn.execute("UPDATE runs SET status = 'finished', ended = ? WHERE id = ?",
                         (time.time(), run_id))

    def fail_run(self, run_id: int, error: str) -> None:
        """Mark the run and its still-building variants failed, together.

        Failing an already failed run keeps the first error (this is called from
        error handlers, which should not raise over the original problem).
        """
        with self._tx() as conn:
            status = self._run_status(conn, run_id)
            if status == "finished":
                raise StoreError(f"run {run_id} already finished; it cannot fail")
            if status == "running":
                self._fail_run_tx(conn, run_id, error)

    def _fail_run_tx(self, conn: sqlite3.Connection, run_id: int, error: str) -> None:
        now = time.time()
        conn.execute("UPDATE runs SET status = 'failed', ended = ?, error = ? WHERE id = ?",
                     (now, error, run_id))
        building = conn.execute(
            "SELECT id, meta_json FROM variants WHERE run_id = ? AND status = 'building'",
            (run_id,)).fetchall()
        for row in building:
            self._fail_variant_tx(conn, row["id"], row["meta_json"], f"run failed: {error}", now)

    def _run_status(self, conn: sqlite3.Connection, run_id: int) -> str:
        row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id} in store {self.root}")
        return str(row["status"])

    def runs(self) -> list[dict]:
        with self._tx(write=False) as conn:
            return [self._run_dict(row) for row in conn.execute("SELECT * FROM runs ORDER BY id")]

    def get_run(self, run_id: int) -> dict:
        with self._tx(write=False) as conn:
            row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id} in store {self.root}")
        return self._run_dict(row)

    @staticmethod
    def _run_dict(row: sqlite3.Row) -> dict:
        out = {key: row[key] for key in row.keys() if key != "recipe_json"}
        out["recipe"] = json.loads(row["recipe_json"])
        return out

    # -- events --------------------------------------------------------------

    def log(self, run_id: int | None, message: str, level: str = "info",
            stage: str | None = None) -> None:
        if level not in LEVELS:
            raise StoreError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
        with self._tx() as conn:
            if run_id is not None:
                self._run_status(conn, run_id)  # clear error instead of a FK failure
            conn.execute("INSERT INTO events(run_id, ts, level, stage, message) VALUES (?, ?, ?, ?, ?)",
                         (run_id, time.time(), level, stage, message))

    def events(self, run_id: int | None = None, limit: int = 200) -> list[dict]:
        """The last `limit` events (of one run, or all), newest last."""
        where, args = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
        with self._tx(write=False) as conn:
            rows = conn.execute(f"SELECT * FROM events {where} ORDER BY id DESC LIMIT ?",
                                (*args, limit)).fetchall()
        return [dict(row) for row in reversed(rows)]

    # -- variants ------------------------------------------------------------

    def add_variant(self, run_id: int, name: str, kind: str, parent: str | None = None,
                    meta: dict | None = None) -> int:
        if not name or not kind:
            raise StoreError("a variant needs a non-empty name and kind")
        with self._tx() as conn:
            status = self._run_status(conn, run_id)
            if status != "running":
                raise StoreError(f"run {run_id} is {status}; variants can only be added to a running run")
            cur = conn.execute(
                "INSERT INTO variants(run_id, name, kind, parent, status, meta_json, created) "
                "VALUES (?, ?, ?, ?, 'building', ?, ?)",
                (run_id, name, kind, parent, _dumps(meta or {}), time.time()))
            return int(cur.lastrowid)

    def finish_variant(self, variant_id: int, bundle: str,
                       metrics: dict[str, float | None] | None = None,
                       details: dict[str, dict] | None = None,
                       meta: dict | None = None, predictions=None) -> None:
        """Metrics, merged meta, bundle, test predictions and 'finished' land together or not at all.
        ``predictions``: ``(split digest, probs per example)``, or the id of a variant whose ones it shares."""
        with self._tx() as conn:
            row = self._variant_row(conn, variant_id)
            if row["status"] != "building":
                raise StoreError(f"variant {variant_id} ({row['name']}) is {row['status']}; "
                                 "only a building variant can finish")
            self._upsert_metrics(conn, variant_id, metrics or {}, details)
            if predictions is not None:
                self._put_predictions(conn, variant_id, predictions)
            merged = {**json.loads(row["meta_json"]), **(meta or {})}
            conn.execute("UPDATE variants SET status = 'finished', bundle = ?, meta_json = ?, "
                         "finished = ? WHERE id = ?",
                         (self._stored_path(bundle), _dumps(merged), time.time(), variant_id))

    def fail_variant(self, variant_id: int, error: str) -> None:
        with self._tx() as conn:
            row = self._variant_row(conn, variant_id)
            self._fail_variant_tx(conn, variant_id, row["meta_json"], error, time.time())

    @staticmethod
    def _fail_variant_tx(conn: sqlite3.Connection, variant_id: int, meta_json: str,
                         error: str, now: float) -> None:
        meta = {**json.loads(meta_json), "error": error}
        conn.execute("UPDATE variants SET status = 'failed', meta_json = ?, finished = ? WHERE id = ?",
                     (_dumps(meta), now, variant_id))

    def set_metrics(self, variant_id: int, metrics: dict[str, float | None],
                    details: dict[str, dict] | None = None) -> None:
        with self._tx() as conn:
            self._variant_row(conn, variant_id)
            self._upsert_metrics(conn, variant_id, metrics, details)

    @staticmethod
    def _upsert_metrics(conn: sqlite3.Connection, variant_id: int,
                        metrics: dict[str, float | None], details: dict[str, dict] | None) -> None:
        details = details or {}
        orphans = sorted(set(details) - set(metrics))
        if orphans:
            raise StoreError(f"details given for metrics without a value: {', '.join(orphans)}")
        for name, value in metrics.items():
            # A metric updated without a detail keeps the detail it already had.
            detail = _dumps(details[name]) if name in details else None
            conn.execute(
                "INSERT INTO metrics(variant_id, name, value, detail_json) "
                "VALUES (?, ?, ?, COALESCE(?, '{}')) "
                "ON CONFLICT(variant_id, name) DO UPDATE SET value = excluded.value, "
                "detail_json = COALESCE(?, metrics.detail_json)",
                (variant_id, name, _metric_value(name, value), detail, detail))

    def _stored_path(self, bundle: str | os.PathLike) -> str:
        """A bundle inside the store is recorded relative to it, so a copied or moved store stays whole."""
        path = Path(bundle)
        if path.is_absolute():
            with contextlib.suppress(ValueError):
                return path.resolve().relative_to(self.root).as_posix()
        return str(bundle)

    def _bundle_path(self, stored: str | None) -> str | None:
        """The absolute bundle folder of a recorded path. Stores written before paths were relative hold absolute
        paths of wherever they were built: the part from ``artifacts/run-N`` on is looked up inside this store
        instead, so a copied store never silently reads its original's bundles."""
        if not stored:
            return stored
        parts = Path(stored).parts
        if not Path(stored).is_absolute():
            return str(self.root.joinpath(*parts))
        starts = [i for i in range(len(parts) - 1) if parts[i] == "artifacts" and parts[i + 1].startswith("run-")]
        return str(self.root.joinpath(*parts[starts[-1]:])) if starts else stored

    def _variant_row(self, conn: sqlite3.Connection, variant_id: int) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM variants WHERE id = ?", (variant_id,)).fetchone()
        if row is None:
            raise StoreError(f"no variant {variant_id} in store {self.root}")
        return row

    def variants(self, status: str | None = "finished", latest_only: bool = True) -> list[VariantRecord]:
        """Variants with that status (None: any), ordered by id.

        latest_only keeps, for each name, only the newest (highest id) of them.
        """
        if status is not None and status not in VARIANT_STATUSES:
            raise StoreError(f"variant status must be one of {', '.join(VARIANT_STATUSES)}, got {status!r}")
        where, args = ("WHERE status = ?", (status,)) if status is not None else ("", ())
        sql = f"SELECT * FROM variants {where}"
        if latest_only:
            sql = f"SELECT * FROM variants WHERE id IN (SELECT MAX(id) FROM variants {where} GROUP BY name)"
        with self._tx(write=False) as conn:
            rows = conn.execute(sql + " ORDER BY id", args).fetchall()
            return self._records(conn, rows)

    def get_variant(self, name_or_id: str | int) -> VariantRecord:
        """The newest finished variant with that name, or the finished variant with
        that id. A string of digits that names no variant is tried as an id."""
        with self._tx(write=False) as conn:
            row = None
            if isinstance(name_or_id, str):
                row = conn.execute("SELECT * FROM variants WHERE name = ? AND status = 'finished' "
                                   "ORDER BY id DESC LIMIT 1", (name_or_id,)).fetchone()
            if row is None and (isinstance(name_or_id, int) or name_or_id.isdigit()):
                row = conn.execute("SELECT * FROM variants WHERE id = ? AND status = 'finished'",
                                   (int(name_or_id),)).fetchone()
            if row is None:
                known = [r["name"] for r in conn.execute(
                    "SELECT name FROM variants WHERE status = 'finished' GROUP BY name ORDER BY MAX(id)")]
                what = f"id {name_or_id}" if isinstance(name_or_id, int) else f"named {name_or_id!r}"
                raise StoreError(f"no finished variant {what} in store {self.root}; "
                                 f"known: {', '.join(known) or '(none)'}")
            return self._records(conn, [row])[0]

    def _records(self, conn: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[VariantRecord]:
        metrics: dict[int, dict[str, float | None]] = {row["id"]: {} for row in rows}
        details: dict[int, dict[str, dict]] = {row["id"]: {} for row in rows}
        ids = list(metrics)
        for start in range(0, len(ids), 500):  # stay far below SQLite's variable limit
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for m in conn.execute(f"SELECT * FROM metrics WHERE variant_id IN ({marks}) "
                                  "ORDER BY variant_id, name", chunk):
                metrics[m["variant_id"]][m["name"]] = m["value"]
                details[m["variant_id"]][m["name"]] = json.loads(m["detail_json"])
        return [VariantRecord(
            id=row["id"], run_id=row["run_id"], name=row["name"], kind=row["kind"],
            parent=row["parent"], status=row["status"], bundle=self._bundle_path(row["bundle"]),
            meta=json.loads(row["meta_json"]), created=row["created"], finished=row["finished"],
            metrics=metrics[row["id"]], metric_details=details[row["id"]],
        ) for row in rows]
