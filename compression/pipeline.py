"""Run a recipe end to end: data → teacher → teacher logits → students → prune → quantize → benchmark → store.

Progress goes to a callback ``progress(fraction, message)`` so the CLI (tqdm) and the dashboard (gr.Progress) show
the same stages. A variant is recorded as finished only after its bundle reloaded in a fresh process.

Builds resume: every variant has an input fingerprint (its recipe step, the content of its parent bundle, the data,
the seed, and a digest of the code that makes it: its technique's module and what that imports). A finished variant
with the same fingerprint and an intact bundle is reused instead of rebuilt, so a second build of an unchanged
recipe — or one interrupted part-way — only does what is missing, and changed code rebuilds what it makes. The
stages themselves are in ``stages.py``.

Under ``torchrun`` / ``accelerate launch`` every process runs this function: all of them train (the Trainer
synchronises them), and only the main process writes bundles and touches the store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Callable

from . import stages, techniques
from .codehash import code_digest
from .config import Recipe
from .errors import LabError, failpoint
from .store import RunStore, StoreError
from .texts import texts_of

Progress = Callable[[float, str], None]
TRAINING_CODE = ("compression.distill",)  # what every training stage runs: the Trainer subclass, losses, data


def _quiet(fraction: float, message: str) -> None:
    pass


def fingerprint(*parts) -> str:
    """A short content hash of JSON-able parts (configs, upstream fingerprints)."""
    from . import __version__

    blob = json.dumps([__version__, *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class _Processes:
    """Who we are among distributed processes; a single process needs no process group at all."""

    def __init__(self):
        self.state = None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            import torch
            from accelerate import PartialState

            self.state = PartialState(cpu=not torch.cuda.is_available())
        self.main = self.state is None or self.state.is_main_process

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()

    def share(self, value):
        """The main process's ``value``, on every process."""
        if self.state is None:
            return value
        from accelerate.utils import broadcast_object_list

        box = [value]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def main_first(self):
        return self.state.main_process_first() if self.state is not None else contextlib.nullcontext()


class _Plan:
    """Maps stage progress onto one 0..1 bar: training dominates, so it gets most of the bar."""

    def __init__(self, recipe: Recipe):
        self.weights = {"data": 1, "teacher": 6 if recipe.teacher.train else 1, "logits": 1,
                        "augment": 2 if recipe.augment else 0,
                        **{s.name: 5 for s in recipe.students},
                        **{p.name: 3 if p.recover else 1 for p in recipe.prune},
                        **{q.name: 1 for q in recipe.quantize}, "bench": 2 if recipe.bench else 0}
        self.total = sum(self.weights.values())

    def fraction(self, stage: str, within: float) -> float:
        done = 0
        for name, weight in self.weights.items():
            if name == stage:
                return (done + weight * min(max(within, 0.0), 1.0)) / self.total
            done += weight
        return 1.0


