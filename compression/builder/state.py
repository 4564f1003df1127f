"""The state one build shares between its stages (:class:`BuildState`), its progress plan and its distributed
processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from compression.bundle.folder import load_bundle
from compression.bundle.meta import bundle_digest, bundle_problem, read_meta, update_meta
from compression.bundle.verify import verify_bundle, verify_mode
from compression.core.config import Recipe
from compression.core.errors import failpoint
from compression.core.texts import texts_of
from compression.evaluation.metrics import score, score_logits

if TYPE_CHECKING:
    import numpy as np

    from compression.data.loading import LabeledData
    from compression.store.run_store import RunStore

Progress = Callable[[float, str], None]


def _quiet(fraction: float, message: str) -> None:
    pass


class Processes:
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


class ProgressPlan:
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


@dataclass(eq=False)
class BuildState:
    """What the stages of one build share: the recipe, the store, the data and the teacher's targets, and the
    variants made so far. Stages read it and add what they make; only the main process writes the store."""

    recipe: Recipe
    store: RunStore
    procs: Processes
    run_id: int
    progress: Progress
    plan: ProgressPlan
    data: LabeledData | None = None
    folders: dict[str, Path] = field(default_factory=dict)  # variant name -> bundle folder
    variant_ids: dict[str, int] = field(default_factory=dict)  # variant name -> store id in this run
    stage_dirs: dict[str, Path] = field(default_factory=dict)  # variant name -> checkpoints, by input fingerprint
    reused: set[str] = field(default_factory=set)
    logits: dict[str, np.ndarray] | None = None  # the teacher's logits per split
    teacher_test_logits: np.ndarray | None = None  # from the teacher's evaluation, when it was built in this run
    state_layers: dict[str, list[int]] = field(default_factory=dict)  # student -> teacher layers it learns states of
    cached_layers: list[int] = field(default_factory=list)  # the teacher layers whose states are cached
    cached_tokens: bool = False  # every token's states cached (a student asks for hidden_positions: tokens)
    extra_texts: list[list] = field(default_factory=list)  # augmented, transfer texts: the parts after train
    train_data: LabeledData | None = None  # what distillation trains on: the data plus augmented texts
    train_logits: dict[str, np.ndarray] | None = None
    transfer_texts: list[str] | None = None  # the transfer set's new texts, when the recipe has one

    @property
    def run_dir(self) -> Path:
        return self.store.artifacts_dir / f"run-{self.run_id}"

    @property
    def work_dir(self) -> Path:
        """Training checkpoints, per stage input: a rerun resumes from them."""
        return self.store.root / "work"

    def report(self, stage: str, within: float, message: str, log: bool = True) -> None:
        if self.procs.main:
            if log:
                self.store.log(self.run_id, message, stage=stage)
            self.progress(self.plan.fraction(stage, within), message)

    def trainer_progress(self, stage: str):
        return lambda f, m: self.report(stage, 0.05 + 0.8 * f, m, log="validation" in m or "resuming" in m)

    def bundle_fingerprint(self, name: str) -> str:
        return bundle_digest(self.folders[name])

    def reuse(self, name: str, kind: str, parent: str | None, input_fp: str) -> bool:
        """Reuse a finished variant with the same input fingerprint and an intact bundle; True when reused."""

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
                                          details=found.metric_details, predictions=found.id)
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
        folder = self.folders[name]
        where = "a fresh process" if verify_mode() == "fresh-process" else "this process (COMPRESSION_LAB_VERIFY)"
        self.report(name, 0.88, f"saved {name}; reloading it in {where}")
        t = time.perf_counter()
        check = verify_bundle(folder)
        timings["verify_seconds"] = round(time.perf_counter() - t, 2)
        where = "a fresh process" if check["process"] == "fresh-process" else "this process"
        self.report(name, 0.92, f"{name}: reloads in {where} (max |Δlogit| {check['max_abs_diff']:.1e})")
        return check

    def finish(self, name: str, metrics: dict, timings: dict, check: dict, test_logits) -> None:
        """Write the metrics into the bundle and mark the variant finished with its test predictions (one store
        transaction)."""
        from compression.evaluation.inspection import softmax  # numpy: kept off the light import path

        failpoint("variant.before-finish")  # bundle saved and verified, not yet recorded as finished
        params = read_meta(self.folders[name]).get("params", {})
        metrics = {**metrics, "params": params.get("total"), "nonzero_params": params.get("nonzero")}
        update_meta(self.folders[name], metrics=metrics, timings=timings)
        warnings = read_meta(self.folders[name]).get("warnings", [])  # shown by the Leaderboard and the advisor
        self.store.finish_variant(self.variant_ids[name], str(self.folders[name]), metrics=metrics,
                                  meta={"verify": check, "timings": timings, "warnings": warnings},
                                  predictions=(self.data.fingerprint, softmax(test_logits).tolist()))
        self.report(name, 1.0, f"{name}: test accuracy {metrics['accuracy']:.4f}, "
                               f"agreement with teacher {metrics['agreement']:.4f}")

    def evaluate_and_finish(self, name: str, timings: dict, check: dict) -> None:
        t = time.perf_counter()
        bundle, test = load_bundle(self.folders[name]), self.data.splits["test"]
        logits = bundle.logits(texts_of(test), batch_size=64)
        metrics = score_logits(logits, test["label"], self.logits["test"]) | self.heldout_metrics(bundle)
        timings["evaluate_seconds"] = round(time.perf_counter() - t, 2)
        self.finish(name, metrics, timings, check, logits)

    def heldout_metrics(self, bundle) -> dict[str, float]:
        """Accuracy (with its CI) on the reporting half of the selection set, when the data has one."""

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
