"""Metric modules for the `evaluate` library, shipped inside the package and loaded by path (no Hub access)."""

from __future__ import annotations

from pathlib import Path

METRICS_DIR = Path(__file__).resolve().parent
AVAILABLE = tuple(sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").is_file()))


def load_metric(name: str):
    """``evaluate.load`` on our own module folder; ``ValueError`` names the metrics we ship."""
    if name not in AVAILABLE:
        raise ValueError(f"unknown metric {name!r} (allowed: {', '.join(AVAILABLE)})")
    import evaluate

    return evaluate.load(str(METRICS_DIR / name))


def score_logits(logits, labels, reference_logits=None) -> dict[str, float]:
    """Metrics from logits already computed on a labelled split (always the test split in the lab).

    accuracy with a bootstrap 95 % CI, macro-F1, expected calibration error, and agreement with the teacher:
    ``reference_logits`` are the teacher's logits on the same rows; without them the logits are their own
    reference (a teacher agrees with itself).
    """
    import numpy as np

    labels = list(labels)
    preds = logits.argmax(1).tolist()
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    result = load_metric("accuracy").compute(predictions=preds, references=labels)
    result.update(load_metric("f1").compute(predictions=preds, references=labels, num_classes=logits.shape[1]))
    result.update(load_metric("ece").compute(predictions=probs.tolist(), references=labels))
    teacher = preds if reference_logits is None else reference_logits.argmax(1).tolist()
    result.update(load_metric("agreement").compute(predictions=preds, references=teacher))
    result["test_examples"] = float(len(preds))
    return result


def score(bundle, dataset, reference_logits=None, batch_size: int = 64) -> dict[str, float]:
    """Run a loaded bundle over a labelled split and score it (see :func:`score_logits`)."""
    return score_logits(bundle.logits(list(dataset["text"]), batch_size), dataset["label"], reference_logits)
