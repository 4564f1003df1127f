"""Sentence-pair tasks through the command line and publishing: predict --pair and pair files, evaluate and bench on
pair data, and a published pair run that packs pairs and serves them read-only."""

import json

import pytest

from .conftest import run_cli, run_main

PAIRS = [("the film was good and great", "a superb moving story"),
         ("the plot was dull and awful", "a boring tedious script")]


def _error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-1500:]
    return lines[0]


def _pair_args(pairs) -> list[str]:
    return [arg for a, b in pairs for arg in ("--pair", a, b)]


def _test_pairs(data) -> set[tuple[str, str]]:
    rows = [line.split("\t") for line in (data / "test.tsv").read_text().splitlines()[1:]]
    return {(a, b) for a, b, _ in rows}


@pytest.fixture(scope="module")
def rows(pair_store) -> dict[str, dict]:
    result = run_main("list", "--store", str(pair_store), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    return {r["name"]: r for r in map(json.loads, result.stdout.splitlines())}


# ------------------------------------------------------------------ reading pair files (no model)

def test_read_texts_finds_pairs_by_header_or_by_variant(tmp_path):
    from compression.cli.common import read_texts

    named = tmp_path / "named.csv"  # a known pair header, columns in any order, quoted commas kept
    named.write_text('label,sentence2,sentence1\n1,"b, with a comma",a\n\n0,d,c\n', encoding="utf-8")
    assert read_texts(str(named)) == [("a", "b, with a comma"), ("c", "d")]
    bare = tmp_path / "bare.txt"  # no header: every row is a pair, but only for a pair variant
    bare.write_text("first one\tsecond one\nthird\tfourth\n", encoding="utf-8")
    assert read_texts(str(bare), ("sentence1", "sentence2")) == [("first one", "second one"), ("third", "fourth")]
    assert read_texts(str(bare)) == ["first one\tsecond one", "third\tfourth"]  # single texts: lines, as always
    lines = tmp_path / "lines.txt"
    lines.write_text("a film, with commas, \"quotes\n" + "x" * 200_000 + "\n", encoding="utf-8")
    assert read_texts(str(lines)) == ["a film, with commas, \"quotes", "x" * 200_000]
    own = tmp_path / "own.tsv"  # the variant's own input names are a header too
    own.write_text("claim\tevidence\nA\tB\n", encoding="utf-8")
    assert read_texts(str(own), ("claim", "evidence")) == [("A", "B")]


def test_read_texts_refuses_a_row_without_two_texts(tmp_path):
    from compression.cli.common import read_texts
    from compression.core.errors import LabError

    short = tmp_path / "short.tsv"
    short.write_text("sentence1\tsentence2\nA\tB\nonly one\n", encoding="utf-8")
    with pytest.raises(LabError, match=r"row 3 lacks a text in its columns sentence1, sentence2"):
        read_texts(str(short))


# ------------------------------------------------------------------ predict

def test_predict_pairs_plain_and_json(pair_store):
    result = run_main("predict", "teacher", *_pair_args(PAIRS), "--store", str(pair_store), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    preds = json.loads(result.stdout)
    assert [(p["text"], p["text_pair"]) for p in preds] == PAIRS
    assert all(p["label"] in ("0", "1") and 0.5 <= p["confidence"] <= 1 and p["tokens"] > 0 for p in preds)
    plain = run_main("predict", "teacher", *_pair_args(PAIRS[:1]), "--store", str(pair_store))
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert plain.stdout.split()[0] == preds[0]["label"] and f"{PAIRS[0][0]} ‖ {PAIRS[0][1]}" in plain.stdout


def test_predict_pair_files_match_pair_arguments(pair_store, tmp_path):
    expected = json.loads(run_main("predict", "teacher", *_pair_args(PAIRS), "--store", str(pair_store),
                                  "--json").stdout)
    named = tmp_path / "pairs.tsv"
    named.write_text("label\tsentence2\tsentence1\n" + "".join(f"x\t{b}\t{a}\n" for a, b in PAIRS))
    bare = tmp_path / "pairs.csv"
    bare.write_text("".join(f'"{a}","{b}"\n' for a, b in PAIRS))
    for file in (named, bare):
        result = run_main("predict", "teacher", "--file", str(file), "--store", str(pair_store), "--json")
        assert result.returncode == 0, result.stderr[-2000:]
        got = json.loads(result.stdout)
        assert [(p["text"], p["text_pair"], p["label"]) for p in got] == \
            [(p["text"], p["text_pair"], p["label"]) for p in expected]
        assert [p["confidence"] for p in got] == pytest.approx([p["confidence"] for p in expected], abs=1e-5)


def test_predict_refuses_the_wrong_kind(pair_store, tiny_teacher, tmp_path):
    line = _error_line(run_main("predict", "teacher", "a good film", "--store", str(pair_store)))
    assert "teacher classifies pairs of texts (sentence1 + sentence2)" in line and "--pair FIRST SECOND" in line
    line = _error_line(run_main("predict", str(tiny_teacher), "--pair", "a good film", "a great plot"))
    assert "classifies single texts, not pairs" in line
    pairs_file = tmp_path / "pairs.tsv"  # a file whose header names a pair is pairs, whoever reads it
    pairs_file.write_text("sentence1\tsentence2\na good film\ta great plot\n")
    assert "classifies single texts, not pairs" in _error_line(
        run_main("predict", str(tiny_teacher), "--file", str(pairs_file)))
    lines = tmp_path / "lines.txt"  # one text per line is no pair file
    lines.write_text("a good film\n")
    assert "row 1 lacks a text in its first two columns" in _error_line(
        run_main("predict", "teacher", "--file", str(lines), "--store", str(pair_store)))
    assert "not both" in _error_line(run_main("predict", "teacher", "x", "--pair", "a", "b", "--store",
                                             str(pair_store)))
    assert "pair 1 has an empty text" in _error_line(run_main("predict", "teacher", "--pair", "a film", "  ",
                                                             "--store", str(pair_store)))
    usage = run_main("predict", "teacher", "--pair", "only one")  # argparse: --pair takes two texts
    assert usage.returncode == 2 and "expected 2 arguments" in usage.stderr


# ------------------------------------------------------------------ evaluate and bench

def test_evaluate_scores_pairs(pair_store, tiny_pair_data, tiny_data, rows):
    result = run_main("evaluate", "teacher", "student", "--data", str(tiny_pair_data), "--store", str(pair_store),
                     "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    teacher, student = map(json.loads, result.stdout.splitlines())
    assert teacher["test_examples"] == 80 and teacher["accuracy"] == pytest.approx(rows["teacher"]["accuracy"])
    assert teacher["accuracy"] >= 0.7  # the task needs both texts: a model that reads one is near chance
    assert 0 <= teacher["f1_positive"] <= 1 and teacher["positive_label"] == "1"
    assert teacher["f1_positive_ci_low"] <= teacher["f1_positive"] <= teacher["f1_positive_ci_high"]
    assert student["accuracy"] == pytest.approx(rows["student"]["accuracy"]) and student["agreement"] is not None
    table = run_main("evaluate", "teacher", "--data", str(tiny_pair_data), "--store", str(pair_store)).stdout
    assert "(test, 80 pairs)" in table and "F1 pos." in table and f"{teacher['f1_positive']:.3f}" in table
    line = _error_line(run_main("evaluate", "teacher", "--data", str(tiny_data), "--store", str(pair_store)))
    assert "teacher classifies pairs of texts" in line and "holds single texts" in line


def test_bench_on_pairs(pair_store):
    result = run_main("bench", "teacher", "teacher-int8", "--store", str(pair_store), "--samples", "4",
                     "--repeats", "1", "--no-memory", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    bench = json.loads(result.stdout)
    assert bench["provenance"]["inputs"] == "text pairs" and bench["provenance"]["texts_available"] == 80
    assert [r["name"] for r in bench["results"]] == ["teacher", "teacher-int8"]
    assert all(r["latency_p50_ms"] > 0 for r in bench["results"])


# ------------------------------------------------------------------ publishing

@pytest.fixture(scope="module")
def published_pairs(pair_store, tmp_path_factory):
    folder = tmp_path_factory.mktemp("published-pairs") / "run"
    result = run_cli("publish", "--store", str(pair_store), "--to", str(folder), "--no-chart")
    assert result.returncode == 0, result.stderr[-2000:]
    return folder


def test_published_pair_run_packs_pairs(published_pairs, tiny_pair_data):
    from compression.publishing.writer import open_published

    examples = json.loads((published_pairs / "examples.json").read_text())
    assert examples["task"] == "pair" and examples["pair"] == ["sentence1", "sentence2"]
    test_pairs = _test_pairs(tiny_pair_data)
    assert all(isinstance(t, list) and len(t) == 2 for t in examples["texts"] + examples["test_texts"])
    assert {tuple(t) for t in examples["test_texts"]} == test_pairs and len(examples["test_texts"]) == 80
    assert json.loads((published_pairs / "results.json").read_text())["pair"] == ["sentence1", "sentence2"]
    assert json.loads((published_pairs / "manifest.json").read_text())["pair"] == ["sentence1", "sentence2"]
    run = open_published(str(published_pairs))
    assert run.pair == ("sentence1", "sentence2")
    assert run.test_texts and all(isinstance(t, tuple) for t in run.test_texts + run.examples)
    assert set(run.test_texts) == test_pairs and 1 <= len(run.examples) <= 12
    card = (published_pairs / "bundles" / "teacher" / "README.md").read_text()
    assert "pairs of texts" in card and "`sentence1` + `sentence2`" in card and "test pairs (tokens" in card
    readme = (published_pairs / "README.md").read_text()
    assert "sentence-pair task" in readme and "--pair" in readme


def test_published_pair_run_serves_pairs(published_pairs, pair_store):
    args = _pair_args(PAIRS)
    a = json.loads(run_main("predict", "teacher-int8", *args, "--store", str(pair_store), "--json").stdout)
    result = run_main("predict", "teacher-int8", *args, "--published", str(published_pairs), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    b = json.loads(result.stdout)
    assert [(p["text"], p["text_pair"], p["label"]) for p in a] == [(p["text"], p["text_pair"], p["label"]) for p in b]
    assert "classifies pairs of texts" in _error_line(
        run_main("predict", "teacher", "a good film", "--published", str(published_pairs)))
    bench = run_main("bench", "teacher", "--published", str(published_pairs), "--samples", "4", "--repeats", "1",
                    "--no-memory", "--json")  # the packed test pairs are the benchmark's inputs
    assert bench.returncode == 0, bench.stderr[-2000:]
    assert json.loads(bench.stdout)["provenance"]["inputs"] == "text pairs"


def test_published_single_run_reads_as_before(tmp_path):
    """examples.json without pairs: texts stay strings, stray items are left out, no pair."""
    from compression.publishing.reader import _pair, _texts

    assert _texts(["a", ["b", "c"], 3, None], pairs=False) == ["a"]
    assert _texts(["a", ["b", "c"], ["d"], "e"], pairs=True) == [("b", "c")]
    assert _texts(None, pairs=False) == [] and _pair(None) is None and _pair(["x"]) is None
    assert _pair(["sentence1", "sentence2"]) == ("sentence1", "sentence2")
