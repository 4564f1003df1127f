"""``python -m compression``: build recipes, list and query variants, check sources. Errors are one line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .errors import LabError, describe_os_error
from .results import current_variants, variant_row

EPILOG = """examples:
  python -m compression sources
  python -m compression build recipes/quick.yaml
  python -m compression list
  python -m compression predict teacher "a gripping, beautifully acted film"
  python -m compression bench teacher minilm-l6 minilm-l6-int8
  python -m compression evaluate teacher minilm-l6 --data ../shared/data/sst2-sentences
  python -m compression advise
  python -m compression publish --to published/quick        # or --to quick.zip, or --to hub:USER/NAME
  python -m compression predict teacher "a dull film" --published published/quick
store folder: --store DIR, else $COMPRESSION_LAB_STORE, else ./runs
published run (read-only, instead of a store): --published DIR|FILE.zip|hub:USER/NAME"""


def _store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", metavar="DIR", help="run store folder (default: $COMPRESSION_LAB_STORE or ./runs)")


def _source_args(p: argparse.ArgumentParser) -> None:
    """Where variants come from: a run store, or a published run (read-only, never written to)."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--store", metavar="DIR", help="run store folder (default: $COMPRESSION_LAB_STORE or ./runs)")
    group.add_argument("--published", metavar="REF", help="read variants from a published run instead of a store: "
                                                          "its folder, a .zip of it, or hub:USER/NAME (read-only)")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m compression", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="BERT Compression Lab: distill, prune and quantize BERT-family text classifiers, "
                    "and measure what each variant costs and keeps.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("sources", help="list embedded models and data sets and whether each is usable here",
                       description="List the embedded models and data sets (shipped in pip packages, no internet "
                                   "needed) and whether each is installed and usable on this machine.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("build", help="run a recipe and record its variants in the store",
                       description="Run a recipe (YAML): load data and teacher, make the variants, save each as a "
                                   "bundle, reload it in a fresh process, evaluate it on the test split and record "
                                   "it in the run store. One build per store at a time.")
    p.add_argument("recipe", help="recipe file, e.g. recipes/quick.yaml")
    _store_arg(p)
    p.add_argument("--data-dir", metavar="DIR", help="folder that relative data paths in the recipe are resolved "
                                                      "against (default: the current folder)")

    _add_list(sub)
    _add_predict(sub)
    _add_bench(sub)

    p = sub.add_parser("advise", help="which techniques pay on this machine (measured, else from CPU flags)",
                       description="Say which compression techniques pay on this CPU: from measured speed-ups in "
                                   "the store where they exist, from the CPU's instruction sets otherwise.")
    _store_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON")

    _add_evaluate(sub)

    p = sub.add_parser("export", help="write the store's results as a JSON reference file (no weights)",
                       description="Write every finished variant's metrics, benchmark figures and provenance to a "
                                   "JSON file the dashboard can show as a labelled reference result (weights are "
                                   "not included; bundle paths are dropped).")
    _store_arg(p)
    p.add_argument("out", help="output JSON file, e.g. assets/reference/quick.json")
    p.add_argument("--label", required=True, help="how the dashboard labels it, e.g. 'quick recipe, 2-core CPU'")
    p.add_argument("--chart", metavar="PNG", help="also draw the accuracy/latency/size chart as an image (needs "
                                                  "Playwright + Chromium from requirements-dev.txt)")

    _add_publish(sub)

    p = sub.add_parser("verify", help="reload a bundle and check it reproduces its probe predictions",
                       description="Load a bundle folder and compare its logits on the probe texts with those "
                                   "recorded when it was saved.")
    p.add_argument("bundle", help="bundle folder")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("loadtest", help="drive a running app with concurrent clients; report latency per level",
                       description="Load-test a running dashboard: for each client count in --levels, that many "
                                   "gradio_client clients each make --predictions Playground calls one after "
                                   "another; prints errors, p50/p95/max latency (queueing included) and requests/s "
                                   "per level. Start the app first (python app.py --store DIR). Bounded: at most "
                                   "64 clients, 1000 calls each, --timeout seconds overall.")
    p.add_argument("url", help="the app's URL, e.g. http://127.0.0.1:7860/")
    p.add_argument("--levels", default="1,2,4,8,16", help="client counts to run in turn (default: 1,2,4,8,16)")
    p.add_argument("--predictions", type=int, default=25, help="calls per client (default: 25)")
    p.add_argument("--timeout", type=float, default=900, help="overall limit in seconds (default: 900)")
    p.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _add_list(sub) -> None:
    p = sub.add_parser("list", help="list finished variants and their metrics",
                       description="List the finished variants of one run (default: the newest finished run), or "
                                   "the variants of a published run (--published), each checked against its "
                                   "manifest.")
    _source_args(p)
    p.add_argument("--run", default="latest", help="latest (default), a run id, or all (newest of each name)")
    p.add_argument("--json", action="store_true", help="print one JSON object per variant")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table (for a README)")


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="label and confidence for each text",
                       description="Classify texts with a variant: its name in the store (or in the published run "
                                   "given by --published), or a bundle folder.")
    p.add_argument("variant", help="variant name (see `list`) or path to a bundle folder")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="one or more texts")
    p.add_argument("--file", metavar="PATH", help=f"also classify every non-empty line of this UTF-8 text file "
                                                  f"(at most {MAX_PREDICT_FILE_BYTES // 1_000_000} MB)")
    _source_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="measure latency, throughput, memory and size of bundles, interleaved",
                       description="Benchmark several variants in ONE interleaved run on real test sentences "
                                   "(batch-1 latency p50/p95, throughput, peak memory, size, parameters, load "
                                   "time), with ratios against the first (put the teacher first) and full "
                                   "provenance. Do not run it while other heavy work runs: it inflates timings.")
    p.add_argument("bundles", nargs="+", metavar="VARIANT", help="variant names (see `list`) or bundle folders")
    _source_args(p)
    p.add_argument("--data", metavar="REF", help="data whose test split supplies the sentences (default: the data "
                                                 "the first bundle was trained on; with --published, the test "
                                                 "sentences packed in the published run)")
    p.add_argument("--samples", type=int, default=64, help="sentences timed at batch 1 per round (default 64)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--threads", type=int, help="threads for torch and ONNX Runtime (default: usable cores)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    p.add_argument("--record", action="store_true", help="store the figures as the variants' benchmark in the store "
                                                         "(not with --published: a published run is read-only)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="accuracy of variants on any labelled data (e.g. a held-out set)",
                       description="Score variants on a labelled split of any data reference: accuracy with a "
                                   "bootstrap 95 % CI, macro-F1 and agreement with the first variant named (name "
                                   "the teacher first). Labels are matched to each variant's labels by name, or by "
                                   "id when the data has bare ids 0..K-1. Use it to check generalisation on data the "
                                   "recipe never saw, without touching the recorded test figures.")
    p.add_argument("bundles", nargs="+", metavar="VARIANT", help="variant names (see `list`) or bundle folders")
    _source_args(p)
    p.add_argument("--data", metavar="REF", required=True, help="data reference: a folder of split files, a file, "
                                                                 "or a Hub id")
    p.add_argument("--split", choices=("test", "validation", "train", "all"), default="test",
                   help="split to score (default: test; a single file is split 80/10/10 as in recipes, so use all "
                        "to score every row)")
    p.add_argument("--json", action="store_true", help="print one JSON object per variant")


