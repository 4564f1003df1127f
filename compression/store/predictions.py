"""Per-example test results in the run store: each finished variant's predicted probabilities on the test split,
beside the split itself (texts, gold labels, label names) stored once per data digest. Standard library only: the
probabilities are float32 bytes, ``examples x classes``, little-endian; callers turn them into arrays.

Stores written before these tables existed have none: reading says so (:class:`NoPredictions`) and everything
else works as before. A writable store gains the tables when it opens (``CREATE TABLE IF NOT EXISTS``).
"""

from __future__ import annotations

import json
import sqlite3
import sys
from array import array
from dataclasses import dataclass

from compression.store.db import StoreError


class NoPredictions(StoreError):
    """The store (or the variant) has no per-example results: made before they were kept."""


@dataclass(frozen=True)
class TestSplit:
    """The examples a run's variants were scored on: texts are strings, or [first, second] for a pair task."""

    digest: str
    labels: list[str]
    gold: list[int]
    texts: list


@dataclass(frozen=True)
class VariantPredictions:
    split: TestSplit
    classes: int
    probs: list[list[float]]  # per example, per class


def pack(probs) -> bytes:
    """float32 little-endian bytes of a ``examples x classes`` table (any nested sequence of numbers)."""
    flat = array("f", (float(x) for row in probs for x in row))
    if sys.byteorder != "little":
        flat.byteswap()
    return flat.tobytes()


def unpack(blob: bytes, classes: int) -> list[list[float]]:
    flat = array("f")
    flat.frombytes(blob)
    if sys.byteorder != "little":
        flat.byteswap()
    return [list(flat[i:i + classes]) for i in range(0, len(flat), classes)]


class ExampleResults:
    """The run store's per-example queries (mixed into :class:`~compression.store.run_store.RunStore`)."""

    def record_split(self, split: TestSplit) -> None:
        """Keep a test split once (by digest): its texts, gold labels and label names."""
        if len(split.texts) != len(split.gold):
            raise StoreError(f"test split {split.digest}: {len(split.texts)} texts for {len(split.gold)} labels")
        with self._tx() as conn:
            conn.execute("INSERT OR IGNORE INTO test_splits(digest, labels_json, gold_json, texts_json) "
                         "VALUES (?, ?, ?, ?)", (split.digest, json.dumps(split.labels), json.dumps(split.gold),
                                                 json.dumps(split.texts, ensure_ascii=False)))

    @staticmethod
    def _put_predictions(conn: sqlite3.Connection, variant_id: int, predictions) -> None:
        """Inside finish_variant's transaction: ``(split digest, probs)`` to store, or an int: the id of a variant
        whose predictions this one shares (a reused bundle)."""
        if isinstance(predictions, int):
            conn.execute("INSERT OR REPLACE INTO predictions(variant_id, split_digest, classes, probs) "
                         "SELECT ?, split_digest, classes, probs FROM predictions WHERE variant_id = ?",
                         (variant_id, predictions))
            return
        digest, probs = predictions
        classes = len(probs[0]) if len(probs) else 0
        conn.execute("INSERT OR REPLACE INTO predictions(variant_id, split_digest, classes, probs) "
                     "VALUES (?, ?, ?, ?)", (variant_id, digest, classes, pack(probs)))

    def predictions(self, variant_id: int) -> VariantPredictions:
        """A finished variant's test predictions with their split; :class:`NoPredictions` when it has none."""
        try:
            with self._tx(write=False) as conn:
                row = conn.execute("SELECT p.classes, p.probs, s.* FROM predictions p JOIN test_splits s "
                                   "ON s.digest = p.split_digest WHERE p.variant_id = ?", (variant_id,)).fetchone()
        except sqlite3.OperationalError as err:
            if "no such table" not in str(err):
                raise
            row = None
        if row is None:
            raise NoPredictions(f"variant {variant_id} has no per-example results: it was recorded before the lab "
                                f"kept them; build the recipe again to get them")
        split = TestSplit(row["digest"], json.loads(row["labels_json"]), json.loads(row["gold_json"]),
                          [tuple(t) if isinstance(t, list) else t for t in json.loads(row["texts_json"])])
        return VariantPredictions(split, row["classes"], unpack(row["probs"], row["classes"]))
