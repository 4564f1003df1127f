"""The dashboard on a pair task (paraphrase, entailment): two text boxes named after the data's columns, a batch
check of two-column CSVs or tab-separated lines, examples from the run's own test split; single-text input to a
pair run is refused with a clear message."""

import csv
import os
import shutil

import gradio as gr
import pytest

from compression.core.errors import LabError
from compression.dashboard import callbacks as cb
from compression.dashboard.context import PublishedSource, make_context
from compression.dashboard.views import input_hints, parse_batch, pick_examples, readable

from .conftest import _free_port

PAIR = ("sentence1", "sentence2")
FIRST, SECOND = "the film was good and great", "the plot was brilliant"
VARIANTS = {"teacher", "student", "teacher-int8"}


@pytest.fixture(scope="module")
def pair_ctx(pair_store):
    return make_context(str(pair_store))


@pytest.fixture(scope="module")
def served_pairs(pair_store):
    """The real app over the pair store, served on localhost."""
    from compression.dashboard import create_app, launch_kwargs

    demo = create_app(str(pair_store))
    port = _free_port()
    demo.launch(**{**launch_kwargs(), "server_name": "127.0.0.1", "server_port": port, "prevent_thread_lock": True})
    yield f"http://127.0.0.1:{port}/", demo
    demo.close()


def _test_pairs(tiny_pair_data) -> set[tuple[str, str]]:
    with open(tiny_pair_data / "test.tsv", encoding="utf-8") as f:
        return {(r["sentence1"], r["sentence2"]) for r in csv.DictReader(f, delimiter="\t")}


def test_labels_come_from_the_column_names():
    assert [readable(c) for c in ("sentence1", "question_2", "premise", "Q1")] == \
        ["Sentence 1", "Question 2", "Premise", "Q1"]
    single, pair = input_hints(None), input_hints(PAIR)
    assert single["first"] == "Text" and not single["pair"]  # single-text runs look as they always did
    assert (pair["first"], pair["second"], pair["pair"]) == ("Sentence 1", "Sentence 2", True)
    assert "a tab" in pair["batch"] and "sentence1 and sentence2" in pair["upload"]


def test_parse_batch_reads_pairs_from_lines_and_csv(tmp_path):
    assert parse_batch("a b\tc d\n\n x ‖ y \n", None, PAIR) == [("a b", "c d"), ("x", "y")]
    named = tmp_path / "named.csv"
    named.write_text("id,sentence2,sentence1\n1,second,first\n2,\"b, quoted\",a\n", encoding="utf-8")
    assert parse_batch("", str(named), PAIR) == [("first", "second"), ("a", "b, quoted")]
    other = tmp_path / "other.csv"
    other.write_text("question,answer,label\nq1,a1,0\n,,\nq2,a2,1\n", encoding="utf-8")
    assert parse_batch("", str(other), PAIR) == [("q1", "a1"), ("q2", "a2")]  # the first two columns
    with pytest.raises(LabError, match="line 2 holds 1 text"):
        parse_batch("a\tb\nno second text\n", None, PAIR)
    with pytest.raises(LabError, match="line 3: a pair needs both texts"):
        parse_batch("", str(_write(tmp_path / "half.csv", "sentence1,sentence2\na,b\nc,\n")), PAIR)
    with pytest.raises(LabError, match="two text columns"):
        parse_batch("", str(_write(tmp_path / "one.csv", "sentence1\na\n")), PAIR)
    assert parse_batch("one\ttwo\n", None) == ["one\ttwo"]  # a single-text run reads whole lines, as before


def _write(path, content: str):
    path.write_text(content, encoding="utf-8")
    return path


def test_published_pair_examples_are_taken_from_what_it_packs():
    class Run:  # what a PublishedRun offers the source: its examples and test texts, as JSON gives them back
        examples = [["a first", "a second"], "a single text", ["x", "y", "z"]]
        test_texts = [["b first", "b second"]]

    source = PublishedSource(Run())
    assert source.examples(PAIR) == [("a first", "a second"), ("b first", "b second")]
    assert source.examples(None) == ["a single text"]
    assert pick_examples([["q", "r"]] * 20, pairs=True) == [("q", "r")] * 8


def test_published_pair_examples_show_each_pair_once():
    class Run:  # publish draws the examples from the test texts it packs, so the two lists overlap
        test_texts = [[f"first {i}", f"second {i}"] for i in range(10)]
        examples = test_texts[:3]

    shown = PublishedSource(Run()).examples(PAIR)
    assert shown == [(f"first {i}", f"second {i}") for i in range(8)]


def test_context_knows_the_pair_task_and_its_test_examples(pair_ctx, tiny_pair_data):
    assert pair_ctx.pair() == PAIR
    examples = pair_ctx.source.examples(pair_ctx.pair())
    assert examples and all(isinstance(e, tuple) for e in examples)
    assert set(examples) <= _test_pairs(tiny_pair_data)  # the run's own test split, not the shipped sentences


