import json
import os
import shutil
from pathlib import Path

import pytest

from compression.core.config import Recipe
from compression.core.errors import LabError
from compression.core.typed import from_dict
from compression.dashboard.views import lab_recipe, parse_batch, predictions_html, reference_rows
from compression.evaluation.advisor import recommend
from compression.presentation import figures, tables
from compression.presentation.report import html_report, leaderboard_csv

from .conftest import CHARTS_DRAWN_JS, ROOT, run_cli


def _row(name, kind, parent, acc, p50, mb, method=None, warnings=()):
    return {"name": name, "kind": kind, "parent": parent, "method": method, "accuracy": acc,
            "accuracy_ci": [acc - 0.02, acc + 0.02], "f1": acc, "agreement": 0.95, "ece": 0.05, "size_mb": mb,
            "params": 1e6, "nonzero_params": 9e5, "latency_p50_ms": p50, "latency_p95_ms": p50 * 1.3,
            "throughput": 1000 / p50, "cpu_seconds_per_1000": p50 * 2, "peak_memory_mb": mb * 2,
            "warnings": list(warnings), "bundle": f"/b/{name}", "provenance": None}


ROWS = [_row("teacher", "teacher", None, 0.90, 40.0, 400.0),
        _row("student", "student", "teacher", 0.88, 10.0, 90.0, "pretrained"),
        _row("student-int8", "quantized", "student", 0.879, 4.0, 23.0, "dynamic-int8"),
        _row("student-fp16", "quantized", "student", 0.88, 35.0, 45.0, "fp16", ["fp16 is slow on CPU"]),
        _row("student-sparse", "pruned", "student", 0.86, 10.2, 50.0, "magnitude")]


def test_leaderboard_ratios_against_the_teacher():
    board = tables.leaderboard(ROWS, full=True)  # every column; the headline table is tested in test_presentation
    int8 = board[board["variant"] == "student-int8"].iloc[0]
    assert int8["speed-up"] == "10.00x" and int8["smaller"] == "17.39x" and int8["retention %"] == "97.7"
    assert board[board["variant"].str.startswith("student-fp16")].iloc[0]["variant"].endswith("⚠")
    assert int8["95% CI"] == "85.9–89.9"


def test_pareto_front_and_figures():
    assert figures.pareto_front([(40, 0.90), (10, 0.88), (4, 0.879), (35, 0.88), (10.2, 0.86)]) == [2, 1, 0]
    df = tables.frame(ROWS)
    fig = figures.accuracy_vs_latency(df)
    assert [t.name for t in fig.data] == ["teacher", "student", "quantized", "pruned", "Pareto frontier"]
    assert sum(len(t.x) for t in fig.data[:-1]) == 5  # every variant drawn once, in its kind's trace
    assert list(fig.data[-1].x) == [4.0, 10.0, 40.0]
    assert len(figures.size_bars(df).data[0].x) == 5
    assert figures.latency_bars(tables.frame([])).layout.annotations[0].text == "no measured variants yet"


def test_broken_variant_is_marked_on_the_leaderboard_and_not_as_a_disagreement():
    rows = [dict(r, status="ok") for r in ROWS]
    rows[2]["status"] = "broken: weights.safetensors changed since the bundle was saved (SHA-256 mismatch)"
    board = tables.leaderboard(rows)
    assert board["variant"][2] == "student-int8 ✖ BROKEN" and "SHA-256 mismatch" in board["status"][2]
    assert "status" not in tables.leaderboard([dict(r, status="ok") for r in ROWS])
    preds = tables.predictions_table([{"name": "teacher", "label": "pos", "confidence": 0.9, "latency_ms": 1},
                                      {"name": "student-int8", "label": rows[2]["status"], "confidence": 0,
                                       "latency_ms": 0}], "teacher")
    assert preds["agrees with teacher"][1] == ""


