"""What a visitor sees: the headline leaderboard, technique labels, deployment-scenario picks, the printable HTML
report and charts whose labels fit. Pure functions only: no browser, no models."""

import math
import re

import pytest

from compression.evaluation import advisor
from compression.evaluation.advisor import SCENARIOS, Scenario, best_for, recommend, scenario_summary
from compression.presentation import figures, tables
from compression.presentation.report import chart_title, html_report

HEADLINE = ["variant", "technique", "accuracy % (95% CI)", "vs teacher", "McNemar p", "speed-up", "smaller", "p50 ms",
            "MB"]


def _row(name, kind, acc, p50, mb, method=None, *, p95=None, cpu=None, parent="teacher", status="ok", warnings=()):
    return {"name": name, "kind": kind, "parent": None if kind == "teacher" else parent, "method": method,
            "accuracy": acc, "accuracy_ci": [acc - 0.02, acc + 0.02], "f1": acc, "agreement": 0.95, "ece": 0.05,
            "size_mb": mb, "params": 1e6, "nonzero_params": 9e5, "latency_p50_ms": p50,
            "latency_p95_ms": p95 if p95 is not None else (p50 * 1.3 if p50 is not None else None),
            "throughput": 1000 / p50 if p50 else None,
            "cpu_seconds_per_1000": cpu if cpu is not None else (p50 * 2 if p50 is not None else None),
            "peak_memory_mb": mb * 2, "warnings": list(warnings), "bundle": f"/b/{name}", "status": status,
            "provenance": None}


ROWS = [_row("teacher", "teacher", 0.90, 40.0, 400.0),
        _row("student", "student", 0.88, 10.0, 90.0, "pretrained"),
        _row("student-int8", "quantized", 0.879, 4.0, 23.0, "dynamic-int8", parent="student"),
        _row("student-fp16", "quantized", 0.88, 35.0, 45.0, "fp16", parent="student",
             warnings=["fp16 is slow on CPU"]),
        _row("student-sparse", "pruned", 0.86, 10.2, 50.0, "magnitude", parent="student")]

# Each scenario has its own winner; "sloppy" and "broken" would win everything if they were allowed to.
SCENARIO_ROWS = [
    _row("teacher", "teacher", 0.90, 40.0, 400.0, p95=52.0, cpu=80.0),
    _row("tiny", "quantized", 0.88, 20.0, 20.0, "dynamic-int8", p95=30.0, cpu=40.0),        # mobile
    _row("balanced", "student", 0.885, 8.0, 60.0, "pretrained", p95=14.0, cpu=15.0),        # edge
    _row("fast", "pruned", 0.89, 6.0, 150.0, "structured", p95=7.0, cpu=12.0),             # real-time
    _row("cheap", "quantized", 0.88, 7.0, 200.0, "onnx-int8", p95=15.0, cpu=5.0),          # cost
    _row("sloppy", "student", 0.80, 1.0, 5.0, "pretrained-layers", p95=1.2, cpu=1.0),      # below 97 % of the teacher
    _row("broken", "quantized", 0.90, 0.5, 1.0, "dynamic-int8", p95=0.6, cpu=0.5,
         status="broken: weights.safetensors changed since the bundle was saved (SHA-256 mismatch)"),
    _row("unmeasured", "student", 0.90, None, 30.0, "teacher-layers"),
]

PROVENANCE = {"bench_fingerprint": "abc", "measured_at": "2026-11-28T08:23:17+0000",
              "cpu": {"model": "AMD EPYC", "usable_cores": 2, "flags": {"avx512_vnni": True, "amx_int8": False}},
              "sequence_length": {"mean": 24.5, "p95": 43, "max": 52}, "versions": {"torch": "2.13.0"},
              "threads": 2, "samples": 200, "split": "test", "repeats": 5, "latency_includes": "tokenization",
              "batch_sizes": {"throughput": 32}, "other_processes_cpu_share": 0.003, "hypervisor_steal_share": None}


# --- leaderboard ---------------------------------------------------------------------------------------------------

def test_headline_leaderboard_has_the_columns_people_come_for_in_order():
    board = tables.leaderboard(ROWS)
    assert list(board.columns) == HEADLINE
    int8 = board[board["variant"] == "student-int8"].iloc[0]
    assert int8["accuracy % (95% CI)"] == "87.9 (85.9–89.9)" and int8["technique"] == "int8 (torch dynamic)"
    assert int8["speed-up"] == "10.00x" and int8["smaller"] == "17.39x" and int8["p50 ms"] == "4.00"
    assert int8["MB"] == "23.0"
    assert board["variant"][3] == "student-fp16 ⚠"


