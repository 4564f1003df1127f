"""Which compression techniques pay on this machine: from measured speed-ups where the store has them, from the
CPU's instruction sets where it does not. Pure functions of their inputs."""

from __future__ import annotations

from dataclasses import dataclass

PAYS, NO, MAYBE = "pays", "does not pay", "uncertain"


@dataclass(frozen=True)
class Advice:
    technique: str
    verdict: str    # pays | does not pay | uncertain
    reason: str
    evidence: str   # "measured" or "CPU flags"


def _technique(row: dict) -> str | None:
    method = (row.get("method") or "").lower()
    return {"dynamic-int8": "int8 (torch dynamic)", "onnx-int8": "int8 (ONNX Runtime)", "bf16": "bf16",
            "fp16": "fp16", "magnitude": "unstructured sparsity", "structured": "structured pruning",
            "onnx-fp32": "ONNX Runtime fp32"}.get(method)


def advise(flags: dict[str, bool], rows: list[dict]) -> list[Advice]:
    """``flags``: ISA flags (``hardware.cpu_info()['flags']``); ``rows``: variants with name, parent, method and
    ``latency_p50_ms`` (None when not benchmarked). Measured speed-ups (variant vs its parent) win over flags."""
    by_name = {r["name"]: r for r in rows}
    measured: dict[str, list[tuple[str, float]]] = {}
    for row in rows:
        technique, parent = _technique(row), by_name.get(row.get("parent") or "")
        if technique and parent and row.get("latency_p50_ms") and parent.get("latency_p50_ms"):
            measured.setdefault(technique, []).append(
                (row["name"], parent["latency_p50_ms"] / row["latency_p50_ms"]))

    vnni = flags.get("avx512_vnni") or flags.get("avx_vnni") or flags.get("amx_int8")
    bf16 = flags.get("avx512_bf16") or flags.get("amx_bf16")
    from_flags = {
        "int8 (torch dynamic)": (PAYS if vnni else MAYBE, "VNNI/AMX int8 instructions present" if vnni else
                                 "no VNNI/AMX: int8 matmuls run without their fast path"),
        "int8 (ONNX Runtime)": (PAYS if vnni else MAYBE, "VNNI/AMX int8 instructions present" if vnni else
                                "no VNNI/AMX: int8 matmuls run without their fast path"),
        "bf16": (PAYS if bf16 else NO, "AVX512-BF16/AMX present: bf16 matmuls run natively" if bf16 else
                 "no AVX512-BF16/AMX: bf16 is emulated and slow"),
        "fp16": (NO, "CPUs have no fast fp16 matmul kernels: fp16 runs several times slower than fp32"),
        "unstructured sparsity": (NO, "zeros inside dense matrices do not speed up dense kernels; only the "
                                      "stored bundle shrinks"),
        "structured pruning": (PAYS, "removing heads, neurons or layers shrinks every matrix multiplication"),
    }
    advice = []
    for technique, (verdict, reason) in from_flags.items():
        if technique in measured:
            name, speedup = max(measured[technique], key=lambda x: x[1])
            verdict = PAYS if speedup >= 1.15 else (NO if speedup < 1.0 else MAYBE)
            extra = " (only the bundle gets smaller)" if technique == "unstructured sparsity" else ""
            advice.append(Advice(technique, verdict, f"{name}: {speedup:.2f}x its parent's batch-1 speed{extra}",
                                 "measured"))
        else:
            advice.append(Advice(technique, verdict, reason, "CPU flags"))
    return advice


@dataclass(frozen=True)
class Recommendation:
    best: dict | None
    reasons: list[str]
    excluded: list[str]


def recommend(rows: list[dict], max_latency_ms: float | None = None, max_size_mb: float | None = None,
              min_retention: float | None = None, flags: dict[str, bool] | None = None) -> Recommendation:
    """The most accurate variant within the limits (ties: the faster), and why; limits of None are ignored.

    ``min_retention`` is a fraction of the teacher's test accuracy (0.99 = within 1 %).
    """
    teacher = next((r for r in rows if r["kind"] == "teacher"), None)
    feasible, excluded = [], []
    for row in rows:
        why = []
        if row.get("accuracy") is None:
            why.append("no test accuracy")
        if max_latency_ms is not None and (row.get("latency_p50_ms") is None or row["latency_p50_ms"] > max_latency_ms):
            why.append("not measured" if row.get("latency_p50_ms") is None else
                       f"p50 {row['latency_p50_ms']:.1f} ms > {max_latency_ms:g} ms")
        if max_size_mb is not None and (row.get("size_mb") is None or row["size_mb"] > max_size_mb):
            why.append(f"{row.get('size_mb') or 0:.1f} MB > {max_size_mb:g} MB")
        if min_retention is not None and teacher and teacher.get("accuracy") and row.get("accuracy") is not None:
            retention = row["accuracy"] / teacher["accuracy"]
            if retention < min_retention:
                why.append(f"keeps {retention:.1%} of the teacher's accuracy < {min_retention:.1%}")
        (excluded.append(f"{row['name']}: {'; '.join(why)}") if why else feasible.append(row))
    if not feasible:
        return Recommendation(None, ["no variant meets every limit; relax one"], excluded)
    best = max(feasible, key=lambda r: (r["accuracy"], -(r.get("latency_p50_ms") or float("inf"))))
    reasons = [f"{best['name']} is the most accurate of the {len(feasible)} variant(s) within the limits: "
               f"test accuracy {best['accuracy']:.1%}"]
    if teacher and teacher.get("accuracy"):
        reasons.append(f"keeps {best['accuracy'] / teacher['accuracy']:.1%} of the teacher's accuracy")
        if best.get("latency_p50_ms") and teacher.get("latency_p50_ms"):
            reasons.append(f"{teacher['latency_p50_ms'] / best['latency_p50_ms']:.1f}x faster than the teacher "
                           f"({best['latency_p50_ms']:.1f} vs {teacher['latency_p50_ms']:.1f} ms p50)")
        if best.get("size_mb") and teacher.get("size_mb"):
            reasons.append(f"{teacher['size_mb'] / best['size_mb']:.1f}x smaller ({best['size_mb']:.1f} MB)")
    technique = _technique(best)
    for advice in advise(flags or {}, rows):
        if advice.technique == technique and advice.verdict != PAYS:
            reasons.append(f"warning — {advice.technique}: {advice.reason}")
    for warning in best.get("warnings") or []:
        reasons.append(f"warning — {warning}")
    return Recommendation(best, reasons, excluded)
