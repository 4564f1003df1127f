"""What a variant gets wrong, beside the teacher: confusion matrices, the examples where the two disagree on being
right, accuracy by slice and calibration. Pure functions of per-example probabilities (numpy only), so the command
line, the dashboard and the report show the same figures, from a store or a published run.

The two discordant lists are exactly the items McNemar's test of the two models rests on: ``teacher right, variant
wrong`` is its *b*, ``variant right, teacher wrong`` its *c* (:func:`compression.evaluation.metrics.paired_test`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

ECE_BINS = 15  # as the ece metric module: equal-width bins over the top-class probability, (low, high]
LENGTH_BUCKETS = ((1, 10), (11, 20), (21, 35), (36, None))  # words; a pair counts both texts
NEGATION = re.compile(r"\b(?:not|no|never|nothing|none|nobody|neither|nor|without|hardly|barely|cannot)\b|n't\b",
                      re.IGNORECASE)


@dataclass(frozen=True)
class Predictions:
    """One model's predictions on the test split: ``probs`` is ``(examples, classes)``, rows summing to 1."""

    name: str
    probs: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        return self.probs.argmax(axis=1)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise probabilities of ``(examples, classes)`` logits."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def confusion(gold: np.ndarray, predicted: np.ndarray, classes: int) -> list[list[int]]:
    """``matrix[i][j]``: examples of gold class i predicted as j (rows sum to each class's count)."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (gold, predicted), 1)
    return matrix.tolist()


def calibration(probs: np.ndarray, gold: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Reliability bins (equal width over the top-class probability) and the expected calibration error: the
    share-weighted mean of |accuracy - confidence| over the bins, as the ``ece`` metric computes it."""
    confidence, correct = probs.max(axis=1), (probs.argmax(axis=1) == gold).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    out, ece = [], 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if not inside.any():
            continue
        accuracy, mean_confidence = float(correct[inside].mean()), float(confidence[inside].mean())
        ece += inside.mean() * abs(accuracy - mean_confidence)
        out.append({"low": round(float(low), 4), "high": round(float(high), 4), "examples": int(inside.sum()),
                    "confidence": mean_confidence, "accuracy": accuracy})
    return {"bins": out, "ece": float(ece)}


def _words(text) -> int:
    return sum(len(part.split()) for part in (text if isinstance(text, tuple) else (text,)))


def _overlap(pair: tuple[str, str]) -> float:
    """Jaccard overlap of the two texts' lower-cased words."""
    a, b = ({w.strip(".,;:!?\"'()").lower() for w in t.split()} - {""} for t in pair)
    return len(a & b) / len(a | b) if a | b else 0.0


def slice_masks(texts: list, gold: np.ndarray, label_names: list[str]) -> list[tuple[str, str, np.ndarray]]:
    """(kind, name, mask) for every slice: length in words, gold label, a negation word, and for pairs the word
    overlap of the two texts. Empty slices are left out."""
    words = np.array([_words(t) for t in texts])
    out = []
    for low, high in LENGTH_BUCKETS:
        mask = (words >= low) & (words <= high if high is not None else True)
        out.append(("length", f"{low}-{high} words" if high is not None else f"{low}+ words", mask))
    for i, name in enumerate(label_names):
        out.append(("label", f"gold {name}", gold == i))
    negated = np.array([any(NEGATION.search(part) for part in (t if isinstance(t, tuple) else (t,))) for t in texts])
    out += [("negation", "with a negation", negated), ("negation", "without a negation", ~negated)]
    if texts and isinstance(texts[0], tuple):
        overlap = np.array([_overlap(t) for t in texts])
        out += [("overlap", "word overlap < 0.3", overlap < 0.3),
                ("overlap", "word overlap 0.3-0.6", (overlap >= 0.3) & (overlap < 0.6)),
                ("overlap", "word overlap >= 0.6", overlap >= 0.6)]
    return [(kind, name, mask) for kind, name, mask in out if mask.any()]