def test_full_leaderboard_keeps_every_column_and_adds_the_technique():
    full = tables.leaderboard(ROWS, full=True)
    for column in ["variant", "technique", "kind", "parent", "accuracy %", "95% CI", "vs teacher", "macro-F1",
                   "agreement %", "ECE", "size MB", "params M", "non-zero M", "p50 ms", "p95 ms", "texts/s",
                   "speed-up", "smaller", "retention %", "CPU-s / 1k"]:
        assert column in full, column
    int8 = full[full["variant"] == "student-int8"].iloc[0]
    assert int8["retention %"] == "97.7" and int8["95% CI"] == "85.9–89.9"


def test_broken_variant_keeps_its_marker_and_status_column_in_both_tables():
    rows = [dict(r) for r in ROWS]
    rows[2]["status"] = "broken: SHA-256 mismatch"
    for board in (tables.leaderboard(rows), tables.leaderboard(rows, full=True)):
        assert board["variant"][2] == "student-int8 ✖ BROKEN" and board["status"][2] == "broken: SHA-256 mismatch"
    assert list(tables.leaderboard(rows).columns) == HEADLINE + ["status"]
    assert "status" not in tables.leaderboard(ROWS)
    no_status = [{k: v for k, v in r.items() if k not in ("status", "warnings")} for r in ROWS]
    assert list(tables.leaderboard(no_status)["variant"]) == [r["name"] for r in ROWS]  # missing status = healthy


@pytest.mark.parametrize("accuracy, expected", [
    (0.879, "−2.1 pts"), (0.905, "+0.5 pts"), (0.9004, "0.0 pts"), (0.8996, "0.0 pts"), (None, ""),
])
def test_vs_teacher_is_the_accuracy_change_in_points(accuracy, expected):
    rows = [ROWS[0], dict(ROWS[1], accuracy=accuracy, accuracy_ci=[None, None])]
    board = tables.leaderboard(rows)
    assert board["vs teacher"][0] == "—" and board["vs teacher"][1] == expected


def test_vs_teacher_matches_the_accuracies_as_displayed():
    # 90.71 vs 92.66: the table shows 90.7 and 92.7, so the reader expects −2.0 (not the exact −1.95 → −1.9).
    rows = [dict(ROWS[0], accuracy=0.926605), dict(ROWS[1], accuracy=0.907110)]
    board = tables.leaderboard(rows)
    assert board["accuracy % (95% CI)"][1].startswith("90.7 (") and board["vs teacher"][1] == "−2.0 pts"


@pytest.mark.parametrize("p, expected", [(0.0004, "< 0.001"), (0.0042, "0.004"), (0.0312, "0.03"), (1.0, "1.00"),
                                         (None, "")])
def test_mcnemar_p_sits_beside_the_change_in_every_table(p, expected):
    rows = [dict(ROWS[0], mcnemar_p_vs_teacher=1.0), dict(ROWS[1], mcnemar_p_vs_teacher=p)]
    for board in (tables.leaderboard(rows), tables.leaderboard(rows, full=True)):
        assert board["McNemar p"][0] == "—" and board["McNemar p"][1] == expected
    head, _, teacher, student = tables.markdown(rows).splitlines()
    cells = [c.strip() for c in student.split("|")]
    assert cells[head.split("|").index(" McNemar p ")] == expected
    assert "| McNemar p |" in tables.markdown(rows, f1=True).splitlines()[0]
    assert "McNemar p" in html_report(rows, "run 1")


def test_rows_without_the_paired_test_still_render():  # an exported reference from before the figure existed
    board = tables.leaderboard(ROWS)
    assert list(board["McNemar p"]) == ["—", "", "", "", ""]
    assert tables.markdown(ROWS).count("\n") == len(ROWS) + 1


@pytest.mark.parametrize("kind, method, label", [
    ("teacher", None, "teacher (fine-tuned)"),
    ("student", "pretrained", "distilled: pretrained backbone"),
    ("student", "pretrained-layers", "distilled: layer-dropped backbone"),
    ("student", "teacher-layers", "distilled: half the teacher's layers"),
    ("pruned", "magnitude", "unstructured sparsity"),
    ("pruned", "structured", "structured pruning"),
    ("quantized", "dynamic-int8", "int8 (torch dynamic)"),
    ("quantized", "onnx-int8", "int8 (ONNX Runtime)"),
    ("quantized", "onnx-fp32", "ONNX Runtime fp32"),
    ("quantized", "bf16", "bf16"),
    ("quantized", "fp16", "fp16 (slow on CPU)"),
    ("quantized", "qat-int4", "qat-int4"),
    ("student", None, "student"),
    ("student", float("nan"), "student"),  # a DataFrame's missing method
])
def test_technique_labels(kind, method, label):
    assert tables.technique({"kind": kind, "method": method}) == label


