"""Commands that do work or write files: build, bench, export, publish, loadtest."""

from __future__ import annotations

import json
import sys
import time

from compression.builder.pipeline import build
from compression.bundle.meta import read_meta
from compression.cli.common import bundle_folder, fmt, open_store, published
from compression.core.atomic import write_json_atomic
from compression.core.config import BenchConfig, DataConfig, load_recipe
from compression.core.errors import LabError
from compression.core.texts import texts_of
from compression.data.loading import load_data
from compression.evaluation.results import current_variants, variant_row
from compression.publishing.writer import publish


def cmd_build(args) -> int:
    from tqdm.auto import tqdm


    recipe = load_recipe(args.recipe)
    with open_store(args.store) as store, tqdm(total=100, desc=f"build {recipe.name}", unit="%",
                                                bar_format="{l_bar}{bar}| {elapsed}") as bar:
        def progress(fraction: float, message: str) -> None:
            bar.update(round(fraction * 100) - bar.n)
            bar.write(f"[{time.strftime('%H:%M:%S')}] {message}")

        run_id = build(recipe, store, data_dir=args.data_dir, progress=progress)
        bar.write(f"run {run_id} stored in {store.root}; see: python -m compression list --store {store.root}")
    return 0


def cmd_bench(args) -> int:
    from compression.evaluation import bench

    if args.record and args.published:
        raise LabError("a published run is read-only: --record writes to a run store; drop --record (or bench "
                       "from the store with --store)")
    records = []
    if args.record:  # resolve names before measuring, so a bad name fails in a second, not after the run
        with open_store(args.store) as store:
            records = [store.get_variant(name) for name in args.bundles]
    run = published(args)
    folders = [bundle_folder(v, args.store, run) for v in args.bundles]
    texts, split = _bench_texts(args, run, folders[0])
    cfg = BenchConfig(samples=args.samples, repeats=args.repeats, threads=args.threads, memory=not args.no_memory)
    result = bench.benchmark(folders, texts, cfg, progress=None if args.json else
                             lambda f, m: print(f"[{f:4.0%}] {m}", file=sys.stderr), split=split)
    if args.record:
        with open_store(args.store) as store:
            bench.record(store, [r.id for r in records], result)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        _print_bench(result)
    return 0


def _bench_texts(args, run, first_folder) -> tuple[list, str]:
    """(sentences or pairs, split name): --data's test split, else the published run's packed sentences, else the
    test split of the data the first bundle was trained on."""

    if run is not None and not args.data:
        if len(run.test_texts) < 2:
            raise LabError("the published run packs no test sentences: give --data REF for the sentences")
        return run.test_texts, run.test_split
    source = args.data or read_meta(first_folder).get("data", {}).get("source")
    if not source:
        raise LabError("the first bundle records no data source: give --data REF for the test sentences")
    return texts_of(load_data(DataConfig(source=source)).splits["test"]), "test"


def _print_bench(result: dict) -> None:
    p = result["provenance"]
    print(f"{'bundle':<24} {'MB':>8} {'params M':>9} {'nonzero M':>9} {'load s':>6} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'texts/s':>8} {'peak MB':>7} {'RSS MB':>7} {'speed-up':>8} {'smaller':>8}  runtime")
    for r in result["results"]:
        print(f"{r['name'][:24]:<24} {r['size_bytes'] / 1e6:>8.1f} {r['params'] / 1e6:>9.2f} "
              f"{r['nonzero_params'] / 1e6:>9.2f} {r['load_seconds']:>6.2f} {r['latency_p50_ms']:>8.2f} "
              f"{r['latency_p95_ms']:>8.2f} {r['throughput']:>8.1f} {fmt(r['peak_memory_mb'], '.0f'):>7} "
              f"{fmt(r['resident_memory_mb'], '.0f'):>7} "
              f"{r['speedup_p50']:>7.2f}x {r['compression']:>7.2f}x  {r['runtime']}")
    flags = ", ".join(k for k, v in p["cpu"]["flags"].items() if v) or "none"
    lengths = p["sequence_length"]
    print(f"\nprovenance: {p['cpu']['model']} ({flags}); {p['threads']} threads; torch {p['versions'].get('torch')}, "
          f"transformers {p['versions'].get('transformers')}, onnxruntime {p['versions'].get('onnxruntime')}; "
          f"{p['samples']} {p['split']} {_inputs(p)} x {p['repeats']} interleaved rounds, batch 1 (throughput: batch "
          f"{p['batch_sizes']['throughput']}); tokens mean {lengths['mean']}, p95 {lengths['p95']}; other processes "
          f"used {fmt(p['other_processes_cpu_share'], '.1%', 1)} of the CPU, hypervisor steal "
          f"{fmt(p.get('hypervisor_steal_share'), '.1%', 1)}; {p['measured_at']}")