def test_markdown_table_for_the_readme():
    table = tables.markdown(ROWS).splitlines()
    assert len(table) == 2 + len(ROWS) and table[0].count("|") == table[2].count("|")
    assert table[2].startswith("| teacher | teacher | 90.0 (88.0–92.0) | 100.0 % |")
    assert "| student-int8 | quantized (student) |" in table[4] and "| 10.0x | 17.4x |" in table[4]


def test_recommend_respects_limits_and_warns():
    rec = recommend(ROWS, max_latency_ms=20, min_retention=0.97)
    assert rec.best["name"] == "student"  # more accurate than student-int8 (88.0 vs 87.9 %), both within limits
    assert rec.reasons == ["student is the most accurate of the 2 variant(s) within the limits: test accuracy 88.0%",
                           "keeps 97.8% of the teacher's accuracy", "4.0x faster than the teacher (10.0 vs 40.0 ms p50)",
                           "4.4x smaller (90.0 MB)"]
    assert rec.excluded == ["teacher: p50 40.0 ms > 20 ms", "student-fp16: p50 35.0 ms > 20 ms",
                            "student-sparse: keeps 95.6% of the teacher's accuracy < 97.0%"]
    rec = recommend(ROWS, max_size_mb=30)
    assert rec.best["name"] == "student-int8" and rec.reasons[3] == "17.4x smaller (23.0 MB)"
    assert rec.excluded == ["teacher: 400.0 MB > 30 MB", "student: 90.0 MB > 30 MB", "student-fp16: 45.0 MB > 30 MB",
                            "student-sparse: 50.0 MB > 30 MB"]
    fp16_only = [ROWS[0], ROWS[3]]
    rec = recommend(fp16_only, max_size_mb=100)
    assert rec.best["name"] == "student-fp16" and rec.excluded == ["teacher: 400.0 MB > 100 MB"]
    warnings = [r for r in rec.reasons if r.startswith("warning")]
    assert len(warnings) == 2 and warnings[0].startswith("warning — fp16")  # the technique's advice, measured
    assert warnings[1] == "warning — fp16 is slow on CPU"  # and the variant's own recorded warning
    rec = recommend(ROWS, max_latency_ms=1)
    assert rec.best is None and rec.reasons == ["no variant meets every limit; relax one"]
    assert [e.split(":")[0] for e in rec.excluded] == [r["name"] for r in ROWS]


def test_predictions_html_highlights_disagreement_and_says_what_each_variant_is():
    results = [{"name": "teacher", "label": "pos", "confidence": 0.9, "latency_ms": 10},
               {"name": "student-int8", "label": "neg", "confidence": 0.6, "latency_ms": 2}]
    page = predictions_html(results, ROWS, pending=2)
    assert page.count("class='disagree'") == 1 and "⚠ disagrees" in page
    assert "int8 (torch dynamic) of student" in page  # technique and parent
    assert "10.0x faster, 17.4x smaller" in page  # the run's measured ratios against the teacher
    assert "2 more variant(s) answering" in page
    assert "pending" not in predictions_html(results[:1], ROWS)


@pytest.mark.parametrize("content, message", [
    (b"text\n" + "\n".join(f"line {i}" for i in range(600)).encode(), "at most 500"),
    (b"a,b\n1,2\n", "needs a header with a text column"),
    ("texte\ncaf\xe9\n".encode("latin-1"), "not UTF-8"),
    (b"text\nhello\x00world\n", "NUL bytes"),
    (b"text\n\n  \n", "no texts"),
    (b"text\nhello, world, and more\nplain\n", "more fields than the header"),
])
def test_parse_batch_rejects_bad_uploads(tmp_path, content, message):
    path = tmp_path / "u.csv"
    path.write_bytes(content)
    with pytest.raises(LabError, match=message):
        parse_batch("", str(path))


def test_parse_batch_accepts_lines_csv_and_semicolons(tmp_path):
    assert parse_batch("one\n\n two \n", None) == ["one", "two"]
    path = tmp_path / "u.csv"
    path.write_text("id;sentence\n1;Ünïcode ✓ שלום\n2;second\n", encoding="utf-8")
    assert parse_batch("", str(path)) == ["Ünïcode ✓ שלום", "second"]