def test_provenance_items_feed_markdown_and_html_alike():
    rows = [dict(ROWS[0], provenance=PROVENANCE), dict(ROWS[1], provenance=PROVENANCE), ROWS[2]]
    items = tables.provenance_items(rows)
    assert len(items) == 1 and items[0][0] == ["teacher", "student"] and "**" not in items[0][1]
    assert "AMD EPYC" in items[0][1] and "avx512_vnni" in items[0][1]
    assert tables.provenance_markdown(rows) == f"**teacher, student** — {items[0][1]}"
    assert tables.provenance_items(ROWS) == [] and tables.provenance_markdown(ROWS).startswith("No benchmark yet")


# --- deployment scenarios ------------------------------------------------------------------------------------------

def test_scenarios_are_four_typed_presets():
    assert [s.name for s in SCENARIOS] == ["mobile", "edge", "real-time", "cost"]
    assert all(isinstance(s, Scenario) and s.title and s.description for s in SCENARIOS)
    with pytest.raises(ValueError, match="size_mb, size_and_latency, latency_p95_ms, cpu_seconds_per_1000"):
        Scenario("x", "X", "x", "speed")
    with pytest.raises(ValueError, match="mobile, edge, real-time, cost"):
        best_for(SCENARIO_ROWS, "desktop")
    with pytest.raises(AttributeError):
        SCENARIOS[0].name = "changed"


@pytest.mark.parametrize("scenario, winner", [
    ("mobile", "tiny"), ("edge", "balanced"), ("real-time", "fast"), ("cost", "cheap"),
])
def test_each_scenario_picks_its_own_variant(scenario, winner):
    rec = best_for(SCENARIO_ROWS, scenario)
    assert rec.best["name"] == winner
    assert any(e.startswith("sloppy: keeps 88.9%") for e in rec.excluded)
    assert any(e.startswith("broken: broken:") for e in rec.excluded)
    assert rec.reasons[0].startswith(f"{advisor.scenario_by_name(scenario).title}: {winner} does best on")


def test_edge_judges_by_the_worse_ratio_not_the_product():
    # tiny is 20x smaller but only 2x faster: its product (0.025) would beat balanced's (0.03); its worse ratio (0.5)
    # does not beat balanced's 0.2, and an edge device must meet both budgets.
    edge = advisor.scenario_by_name("edge")
    teacher = SCENARIO_ROWS[0]
    assert advisor.objective_value(SCENARIO_ROWS[1], edge.objective, teacher) == pytest.approx(0.5)
    assert advisor.objective_value(SCENARIO_ROWS[2], edge.objective, teacher) == pytest.approx(0.2)
    assert advisor.objective_value(SCENARIO_ROWS[-1], edge.objective, teacher) is None  # no latency measured


def test_scenario_floor_broken_and_unmeasured_rows_are_never_picked():
    for s in SCENARIOS:
        for floor in (0.97, 0.9, 0.5):
            best = best_for(SCENARIO_ROWS, s, min_retention=floor).best
            assert best["name"] != "broken"
            assert floor < 0.9 or best["name"] != "sloppy"
    assert best_for(SCENARIO_ROWS, "mobile", min_retention=0.5).best["name"] == "sloppy"  # allowed once the floor is
    assert any(e.startswith("unmeasured: not measured") for e in best_for(SCENARIO_ROWS, "cost").excluded)


def test_scenario_ties_go_to_the_more_accurate():
    rows = [SCENARIO_ROWS[0], _row("a", "quantized", 0.88, 5, 20.0), _row("b", "quantized", 0.89, 6, 20.0)]
    assert best_for(rows, "mobile").best["name"] == "b"
    assert best_for(rows[:1] + rows[:0:-1], "mobile").best["name"] == "b"


def test_scenario_without_candidates_says_why():
    rec = best_for([SCENARIO_ROWS[0], SCENARIO_ROWS[5]], "mobile", min_retention=0.99)
    assert rec.best["name"] == "teacher" and any("ship the teacher" in r for r in rec.reasons)
    rec = best_for(SCENARIO_ROWS[1:], "mobile")
    assert rec.best is None and "no teacher" in rec.reasons[0]
    rec = best_for([dict(SCENARIO_ROWS[0], status="broken: x"), SCENARIO_ROWS[5]], "cost")
    assert rec.best is None and rec.reasons[0].startswith("no healthy variant keeps 97%")


