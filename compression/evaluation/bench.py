"""Benchmarks with provenance: batch-1 latency on real test sentences, throughput, peak memory, size, parameters.

Several bundles are measured in ONE run, interleaved round by round, so a slow spell of the machine hits all of
them alike; ratios are taken against the first bundle (the teacher). Every result carries where it came from:
CPU model and ISA flags, threads, library versions, data split, sequence lengths, repeats, and how busy the rest
of the machine was while we measured (on 2 cores any other process inflates timings several-fold).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from compression.bundle.folder import load_bundle
from compression.bundle.meta import bundle_bytes
from compression.core.child_env import child_env
from compression.core.config import BenchConfig
from compression.core.hardware import cpu_info, package_versions
from compression.core.texts import encode

Progress = Callable[[float, str], None]
# The figures of a benchmark result that the store keeps as a variant's metrics (see ``record``).
BENCH_METRICS = ("latency_p50_ms", "latency_p95_ms", "latency_mean_ms", "throughput", "cpu_seconds_per_1000",
                 "peak_memory_mb", "resident_memory_mb", "load_seconds", "size_bytes", "params", "nonzero_params",
                 "speedup_p50", "compression", "throughput_ratio")


def _system_jiffies() -> tuple[int, int, int] | None:
    """(busy, total, steal) CPU jiffies of the whole machine, from /proc/stat (Linux). Steal is time the
    hypervisor gave our virtual CPUs to someone else: invisible to ``top``, but it slows every timing."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    steal = fields[7] if len(fields) > 7 else 0
    return sum(fields) - idle - steal, sum(fields), steal


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def count_parameters(bundle) -> tuple[int, int]:
    """(total, non-zero) parameters of a loaded bundle, torch or ONNX."""
    if bundle.meta.get("weights", {}).get("format") == "onnx":
        import onnx
        from onnx import numpy_helper

        graph = onnx.load(str(bundle.folder / "model.onnx")).graph
        arrays = [numpy_helper.to_array(t) for t in graph.initializer]
        big = [a for a in arrays if a.size > 1]  # skip scalar scales / zero points
        return int(sum(a.size for a in big)), int(sum(np.count_nonzero(a) for a in big))
    from compression.bundle.shapes import count_parameters as torch_count

    return torch_count(bundle.model)


def memory_mb(folder: str | Path, texts: list[str], timeout: float = 600) -> tuple[float | None, float | None]:
    """(peak, resident) memory added by loading the bundle and predicting one batch, in a fresh child process.

    The child first imports the runtimes and records its memory; both figures are growth past that baseline, so
    they are the model's own cost, not Python's or torch's. Peak includes loading (an int8 bundle is rebuilt from
    an fp32 skeleton, so its peak exceeds what it holds afterwards); resident is what stays after the batch.
    """

    # VmHWM (peak RSS of this address space) resets at exec; ru_maxrss would inherit the parent's peak.
    code = ("import json, sys; import torch, transformers, onnxruntime; "
            "from compression.bundle import load_bundle; "
            "kb = lambda k: int(next(l for l in open('/proc/self/status') if l.startswith(k)).split()[1]); "
            "base = (kb('VmHWM:'), kb('VmRSS:')); b = load_bundle(sys.argv[1]); b.logits(json.loads(sys.stdin.read())); "
            "print(json.dumps([(kb('VmHWM:') - base[0]) / 1024, (kb('VmRSS:') - base[1]) / 1024]))")
    proc = subprocess.run([sys.executable, "-c", code, str(folder)], input=json.dumps(texts), capture_output=True,
                          text=True, timeout=timeout, env=child_env())
    try:
        peak, resident = json.loads(proc.stdout.strip().splitlines()[-1])
        return round(peak, 1), round(resident, 1)
    except (IndexError, ValueError, TypeError):
        return None, None


def _length_stats(tokenizer, texts: list) -> dict:
    lengths = np.array([len(ids) for ids in encode(tokenizer, texts, truncation=True, max_length=512)["input_ids"]])
    return {"mean": round(float(lengths.mean()), 1), "p50": int(np.percentile(lengths, 50)),
            "p95": int(np.percentile(lengths, 95)), "max": int(lengths.max()), "tokenizer_of": "the first bundle"}


