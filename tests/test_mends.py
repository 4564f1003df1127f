"""Mends: a published run's broken variant says what a visitor can do; the load test sends pairs to a pair run;
the Playground's examples follow the store when it becomes a pair store; predict takes options and texts in any
order; Classify on an empty box says what to type."""

import csv
import json
import shutil
from argparse import Namespace

import gradio as gr
import pytest

from compression.dashboard import callbacks as cb
from compression.dashboard.context import AppContext, make_context

from .conftest import _free_port, run_main

PAIR = ("sentence1", "sentence2")
FIRST, SECOND = "the film was good and great", "the plot was brilliant"


def _test_pairs(tiny_pair_data) -> set[tuple[str, str]]:
    with open(tiny_pair_data / "test.tsv", encoding="utf-8") as f:
        return {(r["sentence1"], r["sentence2"]) for r in csv.DictReader(f, delimiter="\t")}


@pytest.fixture()
def no_warmup(monkeypatch):
    """Contexts that do not load their models in the background: these tests read examples and inputs only, and a
    process that exits while a warm-up thread is inside torch aborts (status 134)."""
    monkeypatch.setattr(AppContext, "warm", lambda self, rows=None: None)


@pytest.fixture(scope="module")
def published_pairs(pair_store, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mends-published") / "run"
    result = run_main("publish", "--store", str(pair_store), "--to", str(folder), "--no-chart")
    assert result.returncode == 0, result.stderr[-2000:]
    return folder


@pytest.fixture(scope="module")
def served_pairs(pair_store):
    """The real app over the pair store, served on localhost."""
    from compression.dashboard import create_app, launch_kwargs

    demo = create_app(str(pair_store))
    port = _free_port()
    demo.launch(**{**launch_kwargs(), "server_name": "127.0.0.1", "server_port": port, "prevent_thread_lock": True})
    yield f"http://127.0.0.1:{port}/"
    demo.close()


# ------------------------------------------------------------------ 1. list --published: what a visitor can do

def test_list_of_a_broken_published_variant_says_what_a_visitor_can_do(published_pairs, tmp_path):
    root = tmp_path / "run"
    shutil.copytree(published_pairs, root)
    weights = max((p for p in (root / "bundles" / "teacher-int8").iterdir() if p.name != "README.md"),
                  key=lambda p: p.stat().st_size)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    listed = run_main("list", "--published", str(root))
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith("BROKEN"))
    assert line.startswith("BROKEN teacher-int8:") and "SHA-256" in line
    assert "rebuild" not in line and "recipe" not in line  # a visitor cannot rebuild someone else's run
    assert "skipped" in line and "download or copy the published run again" in line and "publish it again" in line
    from compression.cli.variants import _broken_advice

    assert _broken_advice(Namespace(published=None)) == "rebuild it: run the recipe again"  # a store: as before


# ------------------------------------------------------------------ 2. the load test sends pairs to a pair run

def test_load_test_sends_pairs_to_a_pair_run(served_pairs, tiny_pair_data):
    from compression.evaluation import loadtest

    result = loadtest.load_test(served_pairs, [2], predictions=2, timeout=300)
    level = result["levels"][0]
    assert level["errors"] == 0 and level["requests"] == 4, level["first_error"]
    assert result["settings"]["inputs"] == "text pairs"
    texts, source = loadtest.app_inputs(served_pairs)  # the app's own examples: pairs of its test split
    assert set(texts) <= _test_pairs(tiny_pair_data) and "pairs" in source
    cli = run_main("loadtest", served_pairs, "--levels", "1", "--predictions", "2")
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert "sent text pairs from the app's examples (pairs)" in cli.stdout


def test_load_test_inputs_follow_the_app_kind():
    from compression.evaluation.loadtest import FALLBACK_PAIRS, inputs_of

    assert inputs_of({"pair": ["q1", "q2"], "examples": [["a", "b"], "stray"]}) == ([("a", "b")],
                                                                                    "the app's examples (pairs)")
    assert inputs_of({"pair": ["q1", "q2"], "examples": []}) == (list(FALLBACK_PAIRS), "built-in pairs")
    texts, _ = inputs_of({"pair": None, "examples": ["one", ["x", "y"]]})
    assert texts == ["one"]
    texts, _ = inputs_of(None)  # an app without /examples (an older version): single texts, as before
    assert texts and all(isinstance(t, str) for t in texts)


def test_a_published_pair_run_offers_its_packed_pairs(published_pairs, tmp_path, no_warmup):
    ctx = make_context(str(tmp_path / "store"), published=str(published_pairs))
    offered = cb.playground_examples(ctx)
    assert offered["pair"] == list(PAIR)
    assert offered["examples"] and all(isinstance(e, list) and len(e) == 2 for e in offered["examples"])
    json.dumps(offered)  # what the API answers


# ------------------------------------------------------------------ 3. examples follow the store's kind

def _datasets(demo):
    return [c["props"] for c in demo.config["components"] if c["type"] == "dataset"]