def test_scenario_summary_says_what_each_pick_keeps_and_gains():
    summary = scenario_summary(SCENARIO_ROWS)
    assert [s["scenario"] for s in summary] == ["mobile", "edge", "real-time", "cost"]
    assert [s["variant"] for s in summary] == ["tiny", "balanced", "fast", "cheap"]
    mobile = summary[0]
    assert mobile["title"] == "Mobile app" and mobile["reason"] is None
    assert mobile["accuracy_kept"] == pytest.approx(0.88 / 0.90) and mobile["speedup"] == pytest.approx(2.0)
    assert mobile["size_ratio"] == pytest.approx(20.0) and mobile["value"] == 20.0 and mobile["value_text"] == "20.0 MB"
    assert summary[1]["value"] == pytest.approx(0.2) and summary[3]["value"] == 5.0
    empty = scenario_summary([])
    assert all(s["variant"] is None and s["reason"] and s["speedup"] is None for s in empty)


# --- recommend with the new limits ---------------------------------------------------------------------------------

def test_recommend_limits_p95_and_cpu_cost():
    rec = recommend(ROWS, max_p95_ms=10)
    assert rec.best["name"] == "student-int8" and "student: p95 13.0 ms > 10 ms" in rec.excluded
    rec = recommend(ROWS, max_cpu_s_per_1000=25)
    assert rec.best["name"] == "student"
    assert "teacher: 80.00 CPU-s per 1,000 texts > 25" in rec.excluded
    rec = recommend(ROWS + [_row("new", "student", 0.95, None, 10.0, "pretrained")], max_p95_ms=100)
    assert "new: not measured" in rec.excluded
    assert recommend(ROWS, max_p95_ms=1).best is None
    assert recommend(ROWS, max_latency_ms=20, max_cpu_s_per_1000=10).best["name"] == "student-int8"


def test_recommend_new_limits_are_optional_and_keyword_only():
    assert recommend(ROWS, max_p95_ms=None, max_cpu_s_per_1000=None) == recommend(ROWS)
    assert recommend(ROWS, 20, None, 0.97, {}).best["name"] == "student"  # today's positional order
    with pytest.raises(TypeError):
        recommend(ROWS, None, None, None, None, 10)


# --- HTML report ---------------------------------------------------------------------------------------------------

def _visible(page: str) -> str:
    """The page less its scripts (plotly.js itself contains '**' and '<table')."""
    return re.sub(r"<script\b.*?</script>", "", page, flags=re.S)


def _report(rows=None, **kwargs):
    rows = rows if rows is not None else [dict(r, provenance=PROVENANCE) for r in SCENARIO_ROWS]
    return html_report(rows, **kwargs)


def test_report_starts_with_a_plain_summary_of_the_scenario_picks():
    page = _report()
    summary, leaderboard = page.index("<h2>Summary</h2>"), page.index("<h2>Leaderboard</h2>")
    assert summary < leaderboard < page.index("<h2>Charts</h2>")
    head = page[summary:leaderboard]
    assert "compares 7 compressed variant(s) with the teacher" in head and "1 variant(s) failed" in head
    for title, pick in [("Mobile app", "tiny"), ("Edge device", "balanced"), ("Real-time API", "fast"),
                        ("Batch jobs at low cost", "cheap")]:
        assert title in head and f"<b>{pick}</b>" in head
    assert "97.8%" in head and "20.0x smaller" in head


def test_report_has_no_markdown_and_escapes_what_users_supply():
    rows = [dict(r, provenance=PROVENANCE) for r in SCENARIO_ROWS]
    rows[1]["name"] = "<b>x</b>"
    page = _report(rows, title="Report <script>alert(1)</script>", note="a & <i>b</i> **c**")
    assert "**" not in _visible(page).replace("**c**", "")
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<i>b</i>" not in page
    assert "<ul class='provenance'><li><b>teacher, &lt;b&gt;x&lt;/b&gt;, balanced" in page


def test_report_prints_cleanly():
    page = _report()
    style = page[page.index("<style>"):page.index("</style>")]
    assert "@page" in style and "@media print" in style and "break-inside:avoid" in style
    assert "thead{display:table-header-group}" in style
    assert "addEventListener('beforeprint', function(){ fit(680); })" in page  # charts redrawn to the page width
    assert '<script src="http' not in page
    assert _visible(page).count("<table") == 4  # scenarios, leaderboard, the two halves of every measurement


