"""What a variant loses, shown: confusion heatmaps, accuracy by slice, reliability diagrams, the table of
disagreements and the report's "What the best variants lose" section. Synthetic probabilities, no model."""

import html
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from compression.evaluation.inspection import Predictions, inspect
from compression.presentation import inspection as shown
from compression.presentation.report import html_report, loss_picks

TEXTS = ["not a good film", "a good film", "great", "dull and long and not worth it at all today really",
         "awful", "fine", "bad", "superb"]
GOLD = [0, 1, 1, 0, 0, 1, 0, 1]
PAIRS = [("a man sleeps", "nobody sleeps"), ("a dog runs", "an animal runs"), ("it rains", "the sun shines"),
         ("two kids play", "children play outside"), ("she reads", "she is not reading"), ("cars race", "cars race"),
         ("he cooks", "a meal is made"), ("birds sing", "it is quiet")]
NLI = ["entailment", "neutral", "contradiction"]
NLI_GOLD = [2, 0, 1, 1, 2, 0, 1, 1]


def probs(labels, classes=2, confidence=0.9):
    out = np.full((len(labels), classes), (1 - confidence) / (classes - 1))
    out[np.arange(len(labels)), labels] = confidence
    return out


def sentiment(variant_name="int8"):
    """Teacher wrong on 6; the variant wrong on 0 and 3 (both negated), right on 6."""
    teacher = Predictions("teacher", probs([0, 1, 1, 0, 0, 1, 1, 1], confidence=0.93))
    variant = Predictions(variant_name, probs([1, 1, 1, 1, 0, 1, 0, 1], confidence=0.71))
    return inspect(TEXTS, GOLD, ["neg", "pos"], variant, teacher)


def nli():
    """Three classes over text pairs: the teacher wrong on 2, the variant wrong on 0, 3 and 4."""
    teacher = Predictions("teacher", probs([2, 0, 0, 1, 2, 0, 1, 1], 3, 0.8))
    variant = Predictions("pruned", probs([1, 0, 1, 2, 1, 0, 1, 1], 3, 0.6))
    return inspect(PAIRS, NLI_GOLD, NLI, variant, teacher)


# --- figures and the frame --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("found", [sentiment(), nli()], ids=["2 classes", "3 classes, pairs"])
def test_confusion_heatmap_is_the_matrix_rows_gold(found):
    for name in (found["variant"], found["against"]):
        fig = shown.confusion_figure(found, name)
        (heat,) = fig.data
        assert heat.type == "heatmap"
        assert np.asarray(heat.z).tolist() == found["confusion"][name]
        assert list(heat.x) == list(heat.y) == found["labels"]
        assert fig.layout.xaxis.title.text == "predicted" and fig.layout.yaxis.title.text == "gold"
        assert fig.layout.yaxis.autorange == "reversed"  # the first gold class on top, as the matrix reads
        assert fig.layout.title.text == f"{name}: confusion (8 test examples)"
        assert heat.texttemplate  # counts printed in the cells


def test_confusion_title_shortens_a_long_name_and_escapes_it():
    found = sentiment("<b>an-extremely-long-variant-name-int8</b>")
    title = shown.confusion_figure(found, found["variant"]).layout.title.text
    assert "<b>" not in title and title.startswith("&lt;b&gt;an-extremely-long-va…") and len(title) < 70


@pytest.mark.parametrize("found", [sentiment(), nli()], ids=["2 classes", "3 classes, pairs"])
def test_slices_chart_groups_by_kind_and_labels_the_gap(found):
    fig = shown.slices_figure(found)
    teacher, variant = fig.data
    assert (teacher.name, variant.name) == (found["against"], found["variant"])
    assert teacher.orientation == variant.orientation == "h" and fig.layout.barmode == "group"
    kinds, names = (list(axis) for axis in variant.y)
    assert names == [html.escape(s["slice"], quote=False) for s in found["slices"]]  # literal text in plotly
    assert kinds == [s["kind"] for s in found["slices"]]
    assert [k for i, k in enumerate(kinds) if k not in kinds[:i]] == list(dict.fromkeys(kinds))  # grouped, in order
    assert list(variant.x) == pytest.approx([100 * s["variant_accuracy"] for s in found["slices"]])
    assert list(teacher.x) == pytest.approx([100 * s["teacher_accuracy"] for s in found["slices"]])
    assert len(variant.text) == len(found["slices"]) and teacher.text is None
    assert fig.layout.margin.r >= max(len(t) for t in variant.text) * 7  # a label beside a 100 % bar is not cut


