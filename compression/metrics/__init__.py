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

    ``reference_logits``: the teacher's logits on the same rows, for agreement; without them the logits are their
    own reference (a teacher agrees with itself).
    """
    preds = logits.argmax(1).tolist()
    result = load_metric("accuracy").compute(predictions=preds, references=list(labels))
    teacher = preds if reference_logits is None else reference_logits.argmax(1).tolist()
    result.update(load_metric("agreement").compute(predictions=preds, references=teacher))
    result["test_examples"] = float(len(preds))
    return result


def score(bundle, dataset, reference_logits=None, batch_size: int = 64) -> dict[str, float]:
    """Run a loaded bundle over a labelled split and score it (see :func:`score_logits`)."""
    return score_logits(bundle.logits(list(dataset["text"]), batch_size), dataset["label"], reference_logits)
