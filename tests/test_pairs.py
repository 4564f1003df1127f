"""Sentence-pair tasks: loading (each column-name convention, errors), tokenization that keeps the pair, training,
and every compression method's reload on pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compression.core.config import DataConfig
from compression.core.errors import LabError
from compression.core.texts import as_texts, encode, texts_of
from compression.data.loading import load_data

from .conftest import make_tiny_backbone, run_cli, run_main, synthetic_pairs, synthetic_rows


def _write(folder, header: list[str], rows: list[tuple], splits=("train", "validation", "test")):
    folder.mkdir(parents=True, exist_ok=True)
    for split in splits:
        lines = ["\t".join(header)] + ["\t".join(map(str, r)) for r in rows]
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize("first,second", [("sentence1", "sentence2"), ("premise", "hypothesis"),
                                          ("question1", "question2"), ("question", "sentence")])
def test_known_pair_columns_make_a_pair_task(tmp_path, first, second):
    rows = [(a, b, y) for a, b, y in synthetic_pairs(30, 1)]
    folder = _write(tmp_path / "d", [first, second, "label"], rows)
    data = load_data(DataConfig(source=str(folder)))
    assert data.pair == (first, second)
    test = data.splits["test"]
    assert texts_of(test)[0] == (rows[0][0], rows[0][1])
    assert "pairs of" in data.summary()


def test_one_column_of_a_pair_alone_stays_a_single_text_task(tmp_path):
    folder = _write(tmp_path / "d", ["question", "label"], synthetic_rows(30, 1))
    data = load_data(DataConfig(source=str(folder)))
    assert data.pair is None and "text_pair" not in data.splits["train"].column_names


def test_pair_columns_named_in_the_recipe(tmp_path):
    rows = [(a, b, y, "x") for a, b, y in synthetic_pairs(30, 2)]
    folder = _write(tmp_path / "d", ["left", "right", "label", "note"], rows)
    data = load_data(DataConfig(source=str(folder), text_column="left", text_pair_column="right"))
    assert data.pair == ("left", "right") and texts_of(data.splits["train"])[0][1] == rows[0][1]


def test_single_text_fingerprint_is_unchanged_by_pair_support(tiny_data):
    """Existing stores keep their data fingerprints: single-text data hash exactly as before pairs existed."""
    import hashlib

    data = load_data(DataConfig(source=str(tiny_data)))
    digest = hashlib.sha256("\x1f".join(data.labels).encode())
    for split in ("train", "validation", "test"):
        digest.update(split.encode())
        for text, label in zip(data.splits[split]["text"], data.splits[split]["label"]):
            digest.update(f"{label}\x1e{text}\x1d".encode())
    assert data.fingerprint == digest.hexdigest()[:16]


def test_pair_errors_name_the_problem(tmp_path):
    rows = synthetic_pairs(30, 3)
    empty = _write(tmp_path / "empty", ["sentence1", "sentence2", "label"], [(a, "", y) for a, _, y in rows],
                   splits=("train",))
    with pytest.raises(LabError, match="'sentence2' is empty in the train split"):
        load_data(DataConfig(source=str(empty)))
    split = _write(tmp_path / "split", ["sentence1", "sentence2", "label"], rows, splits=("train", "validation"))
    _write(split, ["sentence1", "label"], [(a, y) for a, _, y in rows], splits=("test",))
    with pytest.raises(LabError, match="test split has no column sentence2"):
        load_data(DataConfig(source=str(split)))
    with pytest.raises(LabError, match="no text_pair column 'other'"):
        load_data(DataConfig(source=str(tmp_path / "split" / "train.tsv"), text_pair_column="other"))


def test_rows_missing_one_text_are_dropped(tmp_path):
    rows = synthetic_pairs(30, 4)
    folder = _write(tmp_path / "d", ["sentence1", "sentence2", "label"], rows[:29] + [(rows[29][0], " ", 1)],
                    splits=("train",))
    assert len(load_data(DataConfig(source=str(folder))).splits["train"]) + \
        len(load_data(DataConfig(source=str(folder))).splits["validation"]) + \
        len(load_data(DataConfig(source=str(folder))).splits["test"]) == 29


def test_encode_keeps_the_pair_structure(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    enc = encode(tokenizer, [("good film", "bad plot")])
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
    assert tokens == ["[CLS]", "good", "film", "[SEP]", "bad", "plot", "[SEP]"]
    assert enc["token_type_ids"][0] == [0, 0, 0, 0, 1, 1, 1]
    # Truncation shares the budget: the longer text gives way first, both keep some words.
    long = ("good " * 3, "bad " * 40)
    ids = encode(tokenizer, [long], truncation=True, max_length=16)["input_ids"][0]
    assert len(ids) == 16 and tokenizer.convert_ids_to_tokens(ids).count("good") == 3
    with pytest.raises(ValueError, match="mix"):
        as_texts(["one", ("a", "b")])


def test_json_pairs_come_back_as_tuples():
    assert as_texts(json.loads(json.dumps([("a", "b")]))) == [("a", "b")]


@pytest.fixture(scope="module")
def pair_zoo(tiny_pair_data, tmp_path_factory):
    """Every quantization method and both pruning methods on a pair task, chained as a recipe chains them
    (distil, prune the student with recovery, quantize a pruned variant), built by the CLI; each bundle is reloaded
    and checked on pair probes before it is recorded. The one build that covers every method: keep it the only one."""
    folder = tmp_path_factory.mktemp("pair-zoo")
    backbone = make_tiny_backbone(folder / "tiny")
    recipe = folder / "zoo.yaml"
    recipe.write_text(f"""name: pair-zoo
