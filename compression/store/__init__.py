"""The SQLite run store: runs, variants, metrics and events (WAL, one transaction per state change), and its
build lock. Imports only the standard library."""

from compression.store.db import StoreError
from compression.store.run_store import RunStore

__all__ = ["RunStore", "StoreError"]