def test_predict_on_a_pair_answers_with_every_variant(pair_ctx):
    pages = [page for page, _ in cb.predict(pair_ctx, FIRST, SECOND)]
    assert len(pages) == 3 and "2 more variant(s) answering" in pages[0]
    final = pages[-1]
    assert all(name in final for name in VARIANTS) and "broken" not in final and "answering" not in final
    _, note = list(cb.predict(pair_ctx, FIRST, "good " * 2000))[-1]
    assert "truncated" in note or "tokens" in note  # a long second text is clipped, and the page says so


def test_a_single_text_given_to_a_pair_run_is_refused_clearly(pair_ctx, tmp_path):
    with pytest.raises(gr.Error, match="pairs of texts: fill in both Sentence 1 and Sentence 2"):
        list(cb.predict(pair_ctx, FIRST))
    with pytest.raises(gr.Error, match="pairs of texts"):
        list(cb.predict(pair_ctx, FIRST, "   "))
    with pytest.raises(gr.Error, match="line 1 holds 1 text"):
        cb.batch_check(pair_ctx, "only one text on this line", None, str(tmp_path))


def test_batch_check_of_a_two_column_csv(pair_ctx, tmp_path):
    upload = _write(tmp_path / "pairs.csv", f"sentence1,sentence2\n{FIRST},{SECOND}\nthe acting was dull,"
                                            "a boring and tedious story\nthe cast was bad,the ending was superb\n")
    table, summary, out, folder = cb.batch_check(pair_ctx, "", str(upload), None)
    assert list(table.columns[:2]) == list(PAIR) and set(table.columns[2:]) == VARIANTS
    assert len(table) == 3 and table.iloc[0]["sentence2"] == SECOND
    assert set(summary["variant"]) == VARIANTS and summary["of"].tolist() == [3, 3, 3]
    again = cb.batch_check(pair_ctx, "", out, folder)[0]  # the downloaded CSV goes back in as it is
    assert again[list(VARIANTS)].equals(table[list(VARIANTS)])
    pasted = cb.batch_check(pair_ctx, f"{FIRST}\t{SECOND}\n", None, folder)[0]
    assert pasted.iloc[0][list(VARIANTS)].equals(table.iloc[0][list(VARIANTS)])


def test_the_served_app_has_two_labelled_boxes_and_a_pair_api(served_pairs):
    from gradio_client import Client

    url, demo = served_pairs
    boxes = {c["props"].get("label"): c["props"] for c in demo.config["components"] if c["type"] == "textbox"}
    assert boxes["Sentence 1"]["visible"] is not False and boxes["Sentence 2"]["visible"] is not False
    client = Client(url, verbose=False)
    page, _ = client.predict(FIRST, SECOND, api_name="/predict")
    assert page.count("<tr") == 4 and all(name in page for name in VARIANTS)
    with pytest.raises(Exception, match="pairs of texts"):
        client.predict(FIRST, api_name="/predict")  # the second text left at its default: refused, said why


def test_browser_fills_both_boxes_and_sees_every_variant(served_pairs, artifacts):
    """A real browser (Debian's chromium) types a pair into the two boxes and sees each variant's prediction."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(chromium):
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu",
                                                                   "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(served_pairs[0])
        page.get_by_label("Sentence 1", exact=True).fill(FIRST)
        page.get_by_label("Sentence 2", exact=True).fill(SECOND)
        page.get_by_role("button", name="Classify with every variant").click()
        page.wait_for_selector("table.preds tbody tr:nth-child(3) td b", timeout=60_000)
        page.wait_for_function("!document.querySelector('table.preds tr.pending')", timeout=60_000)
        rows = page.locator("table.preds tbody tr")
        names = [rows.nth(i).locator("td b").first.inner_text() for i in range(rows.count())]
        shots = artifacts
        page.screenshot(path=str(shots / "playground-pairs.png"), full_page=True)
        page.get_by_role("tab", name="Batch check").click()
        hint = page.get_by_text("Pairs, one per line").first.inner_text()
        page.screenshot(path=str(shots / "batch-pairs.png"), full_page=True)
        browser.close()
    assert names[0] == "teacher" and set(names) == VARIANTS
    assert "Sentence 1, a tab (or ‖), then Sentence 2" in hint


def test_a_published_pair_run_shows_pairs_and_answers_them(pair_store, tiny_pair_data, tmp_path):
    from .conftest import run_cli

    out = tmp_path / "published"
    result = run_cli("publish", "--store", str(pair_store), "--to", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    ctx = make_context(str(tmp_path / "store"), published=str(out))
    assert ctx.pair() == PAIR and not ctx.policy.enabled
    examples = ctx.source.examples(ctx.pair())
    assert examples and set(examples) <= _test_pairs(tiny_pair_data)
    final = list(cb.predict(ctx, FIRST, SECOND))[-1][0]
    assert all(name in final for name in VARIANTS) and "broken" not in final