def benchmark(folders: list[str | Path], texts: list[str], cfg: BenchConfig | None = None,
              progress: Progress | None = None, split: str = "test") -> dict:
    """Measure every bundle in ``folders`` on ``texts`` (real sentences or pairs, unpadded at batch 1,
    tokenization included), interleaved.

    Returns ``{"results": [...], "provenance": {...}}``; ``results[i]`` holds the figures of ``folders[i]`` and
    its ratios against ``folders[0]``.
    """
    import torch

    cfg = cfg or BenchConfig()
    if not folders:
        raise ValueError("give at least one bundle to benchmark")
    if len(texts) < 2:
        raise ValueError("need at least 2 texts to benchmark on")
    report = progress or (lambda f, m: None)
    threads = cfg.threads or cpu_info()["usable_cores"] or 1
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    sample, batches = _draw(texts, cfg)
    try:
        bundles, load_seconds = _load(folders, report)
        _warm_up(bundles, sample, batches, cfg)
        timings = _measure(bundles, sample, batches, cfg, report)
    finally:
        torch.set_num_threads(previous_threads)
    results = [_figures(folder, bundle, load_seconds[i], timings, i, len(batches[0]))
               for i, (folder, bundle) in enumerate(zip(folders, bundles))]
    if cfg.memory:
        for i, r in enumerate(results):
            report(0.9 + 0.1 * i / len(results), f"bench: peak memory of {r['name']} (child process)")
            r["peak_memory_mb"], r["resident_memory_mb"] = memory_mb(r["bundle"], batches[0])
    _add_ratios(results)
    provenance = _provenance(cfg, threads, split, texts, sample, bundles[0].tokenizer, timings)
    report(1.0, "bench: done")
    return {"results": results, "provenance": provenance}


# ---------------------------------------------------------------- the steps of one benchmark

@dataclass
class _Timings:
    """Raw measurements of one interleaved session; index i is the i-th bundle."""

    latencies: list[list[float]]   # seconds per batch-1 prediction
    batch_times: list[list[float]]  # seconds per throughput batch
    cpu_seconds: list[float]        # this process's CPU time during the batch-1 predictions
    wall: float
    other_share: float | None       # of the machine's CPU used by other processes meanwhile
    steal_share: float | None       # of the machine's CPU taken by the hypervisor meanwhile


def _draw(texts: list[str], cfg: BenchConfig) -> tuple[list[str], list[list[str]]]:
    """The batch-1 sample and the throughput batches, seeded: every bundle sees the same texts."""
    rng = np.random.default_rng(cfg.seed)
    sample = [texts[i] for i in rng.choice(len(texts), size=min(cfg.samples, len(texts)), replace=False)]
    batches = [[texts[i] for i in rng.choice(len(texts), size=min(cfg.batch_size, len(texts)), replace=False)]
               for _ in range(cfg.throughput_batches)]
    return sample, batches


def _load(folders: list[str | Path], report: Progress) -> tuple[list, list[float]]:
    """Load and prepare every bundle; load time includes making the runtime ready."""

    bundles, seconds = [], []
    for i, folder in enumerate(folders):
        report(0.1 * i / len(folders), f"bench: loading {Path(folder).name}")
        start = time.perf_counter()
        bundles.append(load_bundle(folder).prepare())
        seconds.append(time.perf_counter() - start)
    return bundles, seconds


def _warm_up(bundles: list, sample: list[str], batches: list[list[str]], cfg: BenchConfig) -> None:
    for bundle in bundles:
        for text in sample[: cfg.warmup]:
            bundle.logits([text], 1)
        bundle.logits(batches[0], cfg.batch_size)


def _measure(bundles: list, sample: list[str], batches: list[list[str]], cfg: BenchConfig,
             report: Progress) -> _Timings:
    """Round by round, each bundle in turn: a slow spell of the machine hits all of them alike."""
    latencies: list[list[float]] = [[] for _ in bundles]
    batch_times: list[list[float]] = [[] for _ in bundles]
    cpu_seconds = [0.0 for _ in bundles]
    jiffies_start, own_start, wall_start = _system_jiffies(), _own_cpu_seconds(), time.perf_counter()
    for round_ in range(cfg.repeats):
        for i, bundle in enumerate(bundles):
            report(0.1 + 0.8 * (round_ * len(bundles) + i) / (cfg.repeats * len(bundles)),
                   f"bench: round {round_ + 1}/{cfg.repeats}, {bundle.name}")
            cpu = _own_cpu_seconds()
            for text in sample:
                start = time.perf_counter()
                bundle.logits([text], 1)
                latencies[i].append(time.perf_counter() - start)
            cpu_seconds[i] += _own_cpu_seconds() - cpu
            for batch in batches:
                start = time.perf_counter()
                bundle.logits(batch, cfg.batch_size)
                batch_times[i].append(time.perf_counter() - start)
    wall = time.perf_counter() - wall_start
    other, steal = _machine_shares(jiffies_start, _system_jiffies(), _own_cpu_seconds() - own_start, wall)
    return _Timings(latencies, batch_times, cpu_seconds, wall, other, steal)


