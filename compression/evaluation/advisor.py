"""Which compression techniques pay on this machine: from measured speed-ups where the store has them, from the
CPU's instruction sets where it does not. Pure functions of their inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from compression.core import registry as techniques

PAYS, NO, MAYBE = "pays", "does not pay", "uncertain"


@dataclass(frozen=True)
class Advice:
    technique: str
    verdict: str    # pays | does not pay | uncertain
    reason: str
    evidence: str   # "measured" or "CPU flags"


def _technique(row: dict) -> str | None:
    """The registered technique's label for a variant's method (None for the teacher and unknown methods)."""

    return techniques.label(row.get("method"))


def advise(flags: dict[str, bool], rows: list[dict]) -> list[Advice]:
    """``flags``: ISA flags (``hardware.cpu_info()['flags']``); ``rows``: variants with name, parent, method and
    ``latency_p50_ms`` (None when not benchmarked). Measured speed-ups (variant vs its parent) win over what each
    registered technique says of the CPU's flags."""

    by_name = {r["name"]: r for r in rows}
    measured: dict[str, list[tuple[str, float]]] = {}
    for row in rows:
        technique, parent = _technique(row), by_name.get(row.get("parent") or "")
        if technique and parent and row.get("latency_p50_ms") and parent.get("latency_p50_ms"):
            measured.setdefault(technique, []).append(
                (row["name"], parent["latency_p50_ms"] / row["latency_p50_ms"]))
    advice = []
    for t in (t for t in techniques.load().values() if t.advise is not None):
        if t.label in measured:
            name, speedup = max(measured[t.label], key=lambda x: x[1])
            verdict = PAYS if speedup >= 1.15 else (NO if speedup < 1.0 else MAYBE)
            advice.append(Advice(t.label, verdict, f"{name}: {speedup:.2f}x its parent's batch-1 speed",
                                 "measured"))
        else:
            advice.append(Advice(t.label, *t.advise(flags), "CPU flags"))
    return advice


@dataclass(frozen=True)
class Recommendation:
    best: dict | None
    reasons: list[str]
    excluded: list[str]


def recommend(rows: list[dict], max_latency_ms: float | None = None, max_size_mb: float | None = None,
              min_retention: float | None = None, flags: dict[str, bool] | None = None, *,
              max_p95_ms: float | None = None, max_cpu_s_per_1000: float | None = None) -> Recommendation:
    """The most accurate variant within the limits (ties: the faster), and why; limits of None are ignored.

    ``min_retention`` is a fraction of the teacher's test accuracy (0.99 = within 1 %); ``max_p95_ms`` bounds the
    slow tail a real-time service must meet; ``max_cpu_s_per_1000`` bounds what a batch job pays per 1,000 texts.
    """
    teacher = next((r for r in rows if r["kind"] == "teacher"), None)
    limits = [("latency_p50_ms", max_latency_ms, "p50 {:.1f} ms > {:g} ms"),
              ("size_mb", max_size_mb, "{:.1f} MB > {:g} MB"),
              ("latency_p95_ms", max_p95_ms, "p95 {:.1f} ms > {:g} ms"),
              ("cpu_seconds_per_1000", max_cpu_s_per_1000, "{:.2f} CPU-s per 1,000 texts > {:g}")]
    feasible, excluded = [], []
    for row in rows:
        why = [] if row.get("accuracy") is not None else ["no test accuracy"]
        why += _over_limits(row, limits)
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
    return Recommendation(best, reasons + _against_teacher(best, teacher) + _warnings(best, rows, flags or {}),
                          excluded)


def _over_limits(row: dict, limits: list[tuple[str, float | None, str]]) -> list[str]:
    """Why a row breaks the given upper limits; a missing figure breaks any limit set on it (it may be worse)."""
    why = []
    for key, limit, message in limits:
        if limit is None:
            continue
        if row.get(key) is None:
            why.append("size unknown" if key == "size_mb" else "not measured")
        elif row[key] > limit:
            why.append(message.format(row[key], limit))
    return why


