"""``python -m compression``: build recipes, list and query variants, check sources. Errors are one line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .errors import LabError

EPILOG = """examples:
  python -m compression sources
  python -m compression build recipes/quick.yaml
  python -m compression list
  python -m compression predict teacher "a gripping, beautifully acted film"
store folder: --store DIR, else $COMPRESSION_LAB_STORE, else ./runs"""


def _store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", metavar="DIR", help="run store folder (default: $COMPRESSION_LAB_STORE or ./runs)")


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

    p = sub.add_parser("list", help="list finished variants and their metrics",
                       description="List the finished variants in the store (the newest of each name).")
    _store_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object per variant")

    p = sub.add_parser("predict", help="label and confidence for each text",
                       description="Classify texts with a variant: its name in the store, or a bundle folder.")
    p.add_argument("variant", help="variant name (see `list`) or path to a bundle folder")
    p.add_argument("texts", nargs="+", metavar="TEXT", help="one or more texts")
    _store_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("verify", help="reload a bundle and check it reproduces its probe predictions",
                       description="Load a bundle folder and compare its logits on the probe texts with those "
                                   "recorded when it was saved.")
    p.add_argument("bundle", help="bundle folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _open_store(path: str | None):
    from .store import RunStore

    return RunStore(path)


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


def _variant_row(v) -> dict:
    from .bundle import bundle_bytes

    size = bundle_bytes(v.bundle) if v.bundle and Path(v.bundle).is_dir() else None
    m = v.metrics
    return {"name": v.name, "kind": v.kind, "parent": v.parent, "run": v.run_id,
            "accuracy": m.get("accuracy"),
            "accuracy_ci": [m.get("accuracy_ci_low"), m.get("accuracy_ci_high")],
            "size_mb": round(size / 1e6, 2) if size is not None else None, "bundle": v.bundle,
            "metrics": m}


def cmd_list(args) -> int:
    with _open_store(args.store) as store:
        rows = [_variant_row(v) for v in store.variants()]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    if not rows:
        print(f"no finished variants yet; build one: python -m compression build recipes/quick.yaml")
        return 0
    print(f"{'name':<20} {'kind':<10} {'parent':<14} {'accuracy':>9} {'95% CI':>15} {'size MB':>9}  bundle")
    for r in rows:
        acc = f"{r['accuracy']:.4f}" if r["accuracy"] is not None else "-"
        lo, hi = r["accuracy_ci"]
        ci = f"{lo:.3f}–{hi:.3f}" if lo is not None else "-"
        size = f"{r['size_mb']:.1f}" if r["size_mb"] is not None else "-"
        print(f"{r['name']:<20} {r['kind']:<10} {r['parent'] or '-':<14} {acc:>9} {ci:>15} {size:>9}  {r['bundle']}")
    return 0


def _bundle_folder(variant: str, store_dir: str | None) -> Path:
    path = Path(variant).expanduser()
    if path.is_dir():
        return path
    with _open_store(store_dir) as store:
        return Path(store.get_variant(variant).bundle)


def cmd_predict(args) -> int:
    from .bundle import load_bundle

    texts = [t for t in args.texts]
    if any(not t.strip() for t in texts):
        raise LabError("empty text: give each TEXT some words")
    bundle = load_bundle(_bundle_folder(args.variant, args.store))
    preds = bundle.predict(texts)
    if args.json:
        print(json.dumps([{"text": t, "label": p.label, "confidence": p.confidence, "probabilities": p.probabilities}
                          for t, p in zip(texts, preds)], ensure_ascii=False))
        return 0
    for t, p in zip(texts, preds):
        print(f"{p.label:<12} {p.confidence:6.1%}  {t}")
    return 0


def cmd_verify(args) -> int:
    from .bundle import check_probe, load_bundle

    result = check_probe(load_bundle(args.bundle))
    print(json.dumps(result) if args.json else
          f"{'ok' if result['ok'] else 'MISMATCH'}: argmax equal {result['argmax_equal']}, "
          f"max |Δlogit| {result['max_abs_diff']:.2e} (tolerance {result['atol']:.0e}, {result['probes']} probes)")
    return 0 if result["ok"] else 1


COMMANDS = {"sources": cmd_sources, "build": cmd_build, "list": cmd_list, "predict": cmd_predict,
            "verify": cmd_verify}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    args = make_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # the CLI boundary: one line, no traceback (unless --debug)
        if args.debug:
            raise
        from .store import StoreError

        known = (LabError, StoreError, ValueError, FileNotFoundError, PermissionError)
        message = " ".join(str(err).split()) or type(err).__name__
        if not isinstance(err, known):
            message = f"{type(err).__name__}: {message} (rerun with --debug for the traceback)"
        print(f"error: {message}", file=sys.stderr)
        return 1