PUBLISH_EPILOG = """examples:
  python -m compression publish --to published/quick                   # a folder (new or empty)
  python -m compression publish --to quick.zip --run 3                 # one zip file, run 3 of the store
  python -m compression publish --to hub:USER/quick-compressed         # a Hugging Face Hub repo (needs a token)
  python -m compression publish --variants minilm-l6,minilm-l6-int8 --to published/small
then serve it, with no build and nothing written into it:
  python app.py --published published/quick
  COMPRESSION_LAB_PUBLISHED=hub:USER/quick-compressed python app.py"""


def _add_publish(sub) -> None:
    p = sub.add_parser("publish", help="pack a finished run into a read-only folder, zip or Hub repo",
                       epilog=PUBLISH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Pack the finished variants of one run (bundles, results, recipe, example texts, "
                                   "a README report and a model card per bundle) into one self-contained folder "
                                   "with a manifest of SHA-256 hashes. It travels (a Hugging Face Space, a laptop) "
                                   "and is served read-only: every bundle is checked against the manifest first.")
    _store_arg(p)
    p.add_argument("--run", default="latest", help="latest (default: the newest finished run) or a run id")
    p.add_argument("--variants", metavar="A,B,...", help="variants to include (default: every intact one); the "
                                                         "teacher is always included: ratios are against it")
    p.add_argument("--to", required=True, metavar="DIR|FILE.zip|hub:USER/NAME",
                   help="a new or empty folder, a new .zip file, or a Hugging Face Hub repo")
    p.add_argument("--label", help="how the dashboard and README name the run (default: recipe, run id and date)")
    p.add_argument("--no-chart", action="store_true", help="do not draw chart.png (drawing needs Playwright + "
                                                           "Chromium)")


def _open_published(ref: str):
    from .publish import open_published

    return open_published(ref)


def _open_store(path: str | None, readonly: bool = False):
    """The run store; readers (list, predict, ...) open it read-only: no recovery, no lock, no write."""
    from .store import RunStore, resolve_store_dir

    root = resolve_store_dir(path)
    return RunStore(root, readonly=readonly and (root / "lab.sqlite").is_file())


def cmd_sources(args) -> int:
    from .sources import embedded_status

    rows = embedded_status()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['ref']:<26} {'usable' if r['usable'] else 'MISSING':<8} {r['kind']:<5} {r['description']}")
        print(f"{'':<26} {r['note']}" + (f" — {r['location']}" if r["location"] and r["usable"] else ""))
    return 0 if all(r["usable"] for r in rows) else 1