def _against_teacher(best: dict, teacher: dict | None) -> list[str]:
    if not (teacher and teacher.get("accuracy") and best.get("accuracy") is not None):
        return []
    reasons = [f"keeps {best['accuracy'] / teacher['accuracy']:.1%} of the teacher's accuracy"]
    if best.get("latency_p50_ms") and teacher.get("latency_p50_ms"):
        reasons.append(f"{teacher['latency_p50_ms'] / best['latency_p50_ms']:.1f}x faster than the teacher "
                       f"({best['latency_p50_ms']:.1f} vs {teacher['latency_p50_ms']:.1f} ms p50)")
    if best.get("size_mb") and teacher.get("size_mb"):
        reasons.append(f"{teacher['size_mb'] / best['size_mb']:.1f}x smaller ({best['size_mb']:.1f} MB)")
    return reasons


def _warnings(best: dict, rows: list[dict], flags: dict[str, bool] | None) -> list[str]:
    """What the reader should know before shipping ``best``: techniques that do not pay here, recorded warnings.
    Without ``flags`` (CPU unknown) only measured verdicts count: guessing from absent flags would cry wolf."""
    technique = _technique(best)
    reasons = [f"warning — {a.technique}: {a.reason}" for a in advise(flags or {}, rows)
               if a.technique == technique and a.verdict != PAYS and (flags is not None or a.evidence == "measured")]
    return reasons + [f"warning — {w}" for w in best.get("warnings") or []]


Objective = Literal["size_mb", "size_and_latency", "latency_p95_ms", "cpu_seconds_per_1000"]
OBJECTIVES: dict[str, tuple[str, str]] = {  # objective: (what it minimises, in words; how its value reads)
    "size_mb": ("bundle size", "{:,.1f} MB"),
    "size_and_latency": ("the worse of size and p50 latency against the teacher's", "{:.1%} of the teacher's"),
    "latency_p95_ms": ("p95 latency at batch 1", "{:,.2f} ms"),
    "cpu_seconds_per_1000": ("CPU-seconds per 1,000 predictions", "{:,.2f} CPU-s"),
}


def format_value(objective: Objective, value: float | None) -> str:
    """An objective's value as a reader wants it (with its unit); '' when missing."""
    return "" if value is None else OBJECTIVES[objective][1].format(value)


@dataclass(frozen=True)
class Scenario:
    """A deployment target and the one figure it is judged by (lower is better)."""

    name: str
    title: str
    description: str
    objective: Objective

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective {self.objective!r} is not one of {', '.join(OBJECTIVES)}")


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("mobile", "Mobile app", "Shipped inside an app download: the smallest bundle wins.", "size_mb"),
    # Edge: the device has a storage budget and a latency budget and must meet both, so the variant is judged by its
    # worse ratio to the teacher (minimax). A product would let a big win on one axis hide a loss on the other:
    # a model 20x smaller but 2x slower scores 0.1 there and fails the latency budget; here it scores 2.
    Scenario("edge", "Edge device", "Small and fast together: judged by the worse of its size and p50 latency "
             "relative to the teacher.", "size_and_latency"),
    Scenario("real-time", "Real-time API", "Answers a person waiting, one text at a time: the lowest p95 "
             "latency wins.", "latency_p95_ms"),
    Scenario("cost", "Batch jobs at low cost", "Labels large volumes on rented CPUs: the fewest CPU-seconds per "
             "1,000 predictions wins.", "cpu_seconds_per_1000"),
)


def scenario_by_name(name: str) -> Scenario:
    """A preset by name (as a UI drop-down or the CLI passes it)."""
    for s in SCENARIOS:
        if s.name == name:
            return s
    raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(s.name for s in SCENARIOS)}")


def objective_value(row: dict, objective: Objective, teacher: dict | None) -> float | None:
    """The figure a scenario minimises for ``row``; None when a figure it needs is missing."""
    if objective != "size_and_latency":
        return row.get(objective)
    keys = ("size_mb", "latency_p50_ms")
    if teacher is None or any(not teacher.get(k) or row.get(k) is None for k in keys):
        return None
    return max(row[k] / teacher[k] for k in keys)


