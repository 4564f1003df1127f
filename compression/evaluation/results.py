"""Results as people see them: one row per variant, from run-store records. Shared by the CLI and the dashboard."""

from __future__ import annotations

from pathlib import Path

from compression.bundle.meta import bundle_bytes, bundle_problem
from compression.core.errors import LabError


def variant_row(v) -> dict:
    """One variant as the CLI, the JSON output and the dashboard show it."""

    m = v.metrics
    problem = bundle_problem(v.bundle)
    size = m.get("size_bytes")
    if size is None and v.bundle and Path(v.bundle).is_dir():
        size = bundle_bytes(v.bundle)
    provenance = v.metric_details.get("latency_p50_ms") or None
    return {"name": v.name, "kind": v.kind, "parent": v.parent, "method": v.meta.get("method") or v.meta.get("init"),
            "run": v.run_id, "accuracy": m.get("accuracy"),
            "accuracy_ci": [m.get("accuracy_ci_low"), m.get("accuracy_ci_high")],
            "f1": m.get("f1"), "agreement": m.get("agreement"), "ece": m.get("ece"),
            # McNemar's exact test against the teacher on the same test items: is the change more than noise?
            "mcnemar_p_vs_teacher": m.get("mcnemar_p_vs_teacher"),
            # the reporting half of the recipe's selection set, when it has one (the held-out figure)
            "heldout_accuracy": m.get("heldout_accuracy"),
            "heldout_accuracy_ci": [m.get("heldout_accuracy_ci_low"), m.get("heldout_accuracy_ci_high")],
            "size_mb": round(size / 1e6, 3) if size is not None else None,
            "params": _int(m.get("params")), "nonzero_params": _int(m.get("nonzero_params")),
            "latency_p50_ms": m.get("latency_p50_ms"), "latency_p95_ms": m.get("latency_p95_ms"),
            "throughput": m.get("throughput"), "cpu_seconds_per_1000": m.get("cpu_seconds_per_1000"),
            "peak_memory_mb": m.get("peak_memory_mb"), "resident_memory_mb": m.get("resident_memory_mb"),
            "speedup_p50": m.get("speedup_p50"),
            "compression": m.get("compression"), "warnings": v.meta.get("warnings", []),
            "bundle": v.bundle, "status": f"broken: {problem}" if problem else "ok", "provenance": provenance,
            "metrics": m}


def run_predictions(store, names: list[str | None], run: str = "latest") -> list[tuple[str, object]]:
    """(name, test predictions) of variants of one run (the run :func:`current_variants` picks); None names the
    run's teacher. LabError names the variants there are; the store's NoPredictions when it kept none."""
    variants = current_variants(store, run)
    ids = {v.name: v.id for v in variants}
    teacher = next((v.name for v in variants if v.kind == "teacher"), None)
    wanted = [name or teacher for name in names]
    unknown = next((name for name in wanted if name not in ids), None)
    if unknown is not None or not wanted:
        raise LabError(f"no finished variant {unknown!r} in run {run} of {store.root} (known: {', '.join(ids)})")
    return [(name, store.predictions(ids[name])) for name in wanted]


def current_variants(store, run: str = "latest") -> list:
    """The variants to show together: one run's, so ratios and agreement compare like with like.

    ``latest``: the newest finished run (else the newest run with finished variants); a run id; or ``all`` (the
    newest variant of every name, across runs).
    """
    if run == "all":
        return store.variants()
    finished = store.variants(status="finished", latest_only=False)
    run_ids = {v.run_id for v in finished}
    if run != "latest":
        if not run.isdigit() or int(run) not in run_ids:
            raise LabError(f"run {run!r} has no finished variants (runs with some: "
                           f"{', '.join(map(str, sorted(run_ids))) or 'none'})")
        chosen = int(run)
    elif not run_ids:
        return []
    else:
        complete = [r["id"] for r in store.runs() if r["status"] == "finished" and r["id"] in run_ids]
        chosen = max(complete) if complete else max(run_ids)
    return [v for v in finished if v.run_id == chosen]


def _int(value):
    return int(value) if value is not None else None
