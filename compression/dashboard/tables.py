"""Pure table builders: variant rows (as ``cli._variant_row`` makes them) in, pandas DataFrames out."""

from __future__ import annotations

import pandas as pd

PREDICTION_COLUMNS = ["variant", "label", "confidence", "latency ms", "agrees with teacher"]


def frame(rows: list[dict]) -> pd.DataFrame:
    """One row per variant with the teacher-relative figures stakeholders ask for."""
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    teacher = df[df["kind"] == "teacher"]
    ref = teacher.iloc[0] if len(teacher) else df.iloc[0]
    df["retention"] = df["accuracy"] / ref["accuracy"] if ref["accuracy"] else None
    df["speedup"] = ref["latency_p50_ms"] / df["latency_p50_ms"] if ref["latency_p50_ms"] else None
    df["size_ratio"] = ref["size_mb"] / df["size_mb"] if ref["size_mb"] else None
    df["ci_low"] = df["accuracy_ci"].map(lambda ci: ci[0] if ci else None)
    df["ci_high"] = df["accuracy_ci"].map(lambda ci: ci[1] if ci else None)
    return df


def _pct(value) -> str:
    return "" if value is None or pd.isna(value) else f"{value * 100:.1f}"


def _num(value, digits: int = 1, suffix: str = "") -> str:
    return "" if value is None or pd.isna(value) else f"{value:,.{digits}f}{suffix}"


def leaderboard(rows: list[dict]) -> pd.DataFrame:
    """The leaderboard as shown: accuracy with CI, F1, agreement, ECE, size, params, latency, throughput, ratios."""
    df = frame(rows)
    if df.empty:
        return pd.DataFrame(columns=["variant"])
    out = pd.DataFrame({
        "variant": df["name"] + df["warnings"].map(lambda w: " ⚠" if w else "")
        + df.get("status", pd.Series("ok", index=df.index)).map(lambda s: " ✖ BROKEN" if s != "ok" else ""),
        "kind": df["kind"], "parent": df["parent"].fillna(""),
        "accuracy %": df["accuracy"].map(_pct),
        "95% CI": [f"{_pct(lo)}–{_pct(hi)}" if lo is not None and not pd.isna(lo) else ""
                   for lo, hi in zip(df["ci_low"], df["ci_high"])],
        "macro-F1": df["f1"].map(lambda v: _num(v, 3)),
        "agreement %": df["agreement"].map(_pct),
        "ECE": df["ece"].map(lambda v: _num(v, 3)),
        "size MB": df["size_mb"].map(_num),
        "params M": df["params"].map(lambda v: _num(v / 1e6 if v is not None and not pd.isna(v) else None, 2)),
        "non-zero M": df["nonzero_params"].map(lambda v: _num(v / 1e6 if v is not None and not pd.isna(v) else None, 2)),
        "p50 ms": df["latency_p50_ms"].map(lambda v: _num(v, 2)),
        "p95 ms": df["latency_p95_ms"].map(lambda v: _num(v, 2)),
        "texts/s": df["throughput"].map(lambda v: _num(v, 0)),
        "speed-up": df["speedup"].map(lambda v: _num(v, 2, "x")),
        "smaller": df["size_ratio"].map(lambda v: _num(v, 2, "x")),
        "retention %": df["retention"].map(_pct),
        "CPU-s / 1k": df["cpu_seconds_per_1000"].map(lambda v: _num(v, 2)),
    })
    if "status" in df and (df["status"] != "ok").any():  # say why, next to the figures it makes stale
        out["status"] = df["status"]
    return out


def provenance_markdown(rows: list[dict]) -> str:
    """Where the speed figures came from, for the 'provenance' panel."""
    seen = {}
    for row in rows:
        p = row.get("provenance")
        if p:
            seen.setdefault(p.get("bench_fingerprint", p.get("measured_at")), (p, []))[1].append(row["name"])
    if not seen:
        return "No benchmark yet: speed and memory columns fill in after a build's bench stage."
    parts = []
    for p, names in seen.values():
        flags = ", ".join(k for k, v in p["cpu"]["flags"].items() if v) or "none of interest"
        lengths = p["sequence_length"]
        versions = ", ".join(f"{k} {v}" for k, v in p["versions"].items())
        other, steal = p.get("other_processes_cpu_share"), p.get("hypervisor_steal_share")
        parts.append(
            f"**{', '.join(names)}** — measured {p['measured_at']} on {p['cpu']['model']} "
            f"({p['cpu']['usable_cores']} usable cores; flags: {flags}), {p['threads']} threads; {versions}. "
            f"{p['samples']} {p['split']} sentences × {p['repeats']} interleaved rounds at batch 1 "
            f"({p['latency_includes']}); throughput at batch {p['batch_sizes']['throughput']}. Tokens per sentence: "
            f"mean {lengths['mean']}, p95 {lengths['p95']}, max {lengths['max']}. Other processes used "
            f"{'' if other is None else f'{other:.1%}'} of the CPU meanwhile"
            f"{'' if steal is None else f', and the hypervisor took {steal:.1%} (steal)'}.")
    return "\n\n".join(parts)


def predictions_table(results: list[dict], teacher: str | None) -> pd.DataFrame:
    """``results``: one dict per variant with name, label, confidence, latency_ms; the teacher's label is the reference."""
    reference = next((r["label"] for r in results if r["name"] == teacher), None)
    data = [[r["name"], r["label"], round(r["confidence"], 4), round(r["latency_ms"], 1),
             "" if reference is None or r["name"] == teacher or str(r["label"]).startswith("broken")
             else ("yes" if r["label"] == reference else "NO")]
            for r in results]
    return pd.DataFrame(data, columns=PREDICTION_COLUMNS)


def batch_table(texts: list[str], labels: dict[str, list[str]]) -> pd.DataFrame:
    """One row per text, one column per variant's label."""
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


def markdown(rows: list[dict]) -> str:
    """A README-ready Markdown table of the headline figures, ratios against the teacher."""
    df = frame(rows)
    if df.empty:
        return ""
    head = ("| variant | kind (parent) | accuracy % (95% CI) | of teacher | agreement % | MB | params M (non-zero) "
            "| p50 ms | p95 ms | speed-up | smaller |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for _, r in df.iterrows():
        parent = f" ({r['parent']})" if isinstance(r["parent"], str) and r["parent"] else ""
        lines.append(
            f"| {r['name']} | {r['kind']}{parent} | {_pct(r['accuracy'])} ({_pct(r['ci_low'])}–{_pct(r['ci_high'])}) "
            f"| {_pct(r['retention'])} % | {_pct(r['agreement'])} | {_num(r['size_mb'])} "
            f"| {_num(r['params'] / 1e6, 2)} ({_num(r['nonzero_params'] / 1e6, 2)}) | {_num(r['latency_p50_ms'], 2)} "
            f"| {_num(r['latency_p95_ms'], 2)} | {_num(r['speedup'], 1, 'x')} | {_num(r['size_ratio'], 1, 'x')} |")
    return "\n".join(lines)
