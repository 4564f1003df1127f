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


def score(bundle, dataset, batch_size: int = 64, progress: bool = False) -> dict[str, float]:
    """Metrics of a loaded bundle on a labelled split (always the test split in the lab)."""
    from tqdm.auto import tqdm

    texts, refs = list(dataset["text"]), list(dataset["label"])
    preds = []
    for start in tqdm(range(0, len(texts), batch_size), desc=f"evaluating {bundle.name}", disable=not progress,
                      unit="batch"):
        preds.extend(bundle.logits(texts[start:start + batch_size], batch_size).argmax(1).tolist())
    result = load_metric("accuracy").compute(predictions=preds, references=refs)
    result["test_examples"] = float(len(refs))
    return result