def best_for(rows: list[dict], scenario: Scenario | str, min_retention: float = 0.97) -> Recommendation:
    """The variant a scenario should ship: among healthy variants (status ok or unknown) that keep at least
    ``min_retention`` of the teacher's test accuracy and have the figures the objective needs, the one with the
    lowest objective value; exact ties go to the more accurate."""
    preset = scenario if isinstance(scenario, Scenario) else scenario_by_name(scenario)
    teacher = next((r for r in rows if r.get("kind") == "teacher"), None)
    if not (teacher and teacher.get("accuracy")):
        return Recommendation(None, ["no teacher accuracy to measure retention against"], [])
    feasible, excluded = [], []
    for row in rows:
        why = _unfit(row, preset, teacher, min_retention)
        (excluded.append(f"{row['name']}: {why}") if why else feasible.append(row))
    if not feasible:
        return Recommendation(None, [f"no healthy variant keeps {min_retention:.0%} of the teacher's accuracy "
                                     f"and has the figures for {OBJECTIVES[preset.objective][0]}"], excluded)
    best = min(feasible, key=lambda r: (objective_value(r, preset.objective, teacher), -r["accuracy"]))
    value = format_value(preset.objective, objective_value(best, preset.objective, teacher))
    reasons = [f"{preset.title}: {best['name']} does best on {OBJECTIVES[preset.objective][0]} ({value}) among the "
               f"{len(feasible)} variant(s) that keep at least {min_retention:.0%} of the teacher's accuracy"]
    if best is teacher:
        reasons.append("no compressed variant qualifies: ship the teacher, or accept a lower accuracy floor")
    else:
        reasons += _against_teacher(best, teacher)
    return Recommendation(best, reasons + _warnings(best, rows, None), excluded)


def _unfit(row: dict, preset: Scenario, teacher: dict, min_retention: float) -> str:
    """Why ``row`` cannot be a scenario's pick ('' when it can)."""
    status = row.get("status") or "ok"
    if status != "ok":
        return status
    if row.get("accuracy") is None:
        return "no test accuracy"
    if row["accuracy"] / teacher["accuracy"] < min_retention:
        return f"keeps {row['accuracy'] / teacher['accuracy']:.1%} of the teacher's accuracy < {min_retention:.1%}"
    if objective_value(row, preset.objective, teacher) is None:
        return f"not measured ({OBJECTIVES[preset.objective][0]})"
    return ""


def scenario_summary(rows: list[dict], min_retention: float = 0.97) -> list[dict]:
    """One line per preset scenario for a summary table: the pick and what it keeps and gains against the teacher.

    Keys: scenario, title, description, variant (None when nothing qualifies; then ``reason`` says why), its
    accuracy and size_mb, accuracy_kept (fraction of the teacher's), speedup (teacher p50 / variant p50),
    size_ratio (teacher bytes / variant bytes), objective (in words), value (the objective's figure) and value_text
    (with its unit).
    """
    teacher = next((r for r in rows if r.get("kind") == "teacher"), None)
    summary = []
    for preset in SCENARIOS:
        rec = best_for(rows, preset, min_retention)
        best = rec.best or {}
        value = objective_value(best, preset.objective, teacher) if rec.best else None
        summary.append({
            "scenario": preset.name, "title": preset.title, "description": preset.description,
            "variant": best.get("name"), "reason": None if rec.best else rec.reasons[0],
            "accuracy": best.get("accuracy"), "size_mb": best.get("size_mb"),
            "accuracy_kept": _ratio(best.get("accuracy"), (teacher or {}).get("accuracy")),
            "speedup": _ratio((teacher or {}).get("latency_p50_ms"), best.get("latency_p50_ms")),
            "size_ratio": _ratio((teacher or {}).get("size_mb"), best.get("size_mb")),
            "objective": OBJECTIVES[preset.objective][0], "value": value,
            "value_text": format_value(preset.objective, value),
        })
    return summary


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top is not None and bottom else None
