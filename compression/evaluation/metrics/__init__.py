"""Metric modules for the `evaluate` library, shipped inside the package and loaded by path (no Hub access)."""

from __future__ import annotations

from pathlib import Path

from compression.core.texts import texts_of

METRICS_DIR = Path(__file__).resolve().parent
AVAILABLE = tuple(sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").is_file()))


def load_metric(name: str):
    """``evaluate.load`` on our own module folder; ``ValueError`` names the metrics we ship."""
    if name not in AVAILABLE:
        raise ValueError(f"unknown metric {name!r} (allowed: {', '.join(AVAILABLE)})")
    import evaluate

    return evaluate.load(str(METRICS_DIR / name))


def paired_test(correct_a, correct_b) -> dict:
    """McNemar's exact test of two classifiers scored on the same items.

    ``correct_a`` / ``correct_b``: per item, whether each got it right (same items, same order). Only the
    discordant pairs carry information: ``b`` items only A got right, ``c`` items only B got right. Under the null
    hypothesis (equal accuracy) ``b ~ Binomial(b + c, 1/2)``; the two-sided exact p-value is
    ``min(1, 2 * P(X <= min(b, c)))``, 1.0 when there are no discordant pairs. Exact integer arithmetic (no scipy).

    Returns ``{"mcnemar_p": float, "discordant": (b, c)}``.
    """
    import math

    a, bb = [bool(x) for x in correct_a], [bool(x) for x in correct_b]
    if len(a) != len(bb):
        raise ValueError(f"paired_test: {len(a)} and {len(bb)} items; both must score the same items")
    b = sum(1 for x, y in zip(a, bb) if x and not y)
    c = sum(1 for x, y in zip(a, bb) if y and not x)
    n = b + c
    if n == 0:
        return {"mcnemar_p": 1.0, "discordant": (0, 0)}
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return {"mcnemar_p": min(1.0, 2 * tail / 2 ** n), "discordant": (b, c)}


def score_logits(logits, labels, reference_logits=None) -> dict[str, float]:
    """Metrics from logits already computed on a labelled split (always the test split in the lab).

    accuracy with a bootstrap 95 % CI, macro-F1 (binary tasks: also the F1 of class 1 with its CI), expected calibration error, agreement with the teacher and
    McNemar's exact test against it on the same items (``mcnemar_p_vs_teacher``: how likely an accuracy
    difference at least this large is by chance; ``only_teacher_correct`` / ``only_variant_correct``: the
    discordant items it rests on): ``reference_logits`` are the teacher's logits on the same rows; without them the
    logits are their own reference (a teacher agrees with itself, p = 1).
    """
    import numpy as np

    labels = list(labels)
    preds = logits.argmax(1).tolist()
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    result = load_metric("accuracy").compute(predictions=preds, references=labels)
    # Binary tasks also report the F1 of class 1 (MRPC's "equivalent": what GLUE reports), with its CI.
    positive = 1 if logits.shape[1] == 2 else None
    result.update(load_metric("f1").compute(predictions=preds, references=labels, num_classes=logits.shape[1],
                                            positive=positive))
    result.update(load_metric("ece").compute(predictions=probs.tolist(), references=labels))
    teacher = preds if reference_logits is None else reference_logits.argmax(1).tolist()
    result.update(load_metric("agreement").compute(predictions=preds, references=teacher))
    paired = paired_test([t == y for t, y in zip(teacher, labels)], [p == y for p, y in zip(preds, labels)])
    result["mcnemar_p_vs_teacher"] = paired["mcnemar_p"]
    result["only_teacher_correct"], result["only_variant_correct"] = map(float, paired["discordant"])
    result["test_examples"] = float(len(preds))
    return result


def score(bundle, dataset, reference_logits=None, batch_size: int = 64) -> dict[str, float]:
    """Run a loaded bundle over a labelled split and score it (see :func:`score_logits`)."""

    return score_logits(bundle.logits(texts_of(dataset), batch_size), dataset["label"], reference_logits)