def cmd_build(args) -> int:
    from tqdm.auto import tqdm

    from .config import load_recipe
    from .pipeline import build

    recipe = load_recipe(args.recipe)
    with _open_store(args.store) as store, tqdm(total=100, desc=f"build {recipe.name}", unit="%",
                                                 bar_format="{l_bar}{bar}| {elapsed}") as bar:
        def progress(fraction: float, message: str) -> None:
            bar.update(round(fraction * 100) - bar.n)
            bar.write(f"[{time.strftime('%H:%M:%S')}] {message}")

        run_id = build(recipe, store, data_dir=args.data_dir, progress=progress)
        bar.write(f"run {run_id} stored in {store.root}; see: python -m compression list --store {store.root}")
    return 0


def _fmt(value, spec: str, scale: float = 1.0) -> str:
    return format(value * scale, spec) if value is not None else "-"


def _list_rows(args) -> list[dict]:
    if args.published:
        run = _open_published(args.published)
        if args.run not in ("latest", "all", str(run.run)):
            raise LabError(f"the published run {args.published} holds run {run.run} only; drop --run or give "
                           f"--run {run.run}")
        return run.rows()
    with _open_store(args.store, readonly=True) as store:
        return [variant_row(v) for v in current_variants(store, args.run)]


def cmd_list(args) -> int:
    rows = _list_rows(args)
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return 0
    if args.markdown:
        from .dashboard.tables import markdown

        print(markdown(rows))
        return 0
    if not rows:
        print("no finished variants yet; build one: python -m compression build recipes/quick.yaml")
        return 0
    print(f"{'name':<22} {'kind':<9} {'parent':<18} {'acc %':>6} {'95% CI':>11} {'F1':>6} {'agree':>6} "
          f"{'ECE':>6} {'MB':>7} {'params M':>9} {'p50 ms':>7} {'p95 ms':>7} {'texts/s':>8}")
    for r in rows:
        lo, hi = r["accuracy_ci"]
        ci = f"{lo * 100:.1f}–{hi * 100:.1f}" if lo is not None else "-"
        nz = r["params"]
        print(f"{r['name'][:22]:<22} {r['kind']:<9} {(r['parent'] or '-')[:18]:<18} {_fmt(r['accuracy'], '.1f', 100):>6} "
              f"{ci:>11} {_fmt(r['f1'], '.3f'):>6} {_fmt(r['agreement'], '.3f'):>6} {_fmt(r['ece'], '.3f'):>6} "
              f"{_fmt(r['size_mb'], '.1f'):>7} {_fmt(nz, '.2f', 1e-6):>9} {_fmt(r['latency_p50_ms'], '.1f'):>7} "
              f"{_fmt(r['latency_p95_ms'], '.1f'):>7} {_fmt(r['throughput'], '.0f'):>8}")
    broken = [r for r in rows if r["status"] != "ok"]
    for r in broken:
        print(f"BROKEN {r['name']}: {r['status'][len('broken: '):]} (rebuild it: run the recipe again)")
    return 0


def _bundle_folder(variant: str, store_dir: str | None, published=None) -> Path:
    """A variant's bundle folder: a name in the published run (when given) or the store, else a folder path."""
    if published is not None and variant in published.names:
        return published.bundle_folder(variant)  # refuses a broken variant, with the reason
    path = Path(variant).expanduser()
    if path.is_dir():
        return path
    if published is not None:
        raise LabError(f"the published run has no variant {variant!r} (known: {', '.join(published.names)})")
    with _open_store(store_dir, readonly=True) as store:
        return Path(store.get_variant(variant).bundle)


