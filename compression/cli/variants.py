"""Commands that read variants without changing anything: sources, list, predict, evaluate, advise, verify."""

from __future__ import annotations

import json
import sys

from compression.bundle.folder import load_bundle
from compression.bundle.meta import read_meta
from compression.bundle.verify import check_probe
from compression.cli.common import bundle_folder, fmt, open_published, open_store, published, read_texts
from compression.core.config import DataConfig
from compression.core.errors import LabError
from compression.core.hardware import cpu_info
from compression.core.texts import one_line, texts_of
from compression.data.loading import SPLITS, align_labels, load_data
from compression.data.sources import embedded_status
from compression.evaluation.advisor import advise
from compression.evaluation.metrics import score_logits
from compression.evaluation.results import current_variants, variant_row


def cmd_sources(args) -> int:
    rows = embedded_status()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['ref']:<26} {'usable' if r['usable'] else 'MISSING':<8} {r['kind']:<5} {r['description']}")
        print(f"{'':<26} {r['note']}" + (f" — {r['location']}" if r["location"] and r["usable"] else ""))
    return 0 if all(r["usable"] for r in rows) else 1


def _list_rows(args) -> list[dict]:
    if args.published:
        run = open_published(args.published)
        if args.run not in ("latest", "all", str(run.run)):
            raise LabError(f"the published run {args.published} holds run {run.run} only; drop --run or give "
                           f"--run {run.run}")
        return run.rows()
    with open_store(args.store, readonly=True) as store:
        return [variant_row(v) for v in current_variants(store, args.run)]


def cmd_list(args) -> int:
    rows = _list_rows(args)
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return 0
    if args.markdown:
        from compression.presentation.tables import markdown

        print(markdown(rows, f1=args.f1))
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
        print(f"{r['name'][:22]:<22} {r['kind']:<9} {(r['parent'] or '-')[:18]:<18} {fmt(r['accuracy'], '.1f', 100):>6} "
              f"{ci:>11} {fmt(r['f1'], '.3f'):>6} {fmt(r['agreement'], '.3f'):>6} {fmt(r['ece'], '.3f'):>6} "
              f"{fmt(r['size_mb'], '.1f'):>7} {fmt(nz, '.2f', 1e-6):>9} {fmt(r['latency_p50_ms'], '.1f'):>7} "
              f"{fmt(r['latency_p95_ms'], '.1f'):>7} {fmt(r['throughput'], '.0f'):>8}")
    for r in rows:
        if r["status"] != "ok":
            print(f"BROKEN {r['name']}: {r['status'][len('broken: '):]} ({_broken_advice(args)})")
    return 0


def _broken_advice(args) -> str:
    """What the reader of ``list`` can do about a broken variant: a store's owner rebuilds it; a published run's
    visitor cannot rebuild someone else's run, so they fetch it again or ask its publisher."""
    if args.published:
        return ("skipped: not served or run; download or copy the published run again, or ask its publisher to "
                "publish it again")
    return "rebuild it: run the recipe again"


def cmd_predict(args) -> int:
    if not (args.texts or args.pair or args.file):
        raise LabError("nothing to classify: give one or more TEXT arguments, --pair FIRST SECOND or --file PATH")
    folder = bundle_folder(args.variant, args.store, published(args))
    texts = _predict_inputs(args, read_meta(folder))
    bundle = load_bundle(folder)
    preds = bundle.predict(texts)
    for i, (t, p) in enumerate(zip(texts, preds), start=1):
        if p.truncated and not args.json:
            shared = " (shared by both texts)" if isinstance(t, tuple) else ""
            print(f"note: {'pair' if shared else 'text'} {i} has {p.tokens:,} tokens; {bundle.name} reads only the "
                  f"first {bundle.max_length}{shared}", file=sys.stderr)
    if args.json:
        print(json.dumps([{**_text_fields(t), "label": p.label, "confidence": p.confidence,
                           "probabilities": p.probabilities, "tokens": p.tokens, "truncated": p.truncated}
                          for t, p in zip(texts, preds)], ensure_ascii=False))
        return 0
    for t, p in zip(texts, preds):
        print(f"{p.label:<12} {p.confidence:6.1%}  {_shown(t)}")
    return 0


def _predict_inputs(args, meta: dict) -> list:
    """The texts or pairs to classify, checked against what the variant reads before anything loads."""
    pair = tuple(meta["pair"]) if meta.get("pair") else None
    name = meta.get("name", args.variant)
    if args.texts and args.pair:
        raise LabError("give TEXT arguments or --pair pairs, not both: a variant reads one kind")
    texts = list(args.texts) + [tuple(p) for p in args.pair or []] + (read_texts(args.file, pair) if args.file
                                                                      else [])
    if not texts:
        raise LabError(f"nothing to classify: {args.file} holds no text")
    if pair and any(isinstance(t, str) for t in texts):
        raise LabError(f"{name} classifies pairs of texts ({' + '.join(pair)}): give each pair as --pair FIRST "
                       f"SECOND, or --file with two text columns")
    if not pair and any(isinstance(t, tuple) for t in texts):
        raise LabError(f"{name} classifies single texts, not pairs: give TEXT arguments (or --file with one text "
                       f"per line) instead of pairs")
    empty = next((i for i, t in enumerate(texts, 1) if not all(part.strip() for part in _parts(t))), None)
    if empty is not None:
        raise LabError(f"pair {empty} has an empty text: give both texts some words" if pair else
                       "empty text: give each TEXT some words")
    return texts