def _machine_shares(start: tuple[int, int, int] | None, end: tuple[int, int, int] | None, own: float,
                    wall: float) -> tuple[float | None, float | None]:
    """(other processes', hypervisor steal's) share of the machine's CPU capacity over ``wall`` seconds."""
    if not (start and end):
        return None, None
    ticks = os.sysconf("SC_CLK_TCK")
    busy = (end[0] - start[0]) / ticks
    capacity = wall * (os.cpu_count() or 1)
    if not capacity:
        return None, None
    return round(max(0.0, busy - own) / capacity, 4), round((end[2] - start[2]) / ticks / capacity, 4)


def _figures(folder: str | Path, bundle, load_seconds: float, timings: _Timings, i: int, batch: int) -> dict:
    """The figures of bundle ``i``; memory is filled in later (child processes), ratios after that."""

    lat = np.array(timings.latencies[i]) * 1000
    total, nonzero = count_parameters(bundle)
    return {
        "name": bundle.name, "bundle": str(folder), "runtime": bundle.runtime, "size_bytes": bundle_bytes(folder),
        "params": total, "nonzero_params": nonzero, "load_seconds": round(load_seconds, 3),
        "latency_p50_ms": round(float(np.percentile(lat, 50)), 3),
        "latency_p95_ms": round(float(np.percentile(lat, 95)), 3),
        "latency_mean_ms": round(float(lat.mean()), 3),
        "throughput": round(batch * len(timings.batch_times[i]) / sum(timings.batch_times[i]), 2),
        "cpu_seconds_per_1000": round(timings.cpu_seconds[i] / len(lat) * 1000, 3),
        "peak_memory_mb": None, "resident_memory_mb": None,
    }


def _add_ratios(results: list[dict]) -> None:
    """Ratios against the first bundle (the teacher), in place."""
    first = results[0]
    for r in results:
        r["speedup_p50"] = round(first["latency_p50_ms"] / r["latency_p50_ms"], 3)
        r["compression"] = round(first["size_bytes"] / r["size_bytes"], 3)
        r["throughput_ratio"] = round(r["throughput"] / first["throughput"], 3)
        r["reference"] = first["name"]


def _provenance(cfg: BenchConfig, threads: int, split: str, texts: list[str], sample: list[str], tokenizer,
                timings: _Timings) -> dict:
    """Where the figures came from: machine, libraries, data, settings and how busy the machine was."""
    return {
        "cpu": cpu_info(), "threads": threads, "platform": platform.platform(),
        "versions": package_versions("torch", "transformers", "onnxruntime", "numpy"),
        "split": split, "texts_available": len(texts), "samples": len(sample), "repeats": cfg.repeats,
        "warmup": cfg.warmup, "batch_sizes": {"latency": 1, "throughput": cfg.batch_size},
        "throughput_batches": cfg.throughput_batches, "sequence_length": _length_stats(tokenizer, sample),
        "padding": "none at batch 1; to the longest text in each throughput batch",
        "latency_includes": "tokenization + forward pass, one text at a time",
        "inputs": "text pairs" if sample and isinstance(sample[0], tuple) else "single texts",
        "interleaved": True, "other_processes_cpu_share": timings.other_share,
        "hypervisor_steal_share": timings.steal_share, "wall_seconds": round(timings.wall, 1),
        "memory": "growth of peak RSS (VmHWM, includes loading) and of resident RSS after one batch, in a child "
                  "process, past its baseline after importing the runtimes",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": asdict(cfg),
    }


# ---------------------------------------------------------------- recording

def record(store, variant_ids: list[int], result: dict, extra: dict | None = None) -> None:
    """Store a :func:`benchmark` result as the benchmark of ``variant_ids`` (``variant_ids[i]`` measured as
    ``result["results"][i]``): the ``BENCH_METRICS`` figures, and the provenance (plus ``extra``, e.g. a
    fingerprint, and the runtime) as the detail of ``latency_p50_ms``, where every reader looks for it."""
    rows = result["results"]
    if len(variant_ids) != len(rows):
        raise ValueError(f"{len(variant_ids)} variant ids for {len(rows)} benchmark results")
    provenance = {**result["provenance"], **(extra or {})}
    for variant_id, r in zip(variant_ids, rows):
        store.set_metrics(variant_id, {k: r[k] for k in BENCH_METRICS},
                          details={"latency_p50_ms": {**provenance, "runtime": r["runtime"]}})
