"""What one dashboard serves, injected into every callback: a source of variants (a run store, or a published run
that is only ever read), the models loaded in this process, and the builds this app runs. No Gradio here.

One context per app, not per module: two apps in one process (tests do it) share nothing.
"""

from __future__ import annotations

import atexit
import os
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from compression.builder.child import BuildProcess, store_is_empty
from compression.bundle.folder import Bundle, load_bundle
from compression.bundle.meta import read_meta
from compression.core.config import DataConfig
from compression.core.errors import LabError
from compression.core.texts import of_kind, texts_of
from compression.dashboard import views
from compression.data.loading import load_data
from compression.evaluation.results import current_variants, run_predictions, variant_row
from compression.publishing.writer import open_published
from compression.store.db import StoreError, StoreNotReady
from compression.store.run_store import RunStore, resolve_store_dir

ON, OFF = ("on", "1", "true", "yes"), ("off", "0", "false", "no")


@dataclass(frozen=True)
class BuildPolicy:
    """Whether visitors may start builds here, and why (shown in the Lab tab)."""

    enabled: bool
    reason: str


def build_policy(published: bool, env: dict | None = None) -> BuildPolicy:
    """``COMPRESSION_LAB_BUILDS=on|off`` wins; otherwise builds are off when serving a published run or on a
    Hugging Face Space (``SPACE_ID``), where any visitor could hold the CPU for minutes, and on elsewhere."""
    env = os.environ if env is None else env
    value = env.get("COMPRESSION_LAB_BUILDS", "").strip().lower()
    if value in ON:
        return BuildPolicy(True, "turned on by COMPRESSION_LAB_BUILDS")
    if value in OFF:
        return BuildPolicy(False, "turned off by COMPRESSION_LAB_BUILDS=off")
    if value:
        raise LabError(f"COMPRESSION_LAB_BUILDS={value!r} (allowed: on, off)")
    if published:
        return BuildPolicy(False, "this app serves a published run, which is read-only")
    if env.get("SPACE_ID"):
        return BuildPolicy(False, "this app runs on a Hugging Face Space, where a visitor's build would hold the "
                                  "CPU for everyone")
    return BuildPolicy(True, "")


class ModelCache:
    """At most ``size`` bundles in memory per app, least recently used evicted; keyed by folder and bundle.json's
    mtime. A bundle is loaded and made ready (traced) once, even when several requests ask for it at once."""

    def __init__(self, size: int = 12):
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()
        self._loading: dict[tuple, threading.Lock] = {}

    def get(self, folder: str) -> Bundle:
        key = (folder, os.stat(Path(folder) / "bundle.json").st_mtime_ns)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # a second request for the same bundle waits for the first load instead of loading it again
            with self._lock:
                if key in self._items:
                    return self._items[key]
            bundle = load_bundle(folder).prepare()
            with self._lock:
                self._items[key] = bundle
                self._loading.pop(key, None)
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
        return bundle

    def has(self, folder: str) -> bool:
        try:
            key = (folder, os.stat(Path(folder) / "bundle.json").st_mtime_ns)
        except OSError:
            return False
        with self._lock:
            return key in self._items


class StoreSource:
    """The newest run of a run store (the one place this app writes: builds, caches, session files)."""

    kind = "store"

    FRESH_S = 2.0  # every open page polls for new variants: one read of the store serves them all for this long

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._cached: tuple[float, list[dict]] = (0.0, [])
        self._lock = threading.Lock()
        self._examples: tuple[tuple, list] = ((), [])  # ((run, pair), examples): the test split is read once a run

    def rows(self) -> list[dict]:
        with self._lock:
            stamp, rows = self._cached
            if time.monotonic() - stamp < self.FRESH_S:
                return [dict(r) for r in rows]
            if not (self.root / "lab.sqlite").is_file():
                return []
            try:
                with RunStore(self.root, readonly=True) as store:  # readers never take the build lock
                    rows = [variant_row(v) for v in current_variants(store)]
            except StoreNotReady:
                return []
            self._cached = (time.monotonic(), rows)
            return [dict(r) for r in rows]

    def predictions(self, name: str):
        """A variant of the newest run: its test predictions (NoPredictions for a store built before they were
        kept)."""
        with RunStore(self.root, readonly=True) as store:
            return run_predictions(store, [name])[0][1]

    def describe(self, rows: list[dict]) -> str:
        return (f"Showing the **{len(rows)} variants of run {rows[0]['run']}** (the newest) from the run store "
                f"`{self.root.name}`.")

    def examples(self, pair: tuple[str, str] | None = None) -> list:
        """The shipped example sentences; for a pair task, pairs from the shown run's own test split."""
        if not pair:
            return views.examples()
        rows = self.rows()
        key = (rows[0]["run"] if rows else None, pair)
        cached_key, cached = self._examples
        if key != cached_key or not cached:
            cached = views.pick_examples(_test_texts(self.root, rows) or _probe_texts(rows), pairs=True, shuffle=True)
            self._examples = (key, cached)
        return list(cached)