def _published(args):
    return _open_published(args.published) if getattr(args, "published", None) else None


MAX_PREDICT_FILE_BYTES = 10_000_000


def _read_lines(path: str) -> list[str]:
    file = Path(path)
    if not file.is_file():
        raise LabError(f"text file {path} does not exist")
    if file.stat().st_size > MAX_PREDICT_FILE_BYTES:
        raise LabError(f"text file {path} is larger than {MAX_PREDICT_FILE_BYTES // 1_000_000} MB: split it")
    try:
        content = file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise LabError(f"text file {path} is not UTF-8 (byte {err.start}): save it as UTF-8") from None
    return [line.strip() for line in content.replace("\x00", "").splitlines() if line.strip()]


def cmd_predict(args) -> int:
    from .bundle import load_bundle

    texts = list(args.texts) + (_read_lines(args.file) if args.file else [])
    if not texts:
        raise LabError("nothing to classify: give one or more TEXT arguments or --file PATH")
    if any(not t.strip() for t in texts):
        raise LabError("empty text: give each TEXT some words")
    bundle = load_bundle(_bundle_folder(args.variant, args.store, _published(args)))
    preds = bundle.predict(texts)
    for i, p in enumerate(preds, start=1):
        if p.truncated and not args.json:
            print(f"note: text {i} has {p.tokens:,} tokens; {bundle.name} reads only the first {bundle.max_length}",
                  file=sys.stderr)
    if args.json:
        print(json.dumps([{"text": t, "label": p.label, "confidence": p.confidence, "probabilities": p.probabilities,
                           "tokens": p.tokens, "truncated": p.truncated} for t, p in zip(texts, preds)],
                         ensure_ascii=False))
        return 0
    for t, p in zip(texts, preds):
        print(f"{p.label:<12} {p.confidence:6.1%}  {t if len(t) <= 200 else t[:200] + f'… ({len(t):,} characters)'}")
    return 0


def cmd_evaluate(args) -> int:
    import numpy as np

    from .bundle import load_bundle
    from .config import DataConfig
    from .data import SPLITS, align_labels, load_data
    from .metrics import score_logits

    published = _published(args)
    folders = [_bundle_folder(v, args.store, published) for v in args.bundles]  # bad names fail before any load
    data = load_data(DataConfig(source=args.data))
    if args.split in data.carved:  # e.g. GLUE hides its test labels: "test" would be a tenth of train
        raise LabError(f"{args.data} has no labelled {args.split} split (the lab would cut one out of its train "
                       f"rows); pick another --split or --split all")
    splits = SPLITS if args.split == "all" else (args.split,)
    texts = [t for s in splits for t in data.splits[s]["text"]]
    ids = [y for s in splits for y in data.splits[s]["label"]]
    reference, rows = None, []  # the first variant's predictions, as label names
    for given, folder in zip(args.bundles, folders):
        bundle = load_bundle(folder)
        labels = np.asarray(align_labels(data.labels, bundle.labels, args.data))[ids]
        print(f"scoring {given} on {len(texts):,} texts", file=sys.stderr, flush=True)
        logits = bundle.logits(texts, batch_size=64)
        if reference is None:
            reference = [bundle.labels[i] for i in logits.argmax(1)]
        comparable = set(reference) <= set(bundle.labels)
        # Agreement by label name, so variants that order their labels differently still compare.
        same = np.eye(len(bundle.labels), dtype=np.float32)[[bundle.labels.index(n) if comparable else 0
                                                              for n in reference]]
        metrics = score_logits(logits, labels, same)
        if not comparable:
            metrics["agreement"] = None
        rows.append({"name": bundle.name, "given": given, "bundle": str(folder), "data": args.data,
                     "split": args.split, **metrics})
        if args.json:
            print(json.dumps(rows[-1]), flush=True)
    if not args.json:
        width = max(len("variant"), *(len(r["given"]) for r in rows))  # folders show as given: names repeat
        print(f"{args.data} ({args.split}, {len(texts):,} texts); agreement is with {rows[0]['given']}")
        print(f"{'variant':<{width}} {'accuracy % (95% CI)':>22} {'macro-F1':>9} {'agreement %':>12}")
        for r in rows:
            ci = f"{r['accuracy'] * 100:.1f} ({r['accuracy_ci_low'] * 100:.1f}–{r['accuracy_ci_high'] * 100:.1f})"
            print(f"{r['given']:<{width}} {ci:>22} {r['f1']:>9.3f} {_fmt(r['agreement'], '.1f', 100):>12}")
    return 0