def _parts(text) -> tuple:
    return text if isinstance(text, tuple) else (text,)


def _text_fields(text) -> dict:
    """A text as JSON output shows it: ``text``, plus ``text_pair`` for a pair."""
    return {"text": text[0], "text_pair": text[1]} if isinstance(text, tuple) else {"text": text}


def _shown(text, limit: int = 200) -> str:
    """A text or pair on one line (``first ‖ second``), cut after ``limit`` characters."""

    line = one_line(text)
    return line if len(line) <= limit else line[:limit] + f"… ({len(line):,} characters)"


def cmd_evaluate(args) -> int:
    run = published(args)
    folders = [bundle_folder(v, args.store, run) for v in args.bundles]  # bad names fail before any load
    data = load_data(DataConfig(source=args.data))
    if args.split in data.carved:  # e.g. GLUE hides its test labels: "test" would be a tenth of train
        raise LabError(f"{args.data} has no labelled {args.split} split (the lab would cut one out of its train "
                       f"rows); pick another --split or --split all")
    _check_kinds(args.bundles, folders, data.pair, args.data)
    splits = SPLITS if args.split == "all" else (args.split,)
    texts = [t for s in splits for t in texts_of(data.splits[s])]
    ids = [y for s in splits for y in data.splits[s]["label"]]
    reference, rows = None, []  # the first variant's predictions, as label names
    for given, folder in zip(args.bundles, folders):
        metrics, reference = _score(given, folder, data.labels, args.data, texts, ids, reference)
        rows.append({"name": metrics.pop("name"), "given": given, "bundle": str(folder), "data": args.data,
                     "split": args.split, **metrics})
        if args.json:
            print(json.dumps(rows[-1]), flush=True)
    if not args.json:
        _print_scores(rows, args.data, args.split, len(texts), "pairs" if data.pair else "texts")
    return 0


def _check_kinds(given: list[str], folders: list, pair: tuple[str, str] | None, source: str) -> None:
    """Every variant reads what the data holds (pairs or single texts), or one clear error before any scoring."""

    for name, folder in zip(given, folders):
        reads_pairs = bool(read_meta(folder).get("pair"))
        if reads_pairs and not pair:
            raise LabError(f"{name} classifies pairs of texts, but {source} holds single texts: give data with two "
                           f"text columns (e.g. sentence1, sentence2)")
        if pair and not reads_pairs:
            raise LabError(f"{source} holds pairs of texts ({' + '.join(pair)}), but {name} classifies single "
                           f"texts: score it on single-text data")


def _score(given: str, folder, data_labels: list[str], source: str, texts: list, ids: list[int],
           reference: list[str] | None) -> tuple[dict, list[str]]:
    """One variant's scores (``name`` first) and the reference predictions (its own when it is the first)."""
    import numpy as np


    bundle = load_bundle(folder)
    labels = np.asarray(align_labels(data_labels, bundle.labels, source))[ids]
    kind = "pairs" if bundle.pair else "texts"
    print(f"scoring {given} on {len(texts):,} {kind}", file=sys.stderr, flush=True)
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
    if metrics.get("f1_positive") is not None:  # binary: the F1 of class 1, named (MRPC's "equivalent")
        metrics["positive_label"] = bundle.labels[1]
    return {"name": bundle.name, **metrics}, reference


def _print_scores(rows: list[dict], data: str, split: str, count: int, kind: str = "texts") -> None:
    width = max(len("variant"), *(len(r["given"]) for r in rows))  # folders show as given: names repeat
    positive = next((r["positive_label"] for r in rows if r.get("positive_label") is not None), None)
    print(f"{data} ({split}, {count:,} {kind}); agreement is with {rows[0]['given']}"
          + (f"; F1 pos. is the F1 of label {positive!r}" if positive is not None else ""))
    print(f"{'variant':<{width}} {'accuracy % (95% CI)':>22} {'macro-F1':>9}"
          + (f" {'F1 pos.':>8}" if positive is not None else "") + f" {'agreement %':>12}")
    for r in rows:
        ci = f"{r['accuracy'] * 100:.1f} ({r['accuracy_ci_low'] * 100:.1f}–{r['accuracy_ci_high'] * 100:.1f})"
        f1_pos = f" {fmt(r.get('f1_positive'), '.3f'):>8}" if positive is not None else ""
        print(f"{r['given']:<{width}} {ci:>22} {r['f1']:>9.3f}{f1_pos} {fmt(r['agreement'], '.1f', 100):>12}")


def cmd_advise(args) -> int:
    with open_store(args.store, readonly=True) as store:
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


def cmd_verify(args) -> int:
    result = check_probe(load_bundle(args.bundle))
    print(json.dumps(result) if args.json else
          f"{'ok' if result['ok'] else 'MISMATCH'}: argmax equal {result['argmax_equal']}, "
          f"max |Δlogit| {result['max_abs_diff']:.2e} (tolerance {result['atol']:.0e}, {result['probes']} probes)")
    return 0 if result["ok"] else 1