class PublishedSource:
    """A published run: bundles checked against its manifest, served read-only."""

    kind = "published"

    def __init__(self, run):
        self.run = run

    def rows(self) -> list[dict]:
        return self.run.rows()

    def predictions(self, name: str):
        return self.run.predictions(name)

    def describe(self, rows: list[dict]) -> str:
        broken = sum(r.get("status", "ok") != "ok" for r in rows)
        note = f" ({broken} failed the manifest check and are not run)" if broken else ""
        return f"Serving the published run **{self.run.label}**: {len(rows)} variants{note}, read-only."

    def examples(self, pair: tuple[str, str] | None = None) -> list:
        """What the run packs (its examples, then its test texts); for a pair task only its pairs."""
        if not pair:
            return [t for t in self.run.examples if isinstance(t, str)] or views.examples()
        # The packed examples are drawn from the packed test texts: each pair once, or the Playground repeats them.
        pairs = of_kind([*self.run.examples, *getattr(self.run, "test_texts", [])], pairs=True)
        return views.pick_examples(list(dict.fromkeys(pairs)), pairs=True)


def pair_of(rows: list[dict]) -> tuple[str, str] | None:
    """The two input names of the task the variants shown classify (their bundle.json's "pair"), or None for single
    texts: read from the first healthy bundle, teacher first (one run's variants share one task)."""

    for row in views.teacher_first(rows):
        if not row.get("bundle") or row.get("status", "ok") != "ok":
            continue
        try:
            pair = read_meta(row["bundle"]).get("pair")
        except (LabError, OSError):
            continue
        ok = isinstance(pair, list) and len(pair) == 2 and all(isinstance(c, str) for c in pair)
        return (pair[0], pair[1]) if ok else None
    return None


def _test_texts(root: Path, rows: list[dict]) -> list:
    """The test split of the run the rows come from (loaded from its recipe's data); [] when it cannot be loaded."""

    if not rows:
        return []
    try:
        with RunStore(root, readonly=True) as store:
            recipe = store.get_run(rows[0]["run"])["recipe"]
        return texts_of(load_data(DataConfig(**recipe["data"])).splits["test"])
    except (LabError, StoreError, OSError, ValueError, TypeError, KeyError):
        return []  # the data moved or is offline: the bundles' probe texts stand in


def _probe_texts(rows: list[dict]) -> list:
    """The texts every bundle was checked with when saved (pairs for a pair task)."""

    for row in views.teacher_first([r for r in rows if r.get("bundle")]):
        try:
            return list(read_meta(row["bundle"]).get("probe", {}).get("texts", []))
        except (LabError, OSError):
            continue
    return []


@dataclass
class AppContext:
    """Everything the callbacks need, made once per app."""

    source: StoreSource | PublishedSource
    work_dir: Path                       # session files (Gradio serves downloads from here): never a published run
    policy: BuildPolicy
    cache: ModelCache = field(default_factory=lambda: ModelCache(int(os.environ.get(
        "COMPRESSION_LAB_MODEL_CACHE", "12"))))
    build: object | None = None          # the BuildProcess running or last run (the starter or a Lab build)
    build_lock: threading.Lock = field(default_factory=threading.Lock)
    _warming: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def pair(self) -> tuple[str, str] | None:
        """The input names of the pair task shown now, or None when it classifies single texts."""
        return pair_of(self.source.rows())

    def building(self) -> bool:
        return self.build is not None and self.build.state.running

    def warm(self, rows: list[dict] | None = None) -> None:
        """Load and trace every healthy bundle in the background, teacher first, so the first visitor does not
        pay for it; requests meanwhile wait only for the bundles they need next."""
        if self._warming is not None and self._warming.is_alive():
            return
        rows = views.teacher_first(self.source.rows() if rows is None else rows)
        todo = [r["bundle"] for r in rows if r.get("bundle") and r.get("status", "ok") == "ok"
                and not self.cache.has(r["bundle"])]
        if todo:
            self._warming = threading.Thread(target=self._load_all, args=(todo,), daemon=True, name="warm-models")
            self._warming.start()
            atexit.register(self.stop_warming)  # a thread inside torch when the interpreter exits aborts it

    def stop_warming(self, timeout: float = 120) -> None:
        """Stop loading between bundles and wait for the one being loaded."""
        self._stop.set()
        if self._warming is not None:
            self._warming.join(timeout)

    def _load_all(self, folders: list[str]) -> None:
        for folder in folders:
            if self._stop.is_set():
                return
            try:
                self.cache.get(folder)
            except (LabError, OSError):
                continue  # shown as broken when a request reaches it


def make_context(store_dir: str | None = None, published: str | None = None,
                 starter: str | Path | None = None) -> AppContext:
    """The app's context: a published run (read-only) or a store; with ``starter`` (a recipe file) and an empty
    store, that recipe starts building in a child process right away — it is the app's own build, so it runs even
    where visitors may not start builds."""

    root = resolve_store_dir(store_dir)
    if published:
        source = PublishedSource(open_published(published, cache=root / "cache" / "published"))
    else:
        source = StoreSource(root)
    work = Path(os.environ.get("GRADIO_TEMP_DIR", tempfile.gettempdir()))
    ctx = AppContext(source=source, work_dir=work, policy=build_policy(published=bool(published)))
    if starter and not published and store_is_empty(root):
        ctx.build = BuildProcess(starter, root)
    ctx.warm()  # load and trace the bundles while the page is served
    return ctx