def _inputs(provenance: dict) -> str:
    return "pairs" if provenance.get("inputs") == "text pairs" else "sentences"


def cmd_export(args) -> int:
    from pathlib import Path


    with open_store(args.store, readonly=True) as store:
        rows = [variant_row(v) for v in current_variants(store)]
    if not rows:
        raise LabError("the store has no finished variants to export")
    for row in rows:
        row["bundle"] = None  # a path on the machine that built it means nothing elsewhere
        metrics = row.pop("metrics", None) or {}
        if "f1_positive" in metrics:  # binary tasks (MRPC reports it): the F1 of class 1 with its CI
            row["f1_positive"] = metrics["f1_positive"]
            row["f1_positive_ci"] = [metrics.get("f1_positive_ci_low"), metrics.get("f1_positive_ci_high")]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, {"label": args.label, "exported": time.strftime("%Y-%m-%d"), "variants": rows},
                      indent=1, ensure_ascii=False)
    print(f"wrote {len(rows)} variants to {out}")
    if args.chart:
        from compression.presentation.report import chart_png

        print(f"wrote the chart to {chart_png(rows, args.chart, caption=args.label)}")
    return 0


def cmd_publish(args) -> int:
    names = [n.strip() for n in args.variants.split(",") if n.strip()] if args.variants else None
    if args.variants is not None and not names:
        raise LabError("--variants takes variant names separated by commas, like teacher,minilm-l6")
    with open_store(args.store, readonly=True) as store:
        where = publish(store, args.to, run=args.run, variants=names, label=args.label, chart=not args.no_chart,
                        progress=lambda f, m: print(f"[{f:4.0%}] {m}", file=sys.stderr))
    print(f"published to {where}; serve it read-only: python app.py --published {where}")
    return 0


def cmd_loadtest(args) -> int:
    from compression.evaluation.loadtest import load_test

    try:
        levels = [int(x) for x in args.levels.split(",") if x.strip()]
    except ValueError:
        raise LabError(f"--levels takes client counts separated by commas, like 1,4,16 (got {args.levels!r})") from None
    result = load_test(args.url, levels, args.predictions, args.timeout,
                       progress=None if args.json else lambda m: print(f"running: {m}", file=sys.stderr))
    if args.json:
        print(json.dumps(result))
    else:
        settings = result["settings"]
        print(f"sent {settings['inputs']} from {settings['texts']} to {settings['endpoint']}")
        _print_levels(result["levels"], args.timeout)
    failed = any(r["errors"] or r["not_run"] for r in result["levels"])
    return 1 if failed else 0


def _print_levels(levels: list[dict], timeout: float) -> None:
    print(f"{'clients':>7} {'calls':>6} {'errors':>6} {'not run':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} "
          f"{'calls/s':>8} {'wall s':>7}")
    for r in levels:
        print(f"{r['clients']:>7} {r['requests']:>6} {r['errors']:>6} {r['not_run']:>7} {fmt(r['p50_ms'], '.0f'):>8} "
              f"{fmt(r['p95_ms'], '.0f'):>8} {fmt(r['max_ms'], '.0f'):>8} {r['requests_per_second']:>8.2f} "
              f"{r['wall_seconds']:>7.1f}")
    if not levels:
        raise LabError(f"no level ran within --timeout {timeout:g} s")
    first, last = levels[0], levels[-1]
    if first["p50_ms"] and last["p50_ms"] and len(levels) > 1:
        print(f"p50 grows {last['p50_ms'] / first['p50_ms']:.1f}x from {first['clients']} to {last['clients']} "
              f"clients")
    for r in levels:
        if r["first_error"]:
            print(f"first error at {r['clients']} clients: {r['first_error']}", file=sys.stderr)
