"""Pure table builders: store records in, pandas DataFrames out. No Gradio, no models."""

from __future__ import annotations

import pandas as pd

VARIANT_COLUMNS = ["variant", "kind", "parent", "accuracy", "95% CI", "size MB", "bundle"]
PREDICTION_COLUMNS = ["variant", "label", "confidence", "latency ms", "agrees with teacher"]


def variants_table(rows: list[dict]) -> pd.DataFrame:
    """``rows`` as made by ``compression.cli._variant_row`` (name, kind, parent, accuracy, accuracy_ci, size_mb)."""
    def ci(r):
        lo, hi = r.get("accuracy_ci") or (None, None)
        return f"{lo:.3f} – {hi:.3f}" if lo is not None and hi is not None else ""

    data = [[r["name"], r["kind"], r.get("parent") or "", r.get("accuracy"), ci(r), r.get("size_mb"), r.get("bundle")]
            for r in rows]
    return pd.DataFrame(data, columns=VARIANT_COLUMNS)


def predictions_table(results: list[dict], teacher: str | None) -> pd.DataFrame:
    """``results``: one dict per variant with name, label, confidence, latency_ms; the teacher's label is the reference."""
    reference = next((r["label"] for r in results if r["name"] == teacher), None)
    data = [[r["name"], r["label"], round(r["confidence"], 4), round(r["latency_ms"], 1),
             "" if reference is None or r["name"] == teacher else ("yes" if r["label"] == reference else "NO")]
            for r in results]
    return pd.DataFrame(data, columns=PREDICTION_COLUMNS)