class _Build:
    """State shared by the stages of one build."""

    def __init__(self, recipe, store, data, procs, run_id, progress, plan):
        self.recipe, self.store, self.data, self.procs, self.run_id = recipe, store, data, procs, run_id
        self.run_dir = store.artifacts_dir / f"run-{run_id}"
        self.work_dir = store.root / "work"  # training checkpoints, per stage input: a rerun resumes from them
        self.folders: dict[str, Path] = {}     # variant name -> bundle folder
        self.variant_ids: dict[str, int] = {}  # variant name -> store id in this run
        self.stage_dirs: dict[str, Path] = {}  # variant name -> its checkpoints, keyed by its input fingerprint
        self.reused: set[str] = set()
        self.logits = None
        self.teacher_test_logits = None  # from the teacher's evaluation, when it was built in this run
        self.state_layers: dict[str, list[int]] = {}  # student -> teacher layers of the cached states it learns
        self.cached_layers: list[int] = []  # the teacher layers whose first-token states are cached
        self.extra_texts: list[list[str]] = []  # augmented texts, transfer texts: the parts after the data's train
        self.train_data, self.train_logits = None, None  # what distillation trains on: data + augmented texts
        self.transfer_texts: list[str] | None = None  # the transfer set's new texts, when the recipe has one
        self._progress, self._plan = progress, plan

    def report(self, stage: str, within: float, message: str, log: bool = True) -> None:
        if self.procs.main:
            if log:
                self.store.log(self.run_id, message, stage=stage)
            self._progress(self._plan.fraction(stage, within), message)

    def trainer_progress(self, stage: str):
        return lambda f, m: self.report(stage, 0.05 + 0.8 * f, m, log="validation" in m or "resuming" in m)

    def bundle_fingerprint(self, name: str) -> str:
        from .bundle import fingerprint as content

        return content(self.folders[name])

    def reuse(self, name: str, kind: str, parent: str | None, input_fp: str) -> bool:
        """Reuse a finished variant with the same input fingerprint and an intact bundle; True when reused."""
        from .bundle import bundle_problem

        found = None
        if self.procs.main:
            for record in reversed(self.store.variants(status="finished", latest_only=False)):
                if record.name != name or record.meta.get("input_fingerprint") != input_fp or not record.bundle:
                    continue
                if bundle_problem(record.bundle) is None:  # a broken bundle is not reusable: it gets rebuilt
                    found = record
                    break
            if found is not None:
                variant_id = self.store.add_variant(self.run_id, name, kind=kind, parent=parent,
                                                    meta={**found.meta, "reused_from": found.id})
                self.store.finish_variant(variant_id, found.bundle, metrics=found.metrics,
                                          details=found.metric_details)
                self.variant_ids[name] = variant_id
                self.report(name, 1.0, f"{name}: unchanged since run {found.run_id}; reusing its bundle")
        folder = self.procs.share(found.bundle if found is not None else None)
        if folder is None:
            return False
        self.folders[name] = Path(folder)
        self.reused.add(name)
        return True

    def start(self, name: str, kind: str, parent: str | None, input_fp: str, meta: dict) -> None:
        self.folders[name] = self.run_dir / name
        self.stage_dirs[name] = self.work_dir / f"{name}-{input_fp}"
        if self.procs.main:
            self.variant_ids[name] = self.store.add_variant(self.run_id, name, kind=kind, parent=parent,
                                                            meta={**meta, "input_fingerprint": input_fp})

    def verify(self, name: str, timings: dict) -> dict:
        from .bundle import verify_bundle

        folder = self.folders[name]
        self.report(name, 0.88, f"saved {name}; reloading it in a fresh process")
        t = time.perf_counter()
        check = verify_bundle(folder)
        timings["verify_seconds"] = round(time.perf_counter() - t, 2)
        self.report(name, 0.92, f"{name}: reloads in a fresh process (max |Δlogit| {check['max_abs_diff']:.1e})")
        return check

    def finish(self, name: str, metrics: dict, timings: dict, check: dict) -> None:
        """Write the metrics into the bundle and mark the variant finished (one store transaction)."""
        from .bundle import read_meta, update_meta

        failpoint("variant.before-finish")  # bundle saved and verified, not yet recorded as finished
        params = read_meta(self.folders[name]).get("params", {})
        metrics = {**metrics, "params": params.get("total"), "nonzero_params": params.get("nonzero")}
        update_meta(self.folders[name], metrics=metrics, timings=timings)
        warnings = read_meta(self.folders[name]).get("warnings", [])  # shown by the Leaderboard and the advisor
        self.store.finish_variant(self.variant_ids[name], str(self.folders[name]), metrics=metrics,
                                  meta={"verify": check, "timings": timings, "warnings": warnings})
        self.report(name, 1.0, f"{name}: test accuracy {metrics['accuracy']:.4f}, "
                               f"agreement with teacher {metrics['agreement']:.4f}")

    def evaluate_and_finish(self, name: str, timings: dict, check: dict) -> None:
        from .bundle import load_bundle
        from .metrics import score

        t = time.perf_counter()
        bundle = load_bundle(self.folders[name])
        metrics = score(bundle, self.data.splits["test"], self.logits["test"]) | self.heldout_metrics(bundle)
        timings["evaluate_seconds"] = round(time.perf_counter() - t, 2)
        self.finish(name, metrics, timings, check)

    def heldout_metrics(self, bundle) -> dict[str, float]:
        """Accuracy (with its CI) on the reporting half of the selection set, when the data has one."""
        from .metrics import score

        if self.data.heldout is None:
            return {}
        found = score(bundle, self.data.heldout)
        keys = ("accuracy", "accuracy_ci_low", "accuracy_ci_high", "test_examples")
        return {f"heldout_{k.replace('test_', '')}": found[k] for k in keys}

    def clean(self, name: str) -> None:
        """Drop a stage's training checkpoints once every process is done with them."""
        self.procs.barrier()
        if self.procs.main:
            if name in self.stage_dirs:
                shutil.rmtree(self.stage_dirs[name], ignore_errors=True)


