"""Pure table builders: variant rows (as ``results.variant_row`` makes them) in, pandas DataFrames out."""

from __future__ import annotations

import pandas as pd

from compression.core import registry as techniques

PREDICTION_COLUMNS = ["variant", "label", "confidence", "latency ms", "agrees with teacher"]


HEADLINE_COLUMNS = ["variant", "technique", "accuracy % (95% CI)", "vs teacher", "McNemar p", "speed-up", "smaller",
                    "p50 ms", "MB"]


def technique(row: dict) -> str:
    """How a variant was made, in words a visitor reads at a glance (the method names are for recipes): the
    registered technique's label."""

    kind, method = row.get("kind"), row.get("method")
    kind, method = kind if isinstance(kind, str) else "", method.lower() if isinstance(method, str) else ""
    if kind == "teacher":
        return "teacher (fine-tuned)"
    return techniques.label(method) or method or kind


def frame(rows: list[dict]) -> pd.DataFrame:
    """One row per variant with the teacher-relative figures stakeholders ask for (the first row stands in for a
    missing teacher)."""
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    teacher = df[df["kind"] == "teacher"]
    ref = teacher.iloc[0] if len(teacher) else df.iloc[0]
    df["is_reference"] = df.index == ref.name
    df["retention"] = df["accuracy"] / ref["accuracy"] if ref["accuracy"] else None
    # Points between the accuracies as displayed (one decimal), so "90.7 vs 92.7" reads as −2.0, not −1.9.
    shown = df["accuracy"].map(lambda a: float(_pct(a)) if not _missing(a) else None)
    df["points"] = shown - shown[ref.name] if ref["accuracy"] else None
    df["speedup"] = ref["latency_p50_ms"] / df["latency_p50_ms"] if ref["latency_p50_ms"] else None
    df["size_ratio"] = ref["size_mb"] / df["size_mb"] if ref["size_mb"] else None
    df["ci_low"] = df["accuracy_ci"].map(lambda ci: ci[0] if ci else None)
    df["ci_high"] = df["accuracy_ci"].map(lambda ci: ci[1] if ci else None)
    return df


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    """A column that older rows (an exported reference, a store from before the figure existed) may lack."""
    return df[name] if name in df else pd.Series(None, index=df.index, dtype=object)


def _missing(value) -> bool:
    return value is None or pd.isna(value)


def _pct(value) -> str:
    return "" if _missing(value) else f"{value * 100:.1f}"


def _num(value, digits: int = 1, suffix: str = "") -> str:
    return "" if _missing(value) else f"{value:,.{digits}f}{suffix}"


def _millions(value) -> str:
    return "" if _missing(value) else _num(value / 1e6, 2)


def _points(value, reference: bool) -> str:
    """Accuracy change in percentage points, with a real minus sign; the reference row itself shows a dash."""
    if reference:
        return "—"
    if _missing(value):
        return ""
    shown = round(float(value), 1)
    sign = "+" if shown > 0 else ("−" if shown < 0 else "")
    return f"{sign}{abs(shown):.1f} pts"


def _paired_p(p, reference: bool) -> str:
    """McNemar's exact p against the teacher on the same test items: how often a change this large comes from noise
    alone (below 0.05: a real change). The reference row shows a dash; a row without the test shows nothing."""
    if reference:
        return "—"
    if _missing(p):
        return ""
    return "< 0.001" if p < 0.001 else (f"{p:.3f}" if p < 0.01 else f"{p:.2f}")


def _accuracy_ci(accuracy, low, high) -> str:
    if _missing(accuracy):
        return ""
    return _pct(accuracy) + ("" if _missing(low) or _missing(high) else f" ({_pct(low)}–{_pct(high)})")


def _variant_labels(df: pd.DataFrame) -> pd.Series:
    """Names with the markers a reader must not miss: ⚠ for warnings, ✖ BROKEN for a bundle that fails its check."""
    status = df["status"] if "status" in df else pd.Series("ok", index=df.index)
    warnings = df["warnings"] if "warnings" in df else pd.Series(None, index=df.index, dtype=object)
    return (df["name"] + warnings.map(lambda w: " ⚠" if isinstance(w, (list, tuple)) and len(w) else "")
            + status.map(lambda s: " ✖ BROKEN" if s != "ok" and not _missing(s) else ""))


