"""``inspect VARIANT``: what a variant gets wrong beside the teacher, from a store or a published run."""

from __future__ import annotations

import json

from compression.cli.common import open_store, published
from compression.core.texts import one_line
from compression.evaluation.results import run_predictions

SHOWN = 5  # disagreements printed each way (all of them with --json)


def _from_store(args, names: list[str | None]):
    with open_store(args.store, readonly=True) as store:
        found = run_predictions(store, names)
    return [name for name, _ in found], [p for _, p in found]


def _from_published(run, names: list[str | None]):
    rows = run.rows()
    teacher = next((r["name"] for r in rows if r.get("kind") == "teacher"), run.names[0])
    wanted = [n or teacher for n in names]
    return wanted, [run.predictions(n) for n in wanted]


def report(args) -> dict:
    """The inspection of ``args.variant`` against ``args.against`` (default: the run's teacher)."""
    from compression.evaluation.inspection import compare

    run = published(args)
    (name, against), (mine, theirs) = (_from_published(run, [args.variant, args.against]) if run is not None
                                       else _from_store(args, [args.variant, args.against]))
    return compare(name, mine, against, theirs, limit=args.limit)


def cmd_inspect(args) -> int:
    found = report(args)
    if args.json:
        print(json.dumps(found, ensure_ascii=False))
        return 0
    print("\n".join(text_report(found, args.limit or SHOWN)))
    return 0


def _percent(x: float) -> str:
    return f"{100 * x:.1f} %"


def _matrix(title: str, labels: list[str], matrix: list[list[int]]) -> list[str]:
    width = max(len(x) for x in labels + [str(max(map(max, matrix)))]) + 2
    head = "gold \\ predicted".ljust(18) + "".join(x.rjust(width) for x in labels)
    return [f"{title}:", head] + [f"{label:<18}" + "".join(str(n).rjust(width) for n in row)
                                  for label, row in zip(labels, matrix)]


def _example(e: dict) -> str:
    text = one_line((e["text"], e["text_pair"]) if "text_pair" in e else e["text"])
    text = text if len(text) <= 110 else text[:109] + "…"
    sides = [f"{who} {e[who]['label']} {max(e[who]['probabilities'].values()):.2f}" for who in ("teacher", "variant")]
    return f"  [{e['label']}] {text}  ({', '.join(sides)})"


def text_report(found: dict, shown: int) -> list[str]:
    """What ``inspect`` prints without --json."""
    v, t = found["variant"], found["against"]
    b, c = found["mcnemar"]["teacher_right_variant_wrong"], found["mcnemar"]["variant_right_teacher_wrong"]
    lines = [f"{v} against {t} on {found['examples']:,} test examples",
             f"accuracy: {v} {_percent(found['accuracy'][v])}, {t} {_percent(found['accuracy'][t])}",
             f"{t} right and {v} wrong: {b}; {v} right and {t} wrong: {c} "
             f"(McNemar's discordant pairs: the test compares these two counts)", ""]
    for name in (t, v):
        lines += _matrix(f"confusion of {name}", found["labels"], found["confusion"][name]) + [""]
    lines.append(f"{'slice':<24}{'examples':>9}{t[:12]:>13}{v[:12]:>13}{'gap':>8}{'lost':>6}")
    for s in found["slices"]:
        lines.append(f"{s['slice']:<24}{s['examples']:>9}{_percent(s['teacher_accuracy']):>13}"
                     f"{_percent(s['variant_accuracy']):>13}{100 * s['gap']:>+7.1f} {s['lost']:>5}")
    cal = found["calibration"]
    lines += ["", f"calibration (ECE, 15 bins): {t} {cal[t]['ece']:.3f}, {v} {cal[v]['ece']:.3f}", ""]
    for key, title in (("teacher_right_variant_wrong", f"{t} right, {v} wrong"),
                       ("variant_right_teacher_wrong", f"{v} right, {t} wrong")):
        items = found[key]
        lines.append(f"{title} ({min(shown, len(items))} of {b if key.startswith('teacher') else c}, most "
                     f"confident mistake first; --json for all):")
        lines += [_example(e) for e in items[:shown]] + [""]
    return lines
