"""Run a recipe end to end: data → teacher → teacher logits → students → bundles → reload check → evaluation → store.

Progress goes to a callback ``progress(fraction, message)`` so the CLI (tqdm) and the dashboard (gr.Progress) show
the same stages. A variant is recorded as finished only after its bundle reloaded in a fresh process.

Under ``torchrun`` / ``accelerate launch`` every process runs this function: all of them train (the Trainer
synchronises them), and only the main process writes bundles and touches the store.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from .config import Recipe
from .store import RunStore

Progress = Callable[[float, str], None]


def _quiet(fraction: float, message: str) -> None:
    pass


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
                        **{s.name: 5 for s in recipe.students},
                        **{p.name: 3 if p.recover else 1 for p in recipe.prune},
                        **{q.name: 1 for q in recipe.quantize}}
        self.total = sum(self.weights.values())

    def fraction(self, stage: str, within: float) -> float:
        done = 0
        for name, weight in self.weights.items():
            if name == stage:
                return (done + weight * min(max(within, 0.0), 1.0)) / self.total
            done += weight
        return 1.0


def build(recipe: Recipe, store: RunStore, data_dir: str | Path | None = None,
          progress: Progress = _quiet) -> int:
    """Build every stage of ``recipe`` into ``store``; return the run id. One build per store at a time."""
    from .data import load_data
    from .metrics import score_logits

    procs = _Processes()
    plan = _Plan(recipe)
    with store.build_lock() if procs.main else contextlib.nullcontext():
        run_id = procs.share(store.start_run(recipe.name, recipe.to_dict()) if procs.main else None)
        run_dir = store.artifacts_dir / f"run-{run_id}"
        work_dir = store.root / "work" / f"run-{run_id}"

        def report(stage: str, within: float, message: str, log: bool = True) -> None:
            if procs.main:
                if log:
                    store.log(run_id, message, stage=stage)
                progress(plan.fraction(stage, within), message)

        try:
            t0 = time.perf_counter()
            report("data", 0, f"loading data {recipe.data.source}")
            with procs.main_first():  # the datasets cache is written once
                data = load_data(recipe.data, base_dir=data_dir)
            report("data", 1, data.summary())

            teacher_dir = run_dir / recipe.teacher.name
            teacher = _teacher(recipe, data, teacher_dir, work_dir, store, run_id, procs, report)
            procs.barrier()
            if procs.main:  # training checkpoints served their purpose once every process is done
                shutil.rmtree(work_dir / recipe.teacher.name, ignore_errors=True)

            report("logits", 0, "teacher logits: computing or reading the cache")
            t = time.perf_counter()
            with procs.main_first():  # main computes and caches; the others then read the cache
                logits = _logits(teacher_dir, data, store, lambda f, m: report("logits", f, m, log=False))
            report("logits", 1, f"teacher logits ready ({time.perf_counter() - t:.1f} s)")
            if procs.main:  # the teacher's test metrics come from its logits: no second pass over the test split
                variant_id, timings, check = teacher
                timings["evaluate_seconds"] = round(time.perf_counter() - t, 2)
                _finish(store, variant_id, teacher_dir, score_logits(logits["test"], data.splits["test"]["label"]),
                        timings, check, report, "logits")

            for student in recipe.students:
                _student(recipe, student, data, logits, teacher_dir, run_dir, work_dir, store, run_id, procs, report)
                procs.barrier()
                if procs.main:
                    shutil.rmtree(work_dir / student.name, ignore_errors=True)

            for step in recipe.prune:
                _prune(recipe, step, data, logits, run_dir, work_dir, store, run_id, procs, report)
                procs.barrier()
                if procs.main:
                    shutil.rmtree(work_dir / step.name, ignore_errors=True)

            for step in recipe.quantize:
                if procs.main:  # no training: one process is enough
                    _quantize(step, data, logits, run_dir, work_dir, store, run_id, report)
                procs.barrier()

            if procs.main:
                store.finish_run(run_id)
                shutil.rmtree(work_dir, ignore_errors=True)
            report("done", 1, f"run {run_id} finished in {time.perf_counter() - t0:.1f} s")
            return run_id
        except BaseException as err:  # includes KeyboardInterrupt: the run must not look finished
            if procs.main:
                store.fail_run(run_id, " ".join(str(err).split()) or type(err).__name__)
            raise


def _logits(teacher_dir, data, store, progress):
    from .distill import teacher_logits

    return teacher_logits(teacher_dir, data, store.root / "cache", progress)


def _verify(folder: Path, timings: dict, report, stage: str) -> dict:
    """Reload the bundle in a fresh process and check its probe predictions; raises if they differ."""
    from .bundle import verify_bundle

    report(stage, 0.88, f"saved {folder.name}; reloading it in a fresh process")
    t = time.perf_counter()
    check = verify_bundle(folder)
    timings["verify_seconds"] = round(time.perf_counter() - t, 2)
    report(stage, 0.92, f"{folder.name}: reloads in a fresh process (max |Δlogit| {check['max_abs_diff']:.1e})")
    return check


def _finish(store: RunStore, variant_id: int, folder: Path, metrics: dict, timings: dict, check: dict,
            report, stage: str) -> None:
    """Write the metrics into the bundle and mark the variant finished (one store transaction)."""
    from .bundle import update_meta

    update_meta(folder, metrics=metrics, timings=timings)
    store.finish_variant(variant_id, str(folder), metrics=metrics, meta={"verify": check, "timings": timings})
    report(stage, 1.0, f"{folder.name}: test accuracy {metrics['accuracy']:.4f}, "
                       f"agreement with teacher {metrics['agreement']:.4f}")


def _teacher(recipe, data, folder, work_dir, store, run_id, procs, report):
    """Load (and fine-tune) the teacher, save and verify it; returns (variant id, timings, check) on main."""
    from .bundle import save_bundle
    from .distill import tokenize, train
    from .sources import load_tokenizer_and_model

    cfg = recipe.teacher
    variant_id = store.add_variant(run_id, cfg.name, kind="teacher", meta={"source": cfg.model}) if procs.main else None
    report("teacher", 0, f"loading teacher {cfg.model}")
    tokenizer, model = load_tokenizer_and_model(cfg.model, data.labels)
    timings = {}
    if cfg.train is not None:
        t = time.perf_counter()
        model = train(model, tokenizer, tokenize(data, tokenizer, cfg.max_length), cfg.train,
                      work_dir / cfg.name, recipe.seed, cfg.name,
                      progress=lambda f, m: report("teacher", 0.05 + 0.8 * f, m, log=m.find("validation") >= 0))
        timings["train_seconds"] = round(time.perf_counter() - t, 2)
    if not procs.main:
        return None
    step = {"stage": "teacher", "model": cfg.model, "max_length": cfg.max_length,
            "train": cfg.train.__dict__ if cfg.train else None}
    save_bundle(model, tokenizer, folder, name=cfg.name, kind="teacher", labels=data.labels,
                max_length=cfg.max_length, step=step,
                extra={"source": cfg.model, "data": {"source": data.source, "fingerprint": data.fingerprint}})
    return variant_id, timings, _verify(folder, timings, report, "teacher")


def _student(recipe, cfg, data, logits, teacher_dir, run_dir, work_dir, store, run_id, procs, report) -> None:
    import dataclasses

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .bundle import save_bundle
    from .distill import build_student, shares_tokenizer, tokenize, train
    from .errors import LabError

    parent = recipe.teacher.name
    variant_id = (store.add_variant(run_id, cfg.name, kind="student", parent=parent,
                                    meta={"init": cfg.init, "source": cfg.model}) if procs.main else None)
    report(cfg.name, 0, f"{cfg.name}: building student ({cfg.init}{' of ' + cfg.model if cfg.model else ''})")
    tokenizer, model = build_student(cfg, teacher_dir, data.labels)
    teacher_model = None
    if cfg.distill.intermediate:
        teacher_tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
        if not shares_tokenizer(tokenizer, teacher_tokenizer):
            raise LabError(f"{cfg.name}: hidden-state/attention distillation needs the teacher's tokenizer, and "
                           f"{cfg.model} tokenizes differently; set distill.hidden_weight and attention_weight to 0 "
                           f"(logit distillation works across tokenizers)")
        teacher_model = AutoModelForSequenceClassification.from_pretrained(teacher_dir, use_safetensors=True)
    t = time.perf_counter()
    model = train(model, tokenizer, tokenize(data, tokenizer, cfg.max_length, logits), cfg.train,
                  work_dir / cfg.name, recipe.seed, cfg.name, distill=cfg.distill, teacher_model=teacher_model,
                  progress=lambda f, m: report(cfg.name, 0.05 + 0.8 * f, m, log=m.find("validation") >= 0))
    timings = {"train_seconds": round(time.perf_counter() - t, 2)}
    if not procs.main:
        return
    step = {"stage": "student", **dataclasses.asdict(cfg)}
    save_bundle(model, tokenizer, run_dir / cfg.name, name=cfg.name, kind="student", labels=data.labels,
                max_length=cfg.max_length, parent=parent, step=step,
                extra={"data": {"source": data.source, "fingerprint": data.fingerprint}})
    check = _verify(run_dir / cfg.name, timings, report, cfg.name)
    _evaluate_and_finish(store, variant_id, run_dir / cfg.name, data, logits, timings, check, report, cfg.name)


def _evaluate_and_finish(store, variant_id, folder, data, logits, timings, check, report, stage) -> None:
    from .bundle import load_bundle
    from .metrics import score

    t = time.perf_counter()
    metrics = score(load_bundle(folder), data.splits["test"], logits["test"])
    timings["evaluate_seconds"] = round(time.perf_counter() - t, 2)
    _finish(store, variant_id, folder, metrics, timings, check, report, stage)


def _fp32_source(folder: Path):
    from .bundle import load_bundle
    from .errors import LabError

    source = load_bundle(folder)
    weights = source.meta.get("weights", {})
    if weights.get("format") == "onnx" or weights.get("quantization") or weights.get("dtype") in ("bfloat16",
                                                                                                  "float16"):
        raise LabError(f"{folder.name} is already quantized; prune or quantize an fp32 variant")
    return source


def _prune(recipe, cfg, data, logits, run_dir, work_dir, store, run_id, procs, report) -> None:
    import dataclasses

    from torch.utils.data import DataLoader

    from .bundle import save_bundle
    from .distill import Collator, keep_layers, tokenize, train
    from .prune import magnitude_prune, make_permanent, sparsity_report, structured_prune

    variant_id = (store.add_variant(run_id, cfg.name, kind="pruned", parent=cfg.source, meta={"method": cfg.method})
                  if procs.main else None)
    report(cfg.name, 0, f"{cfg.name}: {cfg.method} pruning of {cfg.source}")
    source = _fp32_source(run_dir / cfg.source)
    model, tokenizer = source.model.train(), source.tokenizer
    dataset = tokenize(data, tokenizer, source.max_length, logits)
    timings, details = {}, {}
    t = time.perf_counter()
    if cfg.method == "magnitude":
        magnitude_prune(model, threshold=cfg.threshold, sparsity=cfg.sparsity, patterns=cfg.targets)
    else:
        if cfg.drop_layers:
            model = keep_layers(model, [i for i in range(model.config.num_hidden_layers) if i not in cfg.drop_layers])
            details["layers_dropped"] = sorted(cfg.drop_layers)
        if cfg.heads > 0 or cfg.ffn > 0:
            loader = DataLoader(dataset["validation"], batch_size=16, collate_fn=Collator(tokenizer))
            batches = [b for _, b in zip(range(cfg.importance_batches), loader)]
            details.update(structured_prune(model, batches, heads=cfg.heads, ffn=cfg.ffn))
    timings["prune_seconds"] = round(time.perf_counter() - t, 2)
    if cfg.recover is not None:
        t = time.perf_counter()
        model = train(model, tokenizer, dataset, cfg.recover, work_dir / cfg.name, recipe.seed, cfg.name,
                      distill=cfg.distill,
                      progress=lambda f, m: report(cfg.name, 0.05 + 0.8 * f, m, log=m.find("validation") >= 0))
        timings["train_seconds"] = round(time.perf_counter() - t, 2)
    make_permanent(model)
    if not procs.main:
        return
    sparsity = sparsity_report(model, cfg.targets)
    report(cfg.name, 0.86, f"{cfg.name}: sparsity {sparsity['overall']:.1%} of the selected weights; "
                           f"{sparsity['nonzero_params']:,} of {sparsity['params']:,} parameters non-zero")
    folder = run_dir / cfg.name
    save_bundle(model, tokenizer, folder, name=cfg.name, kind="pruned", labels=data.labels,
                max_length=source.max_length, parent=cfg.source, step={"stage": "prune", **dataclasses.asdict(cfg)},
                extra={"pruning": {**details, "sparsity": sparsity},
                       "data": {"source": data.source, "fingerprint": data.fingerprint}})
    check = _verify(folder, timings, report, cfg.name)
    _evaluate_and_finish(store, variant_id, folder, data, logits, timings, check, report, cfg.name)


def _quantize(cfg, data, logits, run_dir, work_dir, store, run_id, report) -> None:
    import dataclasses

    from .bundle import save_bundle
    from .quantize import FP16_CPU_WARNING, export_onnx, onnx_int8, quantize

    variant_id = store.add_variant(run_id, cfg.name, kind="quantized", parent=cfg.source, meta={"method": cfg.method})
    report(cfg.name, 0, f"{cfg.name}: {cfg.method} of {cfg.source}")
    source = _fp32_source(run_dir / cfg.source)
    folder, timings = run_dir / cfg.name, {}
    common = dict(name=cfg.name, kind="quantized", labels=data.labels, max_length=source.max_length,
                  parent=cfg.source, step={"stage": "quantize", **dataclasses.asdict(cfg)},
                  extra={"data": {"source": data.source, "fingerprint": data.fingerprint}})
    t = time.perf_counter()
    if cfg.method.startswith("onnx"):
        work_dir.mkdir(parents=True, exist_ok=True)
        onnx_file = export_onnx(source.model, source.tokenizer, work_dir / f"{cfg.name}.fp32.onnx")
        if cfg.method == "onnx-int8":
            onnx_file = onnx_int8(onnx_file, work_dir / f"{cfg.name}.int8.onnx")
        timings["quantize_seconds"] = round(time.perf_counter() - t, 2)
        save_bundle(source.model, source.tokenizer, folder, onnx_file=onnx_file, **common)
    else:
        int8_embeddings = cfg.method == "dynamic-int8" and cfg.int8_embeddings
        model = quantize(source.model, cfg.method, int8_embeddings=int8_embeddings)
        timings["quantize_seconds"] = round(time.perf_counter() - t, 2)
        save_bundle(model, source.tokenizer, folder, int8_embeddings=int8_embeddings,
                    warnings=[FP16_CPU_WARNING] if cfg.method == "fp16" else [], **common)
    check = _verify(folder, timings, report, cfg.name)
    _evaluate_and_finish(store, variant_id, folder, data, logits, timings, check, report, cfg.name)