def test_report_without_rows_or_teacher_still_renders():
    assert "No variants yet" in html_report([])
    page = html_report(SCENARIO_ROWS[1:3])
    assert "no teacher" in page and "<h2>Leaderboard</h2>" in page


# --- figures -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("chart, column", [(figures.size_bars, "size_mb"), (figures.latency_bars, "latency_p50_ms")])
def test_bar_values_are_never_clipped(chart, column):
    fig = chart(tables.frame(ROWS))
    bar = fig.data[0]
    assert bar.cliponaxis is False and bar.textposition == "outside"
    tallest = max(r[column] for r in ROWS)
    assert fig.layout.yaxis.range[0] == 0 and fig.layout.yaxis.range[1] >= tallest * 1.15
    assert fig.layout.xaxis.automargin is True and fig.layout.yaxis.automargin is True
    assert len(fig.layout.title.text) * figures.CHAR_PX * 16 / 12 < 560  # fits a 600 px chart


def test_long_names_slant_and_short_ones_do_not():
    assert figures.size_bars(tables.frame(ROWS)).layout.xaxis.tickangle != 0
    few = [ROWS[0], ROWS[2]]
    assert figures.size_bars(tables.frame(few)).layout.xaxis.tickangle == 0


def test_chart_text_is_literal():
    fig = figures.size_bars(tables.frame([dict(ROWS[0], name="<b>x</b>")]))
    assert list(fig.data[0].x) == ["&lt;b&gt;x&lt;/b&gt;"]


@pytest.mark.parametrize("chart, x", [(figures.accuracy_vs_latency, "latency_p50_ms"),
                                      (figures.accuracy_vs_size, "size_mb")])
def test_scatter_labels_and_bubbles_stay_inside_the_plot(chart, x):
    fig = chart(tables.frame(ROWS))
    lo, hi = fig.layout.xaxis.range
    y_lo, y_hi = fig.layout.yaxis.range
    assert fig.layout.xaxis.automargin is True and fig.layout.yaxis.automargin is True
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.yref == "container"  # below, off the data
    labelled = 0
    for trace in fig.data[:-1]:
        for value, acc, label, size, err in zip(trace.x, trace.y, trace.text, trace.marker.size, trace.error_y.array):
            px = (math.log10(value) - lo) / (hi - lo) * figures.PLOT_WIDTH_PX
            room = max(size / 2, len(label) * figures.CHAR_PX / 2)
            assert room <= px <= figures.PLOT_WIDTH_PX - room, (label, px)
            assert y_lo < acc - size / 2 * (y_hi - y_lo) / figures.PLOT_HEIGHT_PX and acc + err < y_hi
            labelled += bool(label)
        assert trace.cliponaxis is False
    assert labelled == 3  # the Pareto frontier, which holds the teacher here


def test_close_labels_go_to_opposite_sides():
    positions = figures.label_positions([100, 110, 300], [50, 52, 50], [8, 8, 8], ["minilm-l6-int8"] * 3)
    assert positions[0] != positions[1]
    assert figures.label_positions([0], [0], [5], [""]) == ["top center"]


def test_padded_range_leaves_the_pixels_asked_for():
    lo, hi = figures.padded_range([0.0, 1.0], [50, 0], [0, 80], pixels=400, min_span=0.1)
    assert (0.0 - lo) / (hi - lo) * 400 >= 50 - 1e-6 and (hi - 1.0) / (hi - lo) * 400 >= 80 - 1e-6
    lo, hi = figures.padded_range([2.0], [10], [10], pixels=400, min_span=1.0)
    assert lo == pytest.approx(1.5) and hi == pytest.approx(2.5)  # widened to min_span, no padding needed


def test_a_chart_title_is_the_labels_first_clause_cut_at_a_word():
    assert chart_title("SST-2 zoo, Xeon; built at abc123") == "SST-2 zoo, Xeon"
    long = "MRPC zoo (recipes/mrpc.yaml, sentence pairs), MSR test set, measured on a 2-core Intel Xeon VM with AMX"
    title = chart_title(long, limit=60)
    assert len(title) <= 60 and title.endswith("…") and long.startswith(title[:-1])
    assert title == "MRPC zoo (recipes/mrpc.yaml, sentence pairs), MSR test set…"
    assert chart_title("x" * 120, limit=50) == "x" * 49 + "…"
