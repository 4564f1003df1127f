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
import shutil
import sqlite3
import time
from pathlib import Path

from compression.builder import stages
from compression.builder.state import BuildState, Processes, Progress, ProgressPlan, _quiet
from compression.core import registry as techniques
from compression.core.config import Recipe
from compression.core.digest import code_digest, fingerprint
from compression.core.errors import LabError
from compression.core.texts import texts_of
from compression.data.align import check_alignment
from compression.data.loading import load_data
from compression.data.sources import resolve_model
from compression.store.predictions import TestSplit
from compression.store.run_store import RunStore, StoreError

TRAINING_CODE = ("compression.training.distill",)  # what every training stage runs: the Trainer, losses, data


def build(recipe: Recipe, store: RunStore, data_dir: str | Path | None = None,
          progress: Progress = _quiet) -> int:
    """Build every stage of ``recipe`` into ``store``; return the run id. One build per store at a time."""
    procs = Processes()
    with store.build_lock() if procs.main else contextlib.nullcontext():
        run_id = procs.share(store.start_run(recipe.name, recipe.to_dict()) if procs.main else None)
        b = BuildState(recipe=recipe, store=store, procs=procs, run_id=run_id, progress=progress,
                       plan=ProgressPlan(recipe))
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


def _data(b: BuildState, data_dir) -> None:
    b.report("data", 0, f"loading data {b.recipe.data.source}")
    with b.procs.main_first():  # the datasets cache is written once
        b.data = load_data(b.recipe.data, base_dir=data_dir)
        b.report("data", 1, b.data.summary())
        if b.data.pair and b.recipe.augment is not None and b.recipe.augment.transfer:
            raise LabError(f"{b.recipe.data.source} is a pair task ({' + '.join(b.data.pair)}): a transfer set "
                           f"holds single texts; remove augment.transfer from the recipe (perturbed copies of the "
                           f"training pairs, augment.copies, work on pairs)")
        if not b.data.pair and b.recipe.augment is not None and b.recipe.augment.swap:
            raise LabError(f"{b.recipe.data.source} holds single texts: augment.swap reorders the two texts of a "
                           f"pair; remove it from the recipe")
        if b.recipe.augment is not None and b.recipe.augment.transfer:
            stages.transfer_texts(b, data_dir)
    if b.procs.main:  # the examples every variant's test predictions refer to, kept once per data digest
        test = b.data.splits["test"]
        b.store.record_split(TestSplit(b.data.fingerprint, list(b.data.labels), list(test["label"]),
                                       [list(t) if isinstance(t, tuple) else t for t in texts_of(test)]))


def _intermediate_plan(b: BuildState) -> None:
    """Before anything trains: which students learn the teacher's cached first-token states (the logits pass then
    caches them too), and a refusal for any whose tokenizer cannot do what its recipe asks — rather than after a
    teacher fine-tune of many minutes. The student stage checks again on every training text (augmented ones too)."""
    from transformers import AutoTokenizer

    from compression.training.distill import shares_tokenizer, state_layers

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
        b.cached_tokens = b.cached_tokens or cfg.distill.hidden_positions == "tokens"
    b.cached_layers = sorted({layer for layers in b.state_layers.values() for layer in layers})


def _teacher_stage(b: BuildState) -> None:
    teacher = b.recipe.teacher
    fp = fingerprint("teacher", dataclasses.asdict(teacher), b.data.fingerprint, b.recipe.seed,
                     code_digest(*TRAINING_CODE, "compression.data.sources"))
    if not b.reuse(teacher.name, "teacher", None, fp):
        b.start(teacher.name, "teacher", None, fp, {"source": teacher.model})
        stages.teacher(b)  # recorded finished here: a build stopped during the long logits stage keeps it
    b.clean(teacher.name)


def _logits(b: BuildState) -> None:
    from compression.training.teacher_targets import states_cache_path, teacher_logits

    b.report("logits", 0, "teacher logits: computing or reading the cache")
    t = time.perf_counter()
    teacher = b.folders[b.recipe.teacher.name]
    with b.procs.main_first():  # main computes and caches; the others then read the cache
        known = {"test": b.teacher_test_logits} if b.teacher_test_logits is not None else None
        b.logits = teacher_logits(teacher, b.data, b.store.root / "cache",
                                  lambda f, m: b.report("logits", f, m, log=False), layers=b.cached_layers,
                                  known=known, tokens=b.cached_tokens)
    states = ""
    if b.cached_layers:
        path = states_cache_path(teacher, texts_of(b.data.splits["train"]), b.cached_layers, b.store.root / "cache",
                                 b.cached_tokens)
        size = sum(f.stat().st_size for f in path.iterdir()) if path.is_dir() else path.stat().st_size
        which = "every token's" if b.cached_tokens else "first-token"
        states = (f"; {which} states at layers {b.cached_layers}: "
                  f"{size / 1e6:,.1f} MB on disk (fp16)")
    b.report("logits", 1, f"teacher logits ready ({time.perf_counter() - t:.1f} s){states}")


def _augment_key(b: BuildState) -> list:
    """What augmentation adds to a training stage's fingerprint; nothing for recipes without it, so they keep the
    fingerprints they had before it existed."""
    key = [b.recipe.augment.key()] if b.recipe.augment is not None else []
    if b.transfer_texts is not None:  # the transfer set's content, not just its name
        key.append(hashlib.sha256("\x1d".join(b.transfer_texts).encode()).hexdigest())
    return key


def step_fingerprint(b: BuildState, stage: str, cfg, parent: str) -> str:
    """A variant's input: its step, its parent's bundle content, the data, the seed, the teacher and augmentation
    when it trains, and the code that makes it (its technique's module and what that imports, the metrics)."""
    technique = techniques.get(cfg.init if stage == "student" else cfg.method, stage)
    trains = stage == "student" or getattr(cfg, "recover", None) is not None
    parts = [stage, cfg.to_dict(), b.bundle_fingerprint(parent), b.data.fingerprint]
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
    digest = code_digest(technique.module if inside else "compression.techniques", "compression.evaluation.metrics",
                         *(TRAINING_CODE if trains else ()))
    if inside:
        return digest
    origin = importlib.util.find_spec(technique.module).origin
    return digest + hashlib.sha256(Path(origin).read_bytes()).hexdigest()[:16]


def _variant(b: BuildState, stage: str, cfg, parent: str) -> None:
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


def _finish_run(b: BuildState) -> None:
    b.store.finish_run(b.run_id)
    for folder in b.stage_dirs.values():  # only this build's: another recipe's checkpoints stay
        shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        b.work_dir.rmdir()  # when empty