def leaderboard(rows: list[dict], full: bool = False) -> pd.DataFrame:
    """The leaderboard as shown. By default only the headline columns people come for (accuracy with its CI, the
    change against the teacher, speed-up, size); ``full=True`` adds F1, agreement, ECE, params, p95, throughput,
    retention and CPU cost. A ``status`` column appears when some bundle is broken, to say why."""
    df = frame(rows)
    if df.empty:
        return pd.DataFrame(columns=["variant"])
    columns = {
        "variant": _variant_labels(df),
        "technique": [technique(r) for r in rows],
        "accuracy % (95% CI)": [_accuracy_ci(*v) for v in zip(df["accuracy"], df["ci_low"], df["ci_high"])],
        "vs teacher": [_points(v, ref) for v, ref in zip(df["points"], df["is_reference"])],
        "McNemar p": [_paired_p(p, ref) for p, ref in zip(_column(df, "mcnemar_p_vs_teacher"), df["is_reference"])],
        "speed-up": df["speedup"].map(lambda v: _num(v, 2, "x")),
        "smaller": df["size_ratio"].map(lambda v: _num(v, 2, "x")),
        "p50 ms": df["latency_p50_ms"].map(lambda v: _num(v, 2)),
        "MB": df["size_mb"].map(_num),
    }
    out = pd.DataFrame(columns)[HEADLINE_COLUMNS] if not full else _full(df, columns)
    if "status" in df and (df["status"].fillna("ok") != "ok").any():  # say why, next to the figures it makes stale
        out["status"] = df["status"].fillna("ok")
    return out


def _full(df: pd.DataFrame, headline: dict) -> pd.DataFrame:
    """Every figure we have, for people who compare variants in depth (and for the CSV-minded)."""
    return pd.DataFrame({
        "variant": headline["variant"], "technique": headline["technique"],
        "kind": df["kind"], "parent": df["parent"].fillna(""),
        "accuracy %": df["accuracy"].map(_pct),
        "95% CI": ["" if _missing(lo) else f"{_pct(lo)}–{_pct(hi)}" for lo, hi in zip(df["ci_low"], df["ci_high"])],
        "vs teacher": headline["vs teacher"], "McNemar p": headline["McNemar p"],
        "macro-F1": df["f1"].map(lambda v: _num(v, 3)),
        "agreement %": df["agreement"].map(_pct),
        "ECE": df["ece"].map(lambda v: _num(v, 3)),
        "size MB": df["size_mb"].map(_num),
        "params M": df["params"].map(_millions),
        "non-zero M": df["nonzero_params"].map(_millions),
        "p50 ms": headline["p50 ms"],
        "p95 ms": df["latency_p95_ms"].map(lambda v: _num(v, 2)),
        "texts/s": df["throughput"].map(lambda v: _num(v, 0)),
        "speed-up": headline["speed-up"], "smaller": headline["smaller"],
        "retention %": df["retention"].map(_pct),
        "CPU-s / 1k": df["cpu_seconds_per_1000"].map(lambda v: _num(v, 2)),
    })


def provenance_items(rows: list[dict]) -> list[tuple[list[str], str]]:
    """Where the speed figures came from, as (variant names, plain sentence) per benchmark session: one source for
    the Markdown panel and the HTML report, so neither has to undo the other's markup."""
    seen: dict = {}
    for row in rows:
        p = row.get("provenance")
        if p:
            seen.setdefault(p.get("bench_fingerprint", p.get("measured_at")), (p, []))[1].append(row["name"])
    return [(names, _provenance_text(p)) for p, names in seen.values()]


def _provenance_text(p: dict) -> str:
    flags = ", ".join(k for k, v in p["cpu"]["flags"].items() if v) or "none of interest"
    lengths = p["sequence_length"]
    versions = ", ".join(f"{k} {v}" for k, v in p["versions"].items())
    other, steal = p.get("other_processes_cpu_share"), p.get("hypervisor_steal_share")
    return (f"measured {p['measured_at']} on {p['cpu']['model']} "
            f"({p['cpu']['usable_cores']} usable cores; flags: {flags}), {p['threads']} threads; {versions}. "
            f"{p['samples']} {p['split']} sentences × {p['repeats']} interleaved rounds at batch 1 "
            f"({p['latency_includes']}); throughput at batch {p['batch_sizes']['throughput']}. Tokens per sentence: "
            f"mean {lengths['mean']}, p95 {lengths['p95']}, max {lengths['max']}. Other processes used "
            f"{'' if other is None else f'{other:.1%}'} of the CPU meanwhile"
            f"{'' if steal is None else f', and the hypervisor took {steal:.1%} (steal)'}.")


NO_BENCHMARK = "No benchmark yet: speed and memory columns fill in after a build's bench stage."


def provenance_markdown(rows: list[dict]) -> str:
    """Where the speed figures came from, for the 'provenance' panel."""
    items = provenance_items(rows)
    if not items:
        return NO_BENCHMARK
    return "\n\n".join(f"**{', '.join(names)}** — {text}" for names, text in items)


def predictions_table(results: list[dict], teacher: str | None) -> pd.DataFrame:
    """``results``: one dict per variant with name, label, confidence, latency_ms; the teacher's label is the reference."""
    reference = next((r["label"] for r in results if r["name"] == teacher), None)
    data = [[r["name"], r["label"], round(r["confidence"], 4), round(r["latency_ms"], 1),
             "" if reference is None or r["name"] == teacher or str(r["label"]).startswith("broken")
             else ("yes" if r["label"] == reference else "NO")]
            for r in results]
    return pd.DataFrame(data, columns=PREDICTION_COLUMNS)