def cmd_bench(args) -> int:
    from .bench import benchmark
    from .bundle import read_meta
    from .config import BenchConfig, DataConfig
    from .data import load_data

    if args.record and args.published:
        raise LabError("a published run is read-only: --record writes to a run store; drop --record (or bench "
                       "from the store with --store)")
    records = []
    if args.record:  # resolve names before measuring, so a bad name fails in a second, not after the run
        with _open_store(args.store) as store:
            records = [store.get_variant(name) for name in args.bundles]
    published = _published(args)
    folders = [_bundle_folder(v, args.store, published) for v in args.bundles]
    split = "test"
    if published is not None and not args.data:
        texts, split = published.test_texts, published.test_split
        if len(texts) < 2:
            raise LabError("the published run packs no test sentences: give --data REF for the sentences")
    else:
        source = args.data or read_meta(folders[0]).get("data", {}).get("source")
        if not source:
            raise LabError("the first bundle records no data source: give --data REF for the test sentences")
        texts = list(load_data(DataConfig(source=source)).splits["test"]["text"])
    cfg = BenchConfig(samples=args.samples, repeats=args.repeats, threads=args.threads, memory=not args.no_memory)
    result = benchmark(folders, texts, cfg, progress=None if args.json else
                       lambda f, m: print(f"[{f:4.0%}] {m}", file=sys.stderr), split=split)
    if args.record:
        from .pipeline import BENCH_METRICS

        with _open_store(args.store) as store:
            for record, r in zip(records, result["results"]):
                store.set_metrics(record.id, {k: r[k] for k in BENCH_METRICS},
                                  details={"latency_p50_ms": {**result["provenance"], "runtime": r["runtime"]}})
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    p = result["provenance"]
    print(f"{'bundle':<24} {'MB':>8} {'params M':>9} {'nonzero M':>9} {'load s':>6} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'texts/s':>8} {'peak MB':>7} {'RSS MB':>7} {'speed-up':>8} {'smaller':>8}  runtime")
    for r in result["results"]:
        print(f"{r['name'][:24]:<24} {r['size_bytes'] / 1e6:>8.1f} {r['params'] / 1e6:>9.2f} "
              f"{r['nonzero_params'] / 1e6:>9.2f} {r['load_seconds']:>6.2f} {r['latency_p50_ms']:>8.2f} "
              f"{r['latency_p95_ms']:>8.2f} {r['throughput']:>8.1f} {_fmt(r['peak_memory_mb'], '.0f'):>7} "
              f"{_fmt(r['resident_memory_mb'], '.0f'):>7} "
              f"{r['speedup_p50']:>7.2f}x {r['compression']:>7.2f}x  {r['runtime']}")
    flags = ", ".join(k for k, v in p["cpu"]["flags"].items() if v) or "none"
    lengths = p["sequence_length"]
    print(f"\nprovenance: {p['cpu']['model']} ({flags}); {p['threads']} threads; torch {p['versions'].get('torch')}, "
          f"transformers {p['versions'].get('transformers')}, onnxruntime {p['versions'].get('onnxruntime')}; "
          f"{p['samples']} {p['split']} sentences x {p['repeats']} interleaved rounds, batch 1 (throughput: batch "
          f"{p['batch_sizes']['throughput']}); tokens mean {lengths['mean']}, p95 {lengths['p95']}; other processes "
          f"used {_fmt(p['other_processes_cpu_share'], '.1%', 1)} of the CPU, hypervisor steal "
          f"{_fmt(p.get('hypervisor_steal_share'), '.1%', 1)}; {p['measured_at']}")
    return 0


def cmd_advise(args) -> int:
    from .advisor import advise
    from .hardware import cpu_info

    with _open_store(args.store, readonly=True) as store:
        rows = [variant_row(v) for v in current_variants(store)]
    info = cpu_info()
    advice = advise(info["flags"], rows)
    if args.json:
        print(json.dumps({"cpu": info, "advice": [a.__dict__ for a in advice]}))
        return 0
    print(f"CPU: {info['model']}, {info['usable_cores']} usable cores; "
          f"flags: {', '.join(k for k, v in info['flags'].items() if v) or 'none of interest'}")
    for a in advice:
        print(f"  {a.technique:<24} {a.verdict:<13} {a.reason} [{a.evidence}]")
    return 0