def slices(texts: list, gold: np.ndarray, label_names: list[str], variant: Predictions,
           teacher: Predictions) -> list[dict]:
    """Accuracy of both models on each slice, and the variant's loss there (``gap``: teacher minus variant, in
    accuracy points of that slice; ``lost``: examples the variant gets wrong and the teacher right)."""
    v_right, t_right = variant.labels == gold, teacher.labels == gold
    rows = []
    for kind, name, mask in slice_masks(texts, gold, label_names):
        v, t = float(v_right[mask].mean()), float(t_right[mask].mean())
        rows.append({"kind": kind, "slice": name, "examples": int(mask.sum()), "teacher_accuracy": t,
                     "variant_accuracy": v, "gap": t - v, "lost": int((t_right & ~v_right & mask).sum())})
    return rows


def _example(text, gold: int, label_names: list[str], variant: Predictions, teacher: Predictions, i: int) -> dict:
    def side(p: Predictions) -> dict:
        return {"label": label_names[int(p.labels[i])],
                "probabilities": {n: round(float(x), 4) for n, x in zip(label_names, p.probs[i])}}

    row = {"index": i, "label": label_names[gold], "teacher": side(teacher), "variant": side(variant)}
    if isinstance(text, tuple):
        row["text"], row["text_pair"] = text
    else:
        row["text"] = text
    return row


def discordant(texts: list, gold: np.ndarray, label_names: list[str], variant: Predictions, teacher: Predictions,
               limit: int | None = None) -> tuple[list[dict], list[dict]]:
    """(teacher right and variant wrong, variant right and teacher wrong): McNemar's b and c items, the most
    confident mistakes first. ``limit`` keeps that many of each (None: all)."""
    v_right, t_right = variant.labels == gold, teacher.labels == gold
    out = []
    for wrong, mask in ((variant, t_right & ~v_right), (teacher, v_right & ~t_right)):
        order = sorted(np.flatnonzero(mask), key=lambda i: -float(wrong.probs[i].max()))
        out.append([_example(texts[i], int(gold[i]), label_names, variant, teacher, int(i))
                    for i in order[:limit]])
    return out[0], out[1]


def compare(name: str, mine, against: str, theirs, limit: int | None = None) -> dict:
    """:func:`inspect` of two models' stored test predictions (``VariantPredictions`` of the run store or a
    published run), which must refer to the same test split."""
    if mine.split.digest != theirs.split.digest:
        raise ValueError(f"{name} and {against} were scored on different test splits: compare variants of one run")
    split = mine.split
    return inspect(split.texts, split.gold, split.labels, Predictions(name, np.asarray(mine.probs)),
                   Predictions(against, np.asarray(theirs.probs)), limit=limit)


def inspect(texts: list, gold, label_names: list[str], variant: Predictions, teacher: Predictions,
            limit: int | None = None) -> dict:
    """Everything the ``inspect`` command, the dashboard's view and the report show about ``variant`` against
    ``teacher`` on the same test examples (``texts``: strings, or (first, second) pairs)."""
    gold = np.asarray(gold, dtype=np.int64)
    n, classes = len(gold), len(label_names)
    for p in (variant, teacher):
        if p.probs.shape != (n, classes):
            raise ValueError(f"{p.name}: predictions of shape {p.probs.shape} for {n} examples of {classes} classes")
    if len(texts) != n:
        raise ValueError(f"{len(texts)} texts for {n} labels")
    b, c = discordant(texts, gold, label_names, variant, teacher, limit)
    b_count = int(((teacher.labels == gold) & (variant.labels != gold)).sum())
    c_count = int(((variant.labels == gold) & (teacher.labels != gold)).sum())
    return {
        "variant": variant.name, "against": teacher.name, "examples": n, "labels": list(label_names),
        "accuracy": {variant.name: float((variant.labels == gold).mean()),
                     teacher.name: float((teacher.labels == gold).mean())},
        "confusion": {variant.name: confusion(gold, variant.labels, classes),
                      teacher.name: confusion(gold, teacher.labels, classes)},
        "mcnemar": {"teacher_right_variant_wrong": b_count, "variant_right_teacher_wrong": c_count},
        "teacher_right_variant_wrong": b, "variant_right_teacher_wrong": c,
        "slices": slices(texts, gold, label_names, variant, teacher),
        "calibration": {variant.name: calibration(variant.probs, gold), teacher.name: calibration(teacher.probs, gold)},
    }