def build(recipe: Recipe, store: RunStore, data_dir: str | Path | None = None,
          progress: Progress = _quiet) -> int:
    """Build every stage of ``recipe`` into ``store``; return the run id. One build per store at a time."""
    procs = _Processes()
    with store.build_lock() if procs.main else contextlib.nullcontext():
        run_id = procs.share(store.start_run(recipe.name, recipe.to_dict()) if procs.main else None)
        b = _Build(recipe, store, None, procs, run_id, progress, _Plan(recipe))
        try:
            t0 = time.perf_counter()
            _data(b, data_dir)
            _intermediate_plan(b)
            _teacher_stage(b)
            _logits(b)
            for stage, cfg, parent in _steps(recipe):
                _variant(b, stage, cfg, parent)
            if recipe.bench is not None and procs.main:
                stages.bench(b)
            if procs.main:
                _finish_run(b)
            reused = f"; reused {len(b.reused)} unchanged variant(s)" if b.reused else ""
            b.report("done", 1, f"run {run_id} finished in {time.perf_counter() - t0:.1f} s{reused}")
            return run_id
        except BaseException as err:  # includes KeyboardInterrupt: the run must not look finished
            if procs.main:
                # e.g. the run had already finished, or the disk is full: keep the real error (a run left
                # 'running' is marked failed the next time the store opens)
                with contextlib.suppress(StoreError, sqlite3.Error, OSError):
                    store.fail_run(run_id, " ".join(str(err).split()) or type(err).__name__)
            raise


def _steps(recipe: Recipe):
    """(stage, step config, parent variant) for every variant after the teacher, in the order they are made."""
    yield from (("student", cfg, recipe.teacher.name) for cfg in recipe.students)
    yield from (("prune", cfg, cfg.source) for cfg in recipe.prune)
    yield from (("quantize", cfg, cfg.source) for cfg in recipe.quantize)


def _data(b: _Build, data_dir) -> None:
    from .data import load_data

    b.report("data", 0, f"loading data {b.recipe.data.source}")
    with b.procs.main_first():  # the datasets cache is written once
        b.data = load_data(b.recipe.data, base_dir=data_dir)
        b.report("data", 1, b.data.summary())
        if b.data.pair and b.recipe.augment is not None and b.recipe.augment.transfer:
            raise LabError(f"{b.recipe.data.source} is a pair task ({' + '.join(b.data.pair)}): a transfer set "
                           f"holds single texts; remove augment.transfer from the recipe (perturbed copies of the "
                           f"training pairs, augment.copies, work on pairs)")
        if b.recipe.augment is not None and b.recipe.augment.transfer:
            stages.transfer_texts(b, data_dir)


def _intermediate_plan(b: _Build) -> None:
    """Before anything trains: which students learn the teacher's cached first-token states (the logits pass then
    caches them too), and a refusal for any whose tokenizer cannot do what its recipe asks — rather than after a
    teacher fine-tune of many minutes. The student stage checks again on every training text (augmented ones too)."""
    from transformers import AutoTokenizer

    from .align import check_alignment
    from .distill import shares_tokenizer, state_layers
    from .sources import resolve_model

    wanted = [cfg for cfg in b.recipe.students if cfg.distill.intermediate and cfg.model is not None]
    if not wanted:
        return
    teacher = resolve_model(b.recipe.teacher.model)
    try:
        teacher_tokenizer = AutoTokenizer.from_pretrained(teacher, trust_remote_code=False)
    except OSError:
        return  # the teacher stage reports why the teacher cannot load
    for cfg in wanted:
        location = resolve_model(cfg.model)
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=False)
        if shares_tokenizer(tokenizer, teacher_tokenizer):
            continue
        if cfg.distill.attention_weight > 0:
            raise stages.attention_refusal(cfg)
        check_alignment(tokenizer, teacher_tokenizer, texts_of(b.data.splits["train"]), cfg.name)
        b.state_layers[cfg.name] = state_layers(cfg, teacher)
    b.cached_layers = sorted({layer for layers in b.state_layers.values() for layer in layers})