def test_slices_title_says_where_the_variant_loses_most():
    found = sentiment()
    fig = shown.slices_figure(found)
    negated = next(s for s in found["slices"] if s["slice"] == "with a negation")
    assert negated["gap"] == 1.0 and shown.worst_slice(found) == negated
    assert fig.layout.title.text == "int8 loses most on “with a negation” (−100.0 pts)"
    row = [s["slice"] for s in found["slices"]].index("with a negation")
    assert fig.data[1].text[row] == "−100.0 pts"
    assert fig.data[1].text[[s["slice"] for s in found["slices"]].index("without a negation")] == "+16.7 pts"
    assert shown.points(0.0) == "±0.0 pts" and shown.points(0.032) == "−3.2 pts"


def test_slices_title_fits_with_long_names():
    found = sentiment("distilled-six-layer-student-int8-onnx")
    found["slices"][0].update(slice="gold a-very-long-label-name-indeed", gap=1.0, lost=9)  # ties: more lost
    title = shown.slices_figure(found).layout.title.text
    assert title == "distilled-six-layer… loses most on “gold a-very-long-labe…” (−100.0 pts)" and len(title) <= 72


def test_slices_title_when_the_variant_never_trails():
    teacher = Predictions("teacher", probs(GOLD))
    found = inspect(TEXTS, GOLD, ["neg", "pos"], Predictions("same", probs(GOLD)), teacher)
    assert shown.worst_slice(found) is None
    assert shown.slices_figure(found).layout.title.text == "same trails teacher on no slice"


@pytest.mark.parametrize("found", [sentiment(), nli()], ids=["2 classes", "3 classes, pairs"])
def test_reliability_diagram_has_the_diagonal_and_both_models_with_their_ece(found):
    fig = shown.reliability_figure(found)
    diagonal, teacher, variant = fig.data
    assert list(diagonal.x) == list(diagonal.y) and diagonal.line.dash == "dash"
    assert diagonal.x[0] == pytest.approx(100 / len(found["labels"]))
    for trace, name in ((teacher, found["against"]), (variant, found["variant"])):
        cal = found["calibration"][name]
        assert trace.name == f"{name} (ECE {cal['ece']:.3f})"
        assert list(trace.x) == pytest.approx([100 * b["confidence"] for b in cal["bins"]])
        assert list(trace.y) == pytest.approx([100 * b["accuracy"] for b in cal["bins"]])
    sizes = {n: list(t.marker.size) for n, t in (("t", teacher), ("v", variant))}
    assert max(sizes["t"] + sizes["v"]) <= 28  # marker size grows with the examples in the bin
    x_low, x_high = fig.layout.xaxis.range
    assert x_low <= min(diagonal.x) and x_high >= 100


def test_disagreements_frame_lists_both_ways():
    found = sentiment()
    frame = shown.disagreements_frame(found)
    assert list(frame.columns) == ["who is right", "gold", "text", "teacher", "variant", "index"]
    assert len(frame) == len(found["teacher_right_variant_wrong"]) + len(found["variant_right_teacher_wrong"]) == 3
    assert frame["who is right"].tolist() == ["teacher only", "teacher only", "int8 only"]
    assert frame.iloc[2].to_dict() == {"who is right": "int8 only", "gold": "neg", "text": "bad",
                                       "teacher": "pos 0.93", "variant": "neg 0.71", "index": 6}
    assert sorted(frame["index"].iloc[:2]) == [0, 3]


def test_disagreements_frame_joins_pairs_and_handles_three_classes():
    found = nli()
    frame = shown.disagreements_frame(found)
    assert len(frame) == len(found["teacher_right_variant_wrong"]) + len(found["variant_right_teacher_wrong"]) == 4
    row = frame[frame["index"] == 2].iloc[0]
    assert row["text"] == "it rains ‖ the sun shines" and row["who is right"] == "pruned only"
    assert row["teacher"] == "entailment 0.80" and row["variant"] == "neutral 0.60" and row["gold"] == "neutral"


def test_disagreements_frame_without_disagreements_is_empty_with_its_columns():
    found = inspect(TEXTS, GOLD, ["neg", "pos"], Predictions("same", probs(GOLD)), Predictions("t", probs(GOLD)))
    frame = shown.disagreements_frame(found)
    assert frame.empty and list(frame.columns) == shown.FRAME_COLUMNS


# --- the report -------------------------------------------------------------------------------------------------------

