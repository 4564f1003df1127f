"""Run a recipe end to end: data → teacher → bundle → reload check → evaluation → run store.

Progress goes to a callback ``progress(fraction, message)`` so the CLI (tqdm) and the dashboard (gr.Progress)
show the same stages. A variant is recorded as finished only after its bundle reloaded in a fresh process.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from .config import Recipe
from .store import RunStore

Progress = Callable[[float, str], None]


def _quiet(fraction: float, message: str) -> None:
    pass


def build(recipe: Recipe, store: RunStore, data_dir: str | Path | None = None,
          progress: Progress = _quiet) -> int:
    """Build every stage of ``recipe`` into ``store``; return the run id. One build per store at a time."""
    from .bundle import load_bundle, save_bundle, update_meta, verify_bundle
    from .data import load_data
    from .metrics import score
    from .sources import load_tokenizer_and_model

    with store.build_lock():
        run_id = store.start_run(recipe.name, recipe.to_dict())
        try:
            def stage(fraction: float, message: str, name: str) -> None:
                store.log(run_id, message, stage=name)
                progress(fraction, message)

            t0 = time.perf_counter()
            stage(0.0, f"loading data {recipe.data.source}", "data")
            data = load_data(recipe.data, base_dir=data_dir)
            stage(0.2, data.summary(), "data")

            teacher = recipe.teacher
            stage(0.25, f"loading teacher {teacher.model}", "teacher")
            tokenizer, model = load_tokenizer_and_model(teacher.model, data.labels)
            variant_id = store.add_variant(run_id, teacher.name, kind="teacher", parent=None,
                                           meta={"source": teacher.model, "data": data.source})
            folder = store.artifacts_dir / f"run-{run_id}" / teacher.name
            step = {"stage": "teacher", **teacher.__dict__}
            save_bundle(model, tokenizer, folder, name=teacher.name, kind="teacher", labels=data.labels,
                        max_length=teacher.max_length, step=step,
                        extra={"source": teacher.model, "data": {"source": data.source,
                                                                  "fingerprint": data.fingerprint}})
            stage(0.5, f"saved {teacher.name}; reloading it in a fresh process", "teacher")
            check = verify_bundle(folder)
            stage(0.7, f"{teacher.name} reloads (max |Δlogit| {check['max_abs_diff']:.2e}); evaluating on test",
                  "evaluate")
            metrics = score(load_bundle(folder), data.splits["test"], progress=True)
            update_meta(folder, metrics=metrics)
            store.finish_variant(variant_id, str(folder), metrics=metrics, meta={"verify": check})
            store.finish_run(run_id)
            stage(1.0, f"run {run_id} finished in {time.perf_counter() - t0:.1f} s", "done")
            return run_id
        except BaseException as err:  # includes KeyboardInterrupt: the run must not look finished
            store.fail_run(run_id, str(err) or type(err).__name__)
            raise