def batch_table(texts: list, labels: dict[str, list[str]], pair: tuple[str, str] | None = None) -> pd.DataFrame:
    """One row per text, one column per variant's label. A pair task's texts are pairs, shown (and downloaded) as
    two columns named as in its data (``pair``), so the CSV goes back into a batch check as it is."""
    if pair:
        return pd.DataFrame({pair[0]: [a for a, _ in texts], pair[1]: [b for _, b in texts], **labels})
    return pd.DataFrame({"text": texts, **labels})


def agreement_summary(labels: dict[str, list[str]], teacher: str | None) -> pd.DataFrame:
    """Per variant: how many texts it labels as the teacher does."""
    if teacher not in labels:
        return pd.DataFrame(columns=["variant", "agrees with teacher", "of", "agreement %"])
    reference = labels[teacher]
    rows = []
    for name, values in labels.items():
        same = sum(a == b for a, b in zip(values, reference))
        rows.append([name, same, len(reference), round(100 * same / len(reference), 1) if reference else None])
    return pd.DataFrame(rows, columns=["variant", "agrees with teacher", "of", "agreement %"])


def markdown(rows: list[dict], f1: bool = False) -> str:
    """A README-ready Markdown table of the headline figures, ratios against the teacher. ``f1``: add the F1 of the
    positive class with its CI and its change against the teacher (binary tasks: what MRPC reports)."""
    df = frame(rows)
    if df.empty:
        return ""
    f1_head = "F1 % (95% CI) | F1 vs teacher | " if f1 else ""
    head = (f"| variant | kind (parent) | accuracy % (95% CI) | acc vs teacher | McNemar p | {f1_head}agreement % "
            f"| MB | params M (non-zero) | p50 ms | p95 ms | speed-up | smaller |") if f1 else (
        "| variant | kind (parent) | accuracy % (95% CI) | of teacher | McNemar p | agreement % | MB "
        "| params M (non-zero) | p50 ms | p95 ms | speed-up | smaller |")
    heldout = "heldout_accuracy" in df and df["heldout_accuracy"].notna().any()
    if heldout:  # the recipe chose checkpoints on a selection set: its reporting half's accuracy
        head = head.replace(" | agreement %", " | held-out % (95% CI) | agreement %")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    reference = _f1_positive(df.loc[df["is_reference"]].iloc[0])[0]
    paired = _column(df, "mcnemar_p_vs_teacher")
    for i, r in df.iterrows():
        parent = f" ({r['parent']})" if isinstance(r["parent"], str) and r["parent"] else ""
        p = _paired_p(paired[i], r["is_reference"])
        kept = (f"{_signed(r['points'])} | {p} | {_f1_cells(r, reference)} | " if f1
                else f"{_pct(r['retention'])} % | {p} | ")
        if heldout:
            low, high = r["heldout_accuracy_ci"] if isinstance(r["heldout_accuracy_ci"], list) else (None, None)
            kept += (f"{_pct(r['heldout_accuracy'])} ({_pct(low)}–{_pct(high)}) | "
                     if not _missing(r["heldout_accuracy"]) else " | ")
        lines.append(
            f"| {r['name']} | {r['kind']}{parent} | {_pct(r['accuracy'])} ({_pct(r['ci_low'])}–{_pct(r['ci_high'])}) "
            f"| {kept}{_pct(r['agreement'])} | {_num(r['size_mb'])} "
            f"| {_num(r['params'] / 1e6, 2)} ({_num(r['nonzero_params'] / 1e6, 2)}) | {_num(r['latency_p50_ms'], 2)} "
            f"| {_num(r['latency_p95_ms'], 2)} | {_num(r['speedup'], 1, 'x')} | {_num(r['size_ratio'], 1, 'x')} |")
    return "\n".join(lines)


def _f1_positive(row) -> tuple:
    """(F1 of class 1, CI low, CI high): from a store row's metrics, or as an exported reference row holds them."""
    metrics = row.get("metrics") if isinstance(row.get("metrics"), dict) else {}
    if "f1_positive" in metrics:
        return tuple(metrics.get(k) for k in ("f1_positive", "f1_positive_ci_low", "f1_positive_ci_high"))
    ci = row.get("f1_positive_ci") if isinstance(row.get("f1_positive_ci"), list) else [None, None]
    return row.get("f1_positive"), ci[0], ci[1]


def _f1_cells(row, reference) -> str:
    value, low, high = _f1_positive(row)
    if _missing(value):
        return " | "
    points = float(_pct(value)) - float(_pct(reference)) if not _missing(reference) else None
    return f"{_pct(value)} ({_pct(low)}–{_pct(high)}) | {_signed(points)}"


def _signed(points) -> str:
    return "" if _missing(points) else f"{points:+.1f}"