def test_lab_choices_make_a_valid_recipe():
    recipe = from_dict(Recipe, lab_recipe("embedded:mpnet-base", "embedded:rotten-tomatoes", 800,
                                          ["MiniLM-L6 (pretrained)"], ["dynamic int8", "structured pruning (½ heads, ½ FFN)"]))
    assert [q.source for q in recipe.quantize] == ["minilm-l6"] and recipe.prune[0].method == "structured"


def test_report_is_self_contained():
    page = html_report(ROWS, note="test")
    assert "<table" in page and "student-int8" in page and "Plotly" in page and '<script src="http' not in page
    assert leaderboard_csv(ROWS).splitlines()[0].startswith("name,kind,parent")


def test_reference_result_is_labelled():
    """The project ships its published runs' results; each loads with a label, and the SST-2 one is shown first."""
    shipped = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in (ROOT / "assets" / "reference").glob("*.json")}
    assert {"sst2", "quick"} <= set(shipped)
    for name, data in shipped.items():
        assert isinstance(data["label"], str) and data["label"].strip(), name
        assert data["variants"], name
        for row in data["variants"]:
            assert isinstance(row["name"], str) and row["name"], name
            assert 0 < row["accuracy"] <= 1, (name, row["name"])
    rows, label = reference_rows()
    assert label == shipped["sst2"]["label"] and "SST-2" in label
    assert [r["name"] for r in rows] == [r["name"] for r in shipped["sst2"]["variants"]]


def test_api_through_gradio_client(served_app):
    from gradio_client import Client

    client = Client(served_app[0], verbose=False)
    page, note = client.predict("a great and moving film", api_name="/predict")
    assert page.count("<tr") == 3 and "teacher-int8" in page and note == ""
    _, note = client.predict("good " * 3000, api_name="/predict")
    assert "truncated" in note
    with pytest.raises(Exception, match="Type a sentence first"):
        client.predict("   ", api_name="/predict")
    rows = _store_rows(served_app[1] / "store")
    teacher_mb, int8_mb = rows["teacher"]["size_mb"], rows["teacher-int8"]["size_mb"]
    assert int8_mb < teacher_mb
    limit = round((teacher_mb + int8_mb) / 2, 4)  # between the two bundles: only the int8 one fits
    advice = client.predict(0, limit, 0, api_name="/recommend")  # the visitor's own limits (scenario at its default)
    assert "### Recommended: teacher-int8" in advice and "No variant fits" not in advice
    assert f"- teacher: {teacher_mb:.1f} MB > {limit:g} MB" in advice
    advice = client.predict(0.0001, 0, 0, api_name="/recommend")  # no variant answers in 0.1 µs
    assert "### No variant fits" in advice and "Recommended:" not in advice
    assert "- teacher: p50 " in advice and "- teacher-int8: p50 " in advice
    advice = client.predict(0, 0, 0, "Mobile app", api_name="/recommend")  # a preset: the smallest bundle
    assert "Recommended: teacher-int8" in advice and "smallest bundle" in advice


def _store_rows(store) -> dict[str, dict]:
    from compression.evaluation.results import current_variants, variant_row
    from compression.store.run_store import RunStore

    with RunStore(store, readonly=True) as opened:
        return {r["name"]: r for r in (variant_row(v) for v in current_variants(opened))}


def test_load_test_drives_the_app_without_errors(served_app):
    from compression.evaluation.loadtest import load_test

    result = load_test(served_app[0], [1, 3], predictions=3, timeout=300)
    assert [r["clients"] for r in result["levels"]] == [1, 3]
    for level in result["levels"]:
        assert level["errors"] == 0 and level["not_run"] == 0 and level["requests"] == 3 * level["clients"]
        assert 0 < level["p50_ms"] <= level["p95_ms"] <= level["max_ms"]
    cli = run_cli("loadtest", served_app[0], "--levels", "2", "--predictions", "2", "--json")
    assert cli.returncode == 0 and json.loads(cli.stdout)["levels"][0]["requests"] == 4
    assert run_cli("loadtest", served_app[0], "--levels", "65").returncode == 1  # bounded