def _teacher_stage(b: _Build) -> None:
    teacher = b.recipe.teacher
    fp = fingerprint("teacher", dataclasses.asdict(teacher), b.data.fingerprint, b.recipe.seed,
                     code_digest(*TRAINING_CODE, "compression.sources"))
    if not b.reuse(teacher.name, "teacher", None, fp):
        b.start(teacher.name, "teacher", None, fp, {"source": teacher.model})
        stages.teacher(b)  # recorded finished here: a build stopped during the long logits stage keeps it
    b.clean(teacher.name)


def _logits(b: _Build) -> None:
    from .distill import states_cache_path, teacher_logits

    b.report("logits", 0, "teacher logits: computing or reading the cache")
    t = time.perf_counter()
    teacher = b.folders[b.recipe.teacher.name]
    with b.procs.main_first():  # main computes and caches; the others then read the cache
        known = {"test": b.teacher_test_logits} if b.teacher_test_logits is not None else None
        b.logits = teacher_logits(teacher, b.data, b.store.root / "cache",
                                  lambda f, m: b.report("logits", f, m, log=False), layers=b.cached_layers,
                                  known=known)
    states = ""
    if b.cached_layers:
        path = states_cache_path(teacher, texts_of(b.data.splits["train"]), b.cached_layers, b.store.root / "cache")
        states = f"; first-token states at layers {b.cached_layers}: {path.stat().st_size / 1e6:,.1f} MB on disk"
    b.report("logits", 1, f"teacher logits ready ({time.perf_counter() - t:.1f} s){states}")


def _augment_key(b: _Build) -> list:
    """What augmentation adds to a training stage's fingerprint; nothing for recipes without it, so they keep the
    fingerprints they had before it existed."""
    key = [b.recipe.augment.key()] if b.recipe.augment is not None else []
    if b.transfer_texts is not None:  # the transfer set's content, not just its name
        key.append(hashlib.sha256("\x1d".join(b.transfer_texts).encode()).hexdigest())
    return key


def step_fingerprint(b: _Build, stage: str, cfg, parent: str) -> str:
    """A variant's input: its step, its parent's bundle content, the data, the seed, the teacher and augmentation
    when it trains, and the code that makes it (its technique's module and what that imports, the metrics)."""
    technique = techniques.get(cfg.init if stage == "student" else cfg.method, stage)
    trains = stage == "student" or getattr(cfg, "recover", None) is not None
    parts = [stage, dataclasses.asdict(cfg), b.bundle_fingerprint(parent), b.data.fingerprint]
    if stage != "quantize":
        parts += [b.bundle_fingerprint(b.recipe.teacher.name), b.recipe.seed]
    parts += _augment_key(b) if trains else []
    parts += [technique.machine_key(cfg)] if technique.machine_key is not None else []
    return fingerprint(*parts, technique_code(technique, trains))


def technique_code(technique, trains: bool) -> str:
    """The digest of the code that makes a technique's variants: its module and what that imports (for an
    operator's plugin outside the package, its own file), the metrics, and the training code when it trains."""
    import importlib.util

    inside = technique.module.startswith("compression.")
    digest = code_digest(technique.module if inside else "compression.techniques", "compression.metrics",
                         *(TRAINING_CODE if trains else ()))
    if inside:
        return digest
    origin = importlib.util.find_spec(technique.module).origin
    return digest + hashlib.sha256(Path(origin).read_bytes()).hexdigest()[:16]


def _variant(b: _Build, stage: str, cfg, parent: str) -> None:
    """Reuse an unchanged variant, or make, save, verify, evaluate and record it."""
    kind = {"student": "student", "prune": "pruned", "quantize": "quantized"}[stage]
    fp = step_fingerprint(b, stage, cfg, parent)
    if not b.reuse(cfg.name, kind, parent, fp):
        meta = {"init": cfg.init, "source": cfg.model} if stage == "student" else {"method": cfg.method}
        b.start(cfg.name, kind, parent, fp, meta)
        if stage == "student":
            stages.student(b, cfg)
        elif stage == "prune":
            stages.prune(b, cfg)
        elif b.procs.main:  # quantizing trains nothing: one process is enough
            stages.quantize(b, cfg)
    b.clean(cfg.name)


def _finish_run(b: _Build) -> None:
    b.store.finish_run(b.run_id)
    for folder in b.stage_dirs.values():  # only this build's: another recipe's checkpoints stay
        shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        b.work_dir.rmdir()  # when empty