def cmd_export(args) -> int:
    with _open_store(args.store, readonly=True) as store:
        rows = [variant_row(v) for v in current_variants(store)]
    if not rows:
        raise LabError("the store has no finished variants to export")
    for row in rows:
        row["bundle"] = None  # a path on the machine that built it means nothing elsewhere
        row.pop("metrics", None)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps({"label": args.label, "exported": time.strftime("%Y-%m-%d"), "variants": rows},
                              indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {len(rows)} variants to {out}")
    if args.chart:
        from .dashboard.report import chart_png

        caption = args.label.split(";")[0][:100]  # the first clause: a chart title has one line
        print(f"wrote the chart to {chart_png(rows, args.chart, caption=caption)}")
    return 0


def cmd_publish(args) -> int:
    from .publish import publish

    names = [n.strip() for n in args.variants.split(",") if n.strip()] if args.variants else None
    if args.variants is not None and not names:
        raise LabError("--variants takes variant names separated by commas, like teacher,minilm-l6")
    with _open_store(args.store, readonly=True) as store:
        where = publish(store, args.to, run=args.run, variants=names, label=args.label, chart=not args.no_chart,
                        progress=lambda f, m: print(f"[{f:4.0%}] {m}", file=sys.stderr))
    print(f"published to {where}; serve it read-only: python app.py --published {where}")
    return 0


def cmd_loadtest(args) -> int:
    from .loadtest import load_test

    try:
        levels = [int(x) for x in args.levels.split(",") if x.strip()]
    except ValueError:
        raise LabError(f"--levels takes client counts separated by commas, like 1,4,16 (got {args.levels!r})") from None
    result = load_test(args.url, levels, args.predictions, args.timeout,
                       progress=None if args.json else lambda m: print(f"running: {m}", file=sys.stderr))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'clients':>7} {'calls':>6} {'errors':>6} {'not run':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} "
              f"{'calls/s':>8} {'wall s':>7}")
        for r in result["levels"]:
            print(f"{r['clients']:>7} {r['requests']:>6} {r['errors']:>6} {r['not_run']:>7} {_fmt(r['p50_ms'], '.0f'):>8} "
                  f"{_fmt(r['p95_ms'], '.0f'):>8} {_fmt(r['max_ms'], '.0f'):>8} {r['requests_per_second']:>8.2f} "
                  f"{r['wall_seconds']:>7.1f}")
        if not result["levels"]:
            raise LabError(f"no level ran within --timeout {args.timeout:g} s")
        first, last = result["levels"][0], result["levels"][-1]
        if first["p50_ms"] and last["p50_ms"] and len(result["levels"]) > 1:
            print(f"p50 grows {last['p50_ms'] / first['p50_ms']:.1f}x from {first['clients']} to {last['clients']} "
                  f"clients")
        for r in result["levels"]:
            if r["first_error"]:
                print(f"first error at {r['clients']} clients: {r['first_error']}", file=sys.stderr)
    failed = any(r["errors"] or r["not_run"] for r in result["levels"])
    return 1 if failed else 0


def cmd_verify(args) -> int:
    from .bundle import check_probe, load_bundle

    result = check_probe(load_bundle(args.bundle))
    print(json.dumps(result) if args.json else
          f"{'ok' if result['ok'] else 'MISMATCH'}: argmax equal {result['argmax_equal']}, "
          f"max |Δlogit| {result['max_abs_diff']:.2e} (tolerance {result['atol']:.0e}, {result['probes']} probes)")
    return 0 if result["ok"] else 1


COMMANDS = {"sources": cmd_sources, "build": cmd_build, "list": cmd_list, "predict": cmd_predict,
            "bench": cmd_bench, "evaluate": cmd_evaluate, "advise": cmd_advise, "export": cmd_export,
            "verify": cmd_verify, "publish": cmd_publish,
            "loadtest": cmd_loadtest}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    args = make_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:  # the CLI boundary: one line, no traceback (unless --debug)
        if args.debug:
            raise
        from .store import StoreError

        known = (LabError, StoreError, ValueError, FileNotFoundError, PermissionError)
        message = describe_os_error(err) or " ".join(str(err).split()) or type(err).__name__
        if not isinstance(err, known) and not describe_os_error(err):
            message = f"{type(err).__name__}: {message} (rerun with --debug for the traceback)"
        print(f"error: {message}", file=sys.stderr)
        return 1
