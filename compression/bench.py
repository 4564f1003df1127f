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
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from .config import BenchConfig
from .hardware import cpu_info, package_versions

Progress = Callable[[float, str], None]


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
    from .prune import count_parameters as torch_count

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
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", code, str(folder)], input=json.dumps(texts), capture_output=True,
                          text=True, timeout=timeout, env=env)
    try:
        peak, resident = json.loads(proc.stdout.strip().splitlines()[-1])
        return round(peak, 1), round(resident, 1)
    except (IndexError, ValueError, TypeError):
        return None, None


def _length_stats(tokenizer, texts: list[str]) -> dict:
    lengths = np.array([len(ids) for ids in tokenizer(texts, truncation=True, max_length=512)["input_ids"]])
    return {"mean": round(float(lengths.mean()), 1), "p50": int(np.percentile(lengths, 50)),
            "p95": int(np.percentile(lengths, 95)), "max": int(lengths.max()), "tokenizer_of": "the first bundle"}


def benchmark(folders: list[str | Path], texts: list[str], cfg: BenchConfig | None = None,
              progress: Progress | None = None, split: str = "test") -> dict:
    """Measure every bundle in ``folders`` on ``texts`` (real sentences, unpadded at batch 1), interleaved.

    Returns ``{"results": [...], "provenance": {...}}``; ``results[i]`` holds the figures of ``folders[i]`` and
    its ratios against ``folders[0]``.
    """
    import torch

    from .bundle import bundle_bytes, load_bundle

    cfg = cfg or BenchConfig()
    if not folders:
        raise ValueError("give at least one bundle to benchmark")
    if len(texts) < 2:
        raise ValueError("need at least 2 texts to benchmark on")
    report = progress or (lambda f, m: None)
    threads = cfg.threads or cpu_info()["usable_cores"] or 1
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    rng = np.random.default_rng(cfg.seed)
    sample = [texts[i] for i in rng.choice(len(texts), size=min(cfg.samples, len(texts)), replace=False)]
    batches = [[texts[i] for i in rng.choice(len(texts), size=min(cfg.batch_size, len(texts)), replace=False)]
               for _ in range(cfg.throughput_batches)]
    try:
        bundles, load_seconds = [], []
        for i, folder in enumerate(folders):
            report(0.1 * i / len(folders), f"bench: loading {Path(folder).name}")
            start = time.perf_counter()
            bundles.append(load_bundle(folder).prepare())  # load time includes making the runtime ready
            load_seconds.append(time.perf_counter() - start)
        for bundle in bundles:
            for text in sample[: cfg.warmup]:
                bundle.logits([text], 1)
            bundle.logits(batches[0], cfg.batch_size)

        latencies = [[] for _ in bundles]
        batch_times = [[] for _ in bundles]
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
        jiffies_end, own = _system_jiffies(), _own_cpu_seconds() - own_start
    finally:
        torch.set_num_threads(previous_threads)

    other_share = steal_share = None
    if jiffies_start and jiffies_end:
        ticks = os.sysconf("SC_CLK_TCK")
        busy = (jiffies_end[0] - jiffies_start[0]) / ticks
        capacity = wall * (os.cpu_count() or 1)
        other_share = round(max(0.0, busy - own) / capacity, 4) if capacity else None
        steal_share = round((jiffies_end[2] - jiffies_start[2]) / ticks / capacity, 4) if capacity else None

    results = []
    for i, (folder, bundle) in enumerate(zip(folders, bundles)):
        lat = np.array(latencies[i]) * 1000
        total, nonzero = count_parameters(bundle)
        results.append({
            "name": bundle.name, "bundle": str(folder), "runtime": bundle.runtime, "size_bytes": bundle_bytes(folder),
            "params": total, "nonzero_params": nonzero, "load_seconds": round(load_seconds[i], 3),
            "latency_p50_ms": round(float(np.percentile(lat, 50)), 3),
            "latency_p95_ms": round(float(np.percentile(lat, 95)), 3),
            "latency_mean_ms": round(float(lat.mean()), 3),
            "throughput": round(len(batches[0]) * len(batch_times[i]) / sum(batch_times[i]), 2),
            "cpu_seconds_per_1000": round(cpu_seconds[i] / len(lat) * 1000, 3),
            "peak_memory_mb": None, "resident_memory_mb": None,
        })
    if cfg.memory:
        for i, r in enumerate(results):
            report(0.9 + 0.1 * i / len(results), f"bench: peak memory of {r['name']} (child process)")
            r["peak_memory_mb"], r["resident_memory_mb"] = memory_mb(r["bundle"], batches[0])
    first = results[0]
    for r in results:
        r["speedup_p50"] = round(first["latency_p50_ms"] / r["latency_p50_ms"], 3)
        r["compression"] = round(first["size_bytes"] / r["size_bytes"], 3)
        r["throughput_ratio"] = round(r["throughput"] / first["throughput"], 3)
        r["reference"] = first["name"]

    provenance = {
        "cpu": cpu_info(), "threads": threads, "platform": platform.platform(),
        "versions": package_versions("torch", "transformers", "onnxruntime", "numpy"),
        "split": split, "texts_available": len(texts), "samples": len(sample), "repeats": cfg.repeats,
        "warmup": cfg.warmup, "batch_sizes": {"latency": 1, "throughput": cfg.batch_size},
        "throughput_batches": cfg.throughput_batches, "sequence_length": _length_stats(bundles[0].tokenizer, sample),
        "padding": "none at batch 1; to the longest text in each throughput batch",
        "latency_includes": "tokenization + forward pass, one text at a time",
        "interleaved": True, "other_processes_cpu_share": other_share, "hypervisor_steal_share": steal_share,
        "wall_seconds": round(wall, 1),
        "memory": "growth of peak RSS (VmHWM, includes loading) and of resident RSS after one batch, in a child "
                  "process, past its baseline after importing the runtimes",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": asdict(cfg),
    }
    report(1.0, "bench: done")
    return {"results": results, "provenance": provenance}
