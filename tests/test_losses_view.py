"""The dashboard's "What it loses" view and the Playground's "Why", through their callbacks (the browser test in
test_dashboard.py opens them in Chromium)."""

import gradio as gr
import pytest

from .conftest import store_copy


@pytest.fixture(scope="module")
def ctx(tiny_store, tmp_path_factory):
    from compression.dashboard.context import make_context

    context = make_context(str(store_copy(tiny_store, tmp_path_factory.mktemp("losses"))))
    yield context
    context.stop_warming()


def test_the_view_shows_both_confusions_slices_calibration_and_the_discordant_examples(ctx):
    from compression.dashboard import losses

    variant, against = losses.choices(ctx)
    assert variant["value"] == "teacher-int8" and against["value"] == "teacher"
    note, theirs, mine, slices, reliability, frame, texts = losses.show(ctx, "teacher-int8", "teacher")
    assert "McNemar" in note
    for figure in (theirs, mine, slices, reliability):
        assert figure is not None and figure.data  # drawn
    assert len(frame) == len(texts) and all(isinstance(t, str) for t in texts)
    if texts:  # a click on the first row sends its text to the Playground and shows it
        first, second, tabs = losses.send(texts, gr.SelectData(None, {"index": [0, 2], "value": "x"}))
        assert first == texts[0] and second == "" and tabs.selected == "playground"


def test_a_store_without_per_example_results_says_so(tiny_store, tmp_path):
    import sqlite3

    from compression.dashboard import losses
    from compression.dashboard.context import make_context

    store = store_copy(tiny_store, tmp_path)
    with sqlite3.connect(store / "lab.sqlite") as conn:
        conn.execute("DROP TABLE predictions")
    context = make_context(str(store))
    try:
        note, *figures, texts = losses.show(context, "teacher-int8", "teacher")
    finally:
        context.stop_warming()
    assert note.startswith("**No per-example results here:**") and figures == [None] * 5 and texts == []


def test_why_explains_the_teacher_and_a_variant_word_by_word(ctx):
    from compression.dashboard import losses

    text = "a good film with a dull and tedious plot"
    teacher, variant, note = losses.why(ctx, text, "", "teacher-int8")
    assert teacher["label"].startswith("teacher: ") and variant["label"].startswith("teacher-int8: ")
    for shown in (teacher, variant):
        assert "".join(piece for piece, _ in shown["value"]) == text  # the text rebuilt exactly
        assert sum(score is not None for _, score in shown["value"]) == len(text.split())
    assert "left out" in note
    with pytest.raises(gr.Error, match="up to 64 words"):
        losses.why(ctx, "word " * 65, "", "teacher-int8")
    with pytest.raises(gr.Error, match="Type a text first"):
        losses.why(ctx, "  ", "", "teacher-int8")


def test_the_view_and_why_on_a_pair_run(pair_store, tmp_path):
    from compression.dashboard import losses
    from compression.dashboard.context import make_context

    context = make_context(str(store_copy(pair_store, tmp_path)))
    try:
        note, theirs, mine, slices, reliability, frame, texts = losses.show(context, "student", "teacher")
        assert "McNemar" in note and all(isinstance(t, tuple) and len(t) == 2 for t in texts)
        assert "word overlap" in " ".join(str(y) for trace in slices.data for y in trace.y)
        teacher, variant, _ = losses.why(context, "good film", "awful dull plot", "student")
    finally:
        context.stop_warming()
    shown = "".join(piece for piece, _ in teacher["value"])
    assert shown == "good film ‖ awful dull plot" and sum(s is not None for _, s in teacher["value"]) == 5


def test_the_batch_check_can_say_which_words_decide(ctx, tmp_path):
    from compression.dashboard import callbacks as cb

    table, *_ = cb.batch_check(ctx, "a good film\nan awful dull plot", None, str(tmp_path), True)
    words = table["teacher's deciding words"].tolist()
    assert len(words) == 2 and all(w.count("(") == min(3, len(t.split())) for w, t in zip(words, table["text"]))
    plain, *_ = cb.batch_check(ctx, "a good film", None, str(tmp_path))
    assert "teacher's deciding words" not in plain  # off unless asked
    with pytest.raises(gr.Error, match="up to 50 texts"):
        cb.batch_check(ctx, "\n".join(f"text {i}" for i in range(51)), None, str(tmp_path), True)


def test_opening_the_tab_keeps_the_picks_the_run_still_has(ctx):
    from compression.dashboard import losses

    variant, against = losses.choices(ctx, "teacher-int8", "teacher-int8")
    assert (variant["value"], against["value"]) == ("teacher-int8", "teacher-int8")
    variant, against = losses.choices(ctx, "gone", "gone")  # a pick the run no longer has
    assert (variant["value"], against["value"]) == ("teacher-int8", "teacher")