def _row(name, kind, acc, p50, status="ok"):
    return {"name": name, "kind": kind, "parent": None if kind == "teacher" else "teacher", "method": None,
            "accuracy": acc, "accuracy_ci": [acc - 0.02, acc + 0.02], "f1": acc, "agreement": 0.95, "ece": 0.05,
            "size_mb": 100.0, "params": 1e6, "nonzero_params": 9e5, "latency_p50_ms": p50, "latency_p95_ms": p50 * 1.3,
            "throughput": 1000 / p50, "cpu_seconds_per_1000": p50 * 2, "peak_memory_mb": 200.0, "warnings": [],
            "bundle": f"/b/{name}", "status": status, "provenance": None}


ROWS = [_row("teacher", "teacher", 0.90, 40.0), _row("int8", "quantized", 0.895, 12.0),
        _row("fastest-close", "quantized", 0.892, 8.0), _row("pruned", "pruned", 0.898, 30.0),
        _row("sloppy", "student", 0.80, 2.0), _row("broken", "quantized", 0.95, 1.0, status="broken: changed")]


def test_loss_picks_fastest_within_a_point_and_most_accurate():
    assert loss_picks(ROWS) == [
        ("fastest-close", "the fastest variant within 1 point(s) of the teacher's accuracy (8.0 ms p50)"),
        ("pruned", "the most accurate compressed variant (89.8%)")]
    one = [ROWS[0], ROWS[3]]
    assert [name for name, _ in loss_picks(one)] == ["pruned"] and "; " in loss_picks(one)[0][1]
    assert loss_picks(ROWS[1:]) == []  # no teacher


class _Checker(HTMLParser):
    """Fails on a closing tag that does not match the open one (void elements aside)."""
    VOID = {"meta", "br", "img", "input", "link", "hr"}

    def __init__(self):
        super().__init__()
        self.stack = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()


def _valid(page: str) -> str:
    """The page, checked well-formed, less its scripts (plotly.js holds '<table' and the like)."""
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    checker = _Checker()
    checker.feed(page)
    assert checker.stack == []
    return re.sub(r"<script\b.*?</script>", "", page, flags=re.S)


def _section(visible: str) -> str:
    start = visible.index("<h2>What the best variants lose</h2>")
    return visible[start:visible.index("<h2>All measurements</h2>")]


@pytest.mark.parametrize("losses", [None, []])
def test_report_without_inspections_says_per_example_results_are_missing(losses):
    visible = _valid(html_report(ROWS, losses=losses))
    section = _section(visible)
    assert "Per-example results are not available for this run" in section and "<table" not in section
    assert html_report(ROWS).count("Per-example results are not available") == 1  # the old call, unchanged


def test_report_shows_what_each_inspected_variant_loses():
    sentiment_found, nli_found = sentiment("fastest-close"), nli()
    page = html_report(ROWS, note="run 7", losses=[sentiment_found, nli_found])
    section = _section(_valid(page))
    assert "Per-example results are not available" not in section
    assert "<h3>fastest-close against teacher</h3>" in section and "<h3>pruned against teacher</h3>" in section
    assert "Picked as the fastest variant within 1 point(s)" in section  # why this variant is shown
    assert section.count("<table class='confusion'>") == 4  # teacher and variant, twice
    assert "<caption>fastest-close</caption>" in section and "<td class='n hit'>4</td>" in section
    assert section.count("class=\"plotly-graph-div\"") == 2  # the slices chart of each
    assert "int8 loses most" not in section and "fastest-close loses most on" in page
    assert "teacher right, fastest-close wrong: 2 of 2" in section and "fastest-close right, teacher wrong: 1 of 1" \
        in section
    assert "<td class='t'>bad</td><td class='n'>pos 0.93</td><td class='n'>neg 0.71</td>" in section
    assert "it rains ‖ the sun shines" in section and "entailment 0.80" in section and "contradiction" in section
    assert '<script src="http' not in page  # offline: plotly.js is inlined once, with the first chart


def test_report_shows_five_examples_each_way_and_escapes_texts():
    texts = [f"<i>text {i}</i>" for i in range(16)]
    gold = [0] * 16
    teacher = Predictions("teacher", probs([0] * 8 + [1] * 8))    # wrong on the last 8
    variant = Predictions("int8", probs([1] * 8 + [0] * 8, confidence=0.6))  # wrong on the first 8
    found = inspect(texts, gold, ["neg", "pos"], variant, teacher)
    section = _section(_valid(html_report(ROWS, losses=[found])))
    assert "teacher right, int8 wrong: 5 of 8" in section and "int8 right, teacher wrong: 5 of 8" in section
    assert section.count("<table class='examples'>") == 2 and section.count("&lt;i&gt;text") == 10
    assert "<i>text" not in section