def test_examples_follow_a_store_that_becomes_a_pair_store(pair_store, tiny_pair_data, tmp_path, no_warmup):
    from compression.dashboard import create_app
    from compression.dashboard.views import examples as shipped

    store = tmp_path / "store"
    store.mkdir()
    ctx = make_context(str(store))
    demo = create_app(ctx=ctx)
    single, pairs = _datasets(demo)
    assert single.get("visible") is not False and single["samples"]  # the shipped sentences at startup
    assert pairs["visible"] is False and not pairs["samples"]
    first = cb.inputs(ctx)
    assert first[-2]["visible"] and [s[0] for s in first[-2]["samples"]] == shipped()  # a single-text start
    assert first[-1]["visible"] is False and first[-1]["samples"] == []

    shutil.copytree(pair_store, store, dirs_exist_ok=True)  # a pair recipe's run lands in the store
    ctx.source.FRESH_S = 0  # no 2-second read cache in a test
    assert ctx.pair() == PAIR
    box, second, *_, single_update, pair_update = cb.inputs(ctx)
    assert second["visible"] is True and box["label"] == "Sentence 1"
    assert single_update["visible"] is False and single_update["samples"] == []
    assert pair_update["visible"] is True and pair_update["headers"] == ["Sentence 1", "Sentence 2"]
    shown = {tuple(s) for s in pair_update["samples"]}
    assert shown and shown <= _test_pairs(tiny_pair_data)  # the run's own test pairs, not the startup sentences
    # An open page learns it from the build banner's tick (the set of variants changed), without a reload.
    _, count, *rest = cb.banner(ctx, 0)
    assert count == 3 and len(rest) == 9 + cb.INPUTS and rest[-1]["samples"] == pair_update["samples"]
    assert cb.pick_pair(["a", "b"]) == ("a", "b") and cb.pick_example(["a text"]) == "a text"


# ------------------------------------------------------------------ 4. predict: options and texts in any order

def test_predict_takes_options_and_texts_in_any_order(published_pairs, pair_store, tiny_teacher, tmp_path):
    run = str(published_pairs)
    for argv in (("teacher", "--published", run, "a good film"), ("teacher", "a good film", "--published", run)):
        result = run_main("predict", *argv)
        assert result.returncode == 1 and "unrecognized arguments" not in result.stderr
        assert "classifies pairs of texts" in result.stderr  # parsed: the pair run itself answers
    pairs = ("--pair", FIRST, SECOND)
    for argv in (("teacher", "--published", run, *pairs, "--json"), (*pairs, "teacher", "--json", "--published", run),
                 ("--store", str(pair_store), "teacher", *pairs, "--json")):
        result = run_main("predict", *argv)
        assert result.returncode == 0, result.stderr
        assert [(p["text"], p["text_pair"]) for p in json.loads(result.stdout)] == [(FIRST, SECOND)]
    teacher, a, b = str(tiny_teacher), "a good film", "a dull film"
    for argv in (("--store", str(tmp_path), "--json", teacher, a, b), (teacher, a, "--json", b),
                 (teacher, "--store", str(tmp_path), a, b, "--json"), ("--json", teacher, a, b)):
        result = run_main("predict", *argv)
        assert result.returncode == 0, (argv, result.stderr)
        assert [p["text"] for p in json.loads(result.stdout)] == [a, b]
    assert run_main("predict", teacher, "a", "--bogus").returncode == 2  # unknown options are still refused
    usage = run_main("predict")
    assert usage.returncode == 2 and "required: variant" in usage.stderr and "TEXT" not in usage.stderr.split(":")[-1]


def test_bench_and_evaluate_take_variants_after_options():
    from compression.cli.parser import make_parser

    args = make_parser().parse_args(["bench", "teacher", "--published", "RUN", "teacher-int8", "--samples", "4"])
    assert args.bundles == ["teacher", "teacher-int8"] and args.published == "RUN" and args.samples == 4
    args = make_parser().parse_args(["evaluate", "teacher", "--data", "D", "student", "--json"])
    assert args.bundles == ["teacher", "student"] and args.data == "D" and args.json


# ------------------------------------------------------------------ 5. Classify on an empty box says what to type

def test_classify_on_an_empty_box_says_what_to_type(pair_store, tmp_path, no_warmup):
    empty = make_context(str(tmp_path / "store"))  # a single-text app (no variants yet): the box comes first
    for text in ("", "   \n"):
        with pytest.raises(gr.Error) as caught:
            list(cb.predict(empty, text))
        assert "Type a text to classify (or pick an example)" in caught.value.message
        assert caught.value.duration is None  # the words stay as long as the outputs' "Error" badge
    pair_ctx = make_context(str(pair_store))
    with pytest.raises(gr.Error) as caught:
        list(cb.predict(pair_ctx, "", " "))
    message = caught.value.message
    assert "both boxes" in message and "Sentence 1" in message and "Sentence 2" in message
    with pytest.raises(gr.Error, match="fill in both Sentence 1 and Sentence 2"):
        list(cb.predict(pair_ctx, "", SECOND))  # one box of the pair left empty: which one is missing