data: {{source: {tiny_pair_data}}}
teacher: {{model: {backbone}, max_length: 32, train: {{epochs: 8, batch_size: 16, learning_rate: 3.0e-3, warmup_ratio: 0.0}}}}
students:
  - {{name: student, init: teacher-layers, layers: [0], max_length: 32, train: {{epochs: 2, batch_size: 16, learning_rate: 1.0e-3}}}}
prune:
  - {{name: slim, source: teacher, method: structured, heads: 0.5, ffn: 0.5, importance_batches: 2}}
  - {{name: sparse, source: student, method: magnitude, sparsity: 0.5, recover: {{epochs: 1, batch_size: 16}}}}
quantize:
  - {{name: int8, source: teacher, method: dynamic-int8}}
  - {{name: onnx-int8, source: teacher, method: onnx-int8}}
  - {{name: onnx, source: teacher, method: onnx-fp32}}
  - {{name: bf16, source: teacher, method: bf16}}
  - {{name: fp16, source: teacher, method: fp16}}
  - {{name: slim-int8, source: slim, method: dynamic-int8}}
bench: {{samples: 8, repeats: 1, warmup: 1, throughput_batches: 1, memory: false}}
""")
    result = run_cli("build", str(recipe), "--store", str(folder / "store"))
    assert result.returncode == 0, result.stderr[-3000:]
    listed = run_main("list", "--store", str(folder / "store"), "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    rows = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
    return folder / "store", {row["name"]: row for row in rows}


def test_every_method_builds_reloads_and_scores_on_pairs(pair_zoo):
    from compression.bundle.folder import load_bundle
    from compression.bundle.verify import check_probe

    store, rows = pair_zoo
    assert set(rows) == {"teacher", "student", "slim", "sparse", "int8", "onnx-int8", "onnx", "bf16", "fp16",
                         "slim-int8"}
    assert rows["teacher"]["accuracy"] > 0.9  # the pair task needs both texts: the teacher learnt to read them
    assert rows["slim-int8"]["parent"] == "slim" and rows["sparse"]["parent"] == "student"
    assert rows["sparse"]["kind"] == "pruned" and rows["slim-int8"]["kind"] == "quantized"
    sparse = load_bundle(rows["sparse"]["bundle"]).meta["pruning"]["sparsity"]
    assert abs(sparse["overall"] - 0.5) <= 0.01 and sparse["nonzero_params"] < sparse["params"]
    slim = load_bundle(rows["slim"]["bundle"]).meta
    assert rows["slim"]["metrics"]["params"] < rows["teacher"]["metrics"]["params"]  # matrices shrank
    assert slim["pruning"]["heads_removed"], slim["pruning"]
    for name, row in rows.items():
        bundle = load_bundle(row["bundle"])
        assert bundle.pair == ("sentence1", "sentence2"), name
        assert isinstance(bundle.meta["probe"]["texts"][0], list), name  # probed on pairs
        assert check_probe(bundle)["ok"], name
        if name in ("int8", "onnx-int8", "onnx", "bf16", "fp16", "student"):
            assert row["accuracy"] > 0.85, (name, row["accuracy"])


def test_pair_bundle_reads_both_texts_and_refuses_single_texts(pair_zoo):
    from compression.bundle.folder import load_bundle

    store, rows = pair_zoo
    bundle = load_bundle(rows["int8"]["bundle"])
    # Same first text, second text flips the majority: the prediction must follow the second text.
    flips = bundle.predict([("good film", "awful dreadful stale plot"), ("good film", "great brilliant superb plot")])
    assert [p.label for p in flips] == [bundle.labels[0], bundle.labels[1]]
    assert flips[0].tokens == len(encode(bundle.tokenizer, [("good film", "awful dreadful stale plot")])["input_ids"][0])
    with pytest.raises(LabError, match="classifies pairs"):
        bundle.predict(["good film"])
    with pytest.raises(LabError, match="empty"):
        bundle.predict([("good film", "  ")])
    assert bundle.runtime == "torchscript (traced and frozen at load)"  # traced and checked on pairs


def test_bench_measures_real_pairs(pair_zoo):
    _, rows = pair_zoo
    provenance = rows["teacher"]["provenance"]
    assert provenance["inputs"] == "text pairs" and provenance["sequence_length"]["mean"] > 8  # both texts
    assert rows["teacher"]["latency_p50_ms"] > 0 and np.isfinite(rows["onnx-int8"]["speedup_p50"])
    assert 0 <= rows["teacher"]["metrics"]["f1_positive"] <= 1  # binary: F1 of class 1, with its CI
    assert rows["teacher"]["metrics"]["f1_positive_ci_low"] <= rows["teacher"]["metrics"]["f1_positive"]


def test_pairs_are_augmented_as_pairs_and_transfer_sets_refused(tiny_pair_data, tiny_model, tmp_path):
    """Copies of a pair perturb both texts (a build with them: tests/test_hidden_states.py); a transfer set holds
    single texts, so it is refused for a pair task before anything trains."""
    from compression.data.augment import augment_texts, source_texts

    neighbours = {"good": ["great"], "dull": ["boring"]}
    pairs = [("a good film", "a dull plot")]
    assert augment_texts(pairs, neighbours, copies=1, replace=1.0, seed=0) == [("a great film", "a boring plot")]
    assert augment_texts(pairs, neighbours, 1, 1.0, 0, avoid={("a great film", "a boring plot")}) == []
    assert source_texts(pairs + [("short", "one")], min_words=5, max_texts=None, seed=0) == pairs  # words of both

    recipe = tmp_path / "aug.yaml"
    recipe.write_text(f"name: aug\ndata: {{source: {tiny_pair_data}}}\nteacher: {{model: {tiny_model}}}\n"
                      f"augment: {{copies: 0, transfer: {tiny_pair_data / 'test.tsv'}}}\n"
                      f"students:\n  - {{name: s, init: teacher-layers, layers: [0]}}\n")
    result = run_main("build", str(recipe), "--store", str(tmp_path / "store"))
    assert result.returncode != 0
    assert "pair task (sentence1 + sentence2)" in result.stderr and "remove augment.transfer" in result.stderr
    assert "loading teacher" not in result.stdout + result.stderr


def test_markdown_table_reports_f1_of_the_positive_class(pair_zoo):
    store, rows = pair_zoo
    result = run_main("list", "--store", str(store), "--markdown", "--f1")
    assert result.returncode == 0, result.stderr[-2000:]
    header, _, teacher, *_ = result.stdout.strip().splitlines()
    assert "| F1 % (95% CI) | F1 vs teacher |" in header and "| acc vs teacher |" in header
    f1 = rows["teacher"]["metrics"]["f1_positive"] * 100
    assert f"| {f1:.1f} (" in teacher and teacher.count("+0.0") == 2  # the teacher against itself
    plain = run_main("list", "--store", str(store), "--markdown").stdout
    assert "F1 %" not in plain and "| of teacher |" in plain  # single-metric tables are unchanged