# Text of plotly charts outside its chart (or, for point labels, outside the plot area): cut off on screen.
CUT_TEXT_JS = """() => {
  const inside = (b, l) => b.left >= l.left - 1 && b.right <= l.right + 1 && b.top >= l.top - 1 && b.bottom <= l.bottom + 1;
  const kinds = ['.gtitle', '.gtitle-subtitle', '.g-xtitle text', '.g-ytitle text', '.xtick text', '.ytick text',
                 '.textpoint text', '.bartext', '.legendtext'];
  const out = [];
  document.querySelectorAll('.js-plotly-plot').forEach((chart, n) => {
    const svg = chart.querySelector('.main-svg').getBoundingClientRect();
    const area = chart.querySelector('.nsewdrag');
    const plot = area ? area.getBoundingClientRect() : svg;
    for (const kind of kinds) {
      chart.querySelectorAll(kind).forEach(el => {
        const b = el.getBoundingClientRect();
        if (!el.textContent.trim() || b.width === 0) return;
        if (!inside(b, kind === '.textpoint text' ? plot : svg)) out.push({chart: n, kind, text: el.textContent});
      });
    }
  });
  return out;
}"""


def test_browser_shows_predictions_of_two_variants(served_app, artifacts):
    """A real browser (Debian's chromium) types a sentence and sees every variant's prediction."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    shots = artifacts
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu",
                                                                   "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(served_app[0])
        page.get_by_label("Text").fill("A gripping, beautifully acted film.")
        page.get_by_role("button", name="Classify with every variant").click()
        page.wait_for_selector("table.preds tbody tr:nth-child(2)", timeout=60_000)
        rows = page.locator("table.preds tbody tr")
        names = [rows.nth(i).locator("td b").first.inner_text() for i in range(rows.count())]
        page.screenshot(path=str(shots / "playground.png"), full_page=True)
        why = _why_in_the_browser(page, shots)
        cut, lost = {}, {}
        for width, height in ((1280, 800), (1920, 1080)):
            page.set_viewport_size({"width": width, "height": height})
            page.get_by_role("tab", name="Leaderboard").click()
            header = page.get_by_role("columnheader", name="MB", exact=True).first
            header.wait_for(state="visible")
            page.screenshot(path=str(shots / f"leaderboard-{width}.png"))
            header = header.bounding_box()
            assert header and header["x"] + header["width"] <= width, "the headline columns must fit on screen"
            page.get_by_role("tab", name="Charts").click()
            page.wait_for_function(CHARTS_DRAWN_JS, timeout=30_000)
            page.screenshot(path=str(shots / f"charts-{width}.png"), full_page=True)
            cut[width] = page.evaluate(CUT_TEXT_JS)
            page.get_by_role("tab", name="What it loses").click()
            page.get_by_text("McNemar's test compares these two counts").first.wait_for(timeout=30_000)
            page.wait_for_function(CHARTS_DRAWN_JS, timeout=30_000)
            page.screenshot(path=str(shots / f"losses-{width}.png"), full_page=True)
            lost[width] = page.evaluate(CUT_TEXT_JS)
        browser.close()
    assert names == ["teacher", "teacher-int8"]
    assert cut == {1280: [], 1920: []}, cut  # no chart label or value cut at either size
    assert lost == {1280: [], 1920: []}, lost  # nor in "What it loses"
    assert why[0].startswith("teacher: ") and why[1].startswith("teacher-int8: ")


def _why_in_the_browser(page, shots) -> list[str]:
    """Open the Playground's Why, explain the typed sentence for the teacher and the int8 variant."""
    page.get_by_text("Why: which words decide").first.click()
    page.get_by_role("button", name="Explain").click()
    page.get_by_text("teacher-int8: ").first.wait_for(timeout=60_000)
    page.screenshot(path=str(shots / "why.png"), full_page=True)
    return [page.get_by_text(prefix).first.inner_text() for prefix in ("teacher: ", "teacher-int8: ")]
