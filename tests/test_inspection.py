"""What a variant loses, as pure figures: confusion, McNemar's discordant items, slices, calibration."""

import numpy as np
import pytest

from compression.evaluation.inspection import Predictions, calibration, inspect, softmax
from compression.evaluation.metrics import load_metric, paired_test

TEXTS = ["not a good film", "a good film", "great", "dull and long and not worth it at all today really",
         "awful", "fine", "bad", "superb"]
GOLD = np.array([0, 1, 1, 0, 0, 1, 0, 1])


def probs(labels, confidence=0.9):
    out = np.full((len(labels), 2), 1 - confidence)
    out[np.arange(len(labels)), labels] = confidence
    return out


def test_discordant_lists_are_mcnemars_items_and_confusions_sum_to_the_test_set():
    teacher = Predictions("teacher", probs([0, 1, 1, 0, 0, 1, 1, 1]))  # one mistake (index 6)
    variant = Predictions("int8", probs([1, 1, 1, 1, 0, 1, 0, 1], 0.7))  # two mistakes (0, 3), gets 6 right
    found = inspect(TEXTS, GOLD, ["neg", "pos"], variant, teacher)
    paired = paired_test(teacher.labels == GOLD, variant.labels == GOLD)
    assert (len(found["teacher_right_variant_wrong"]), len(found["variant_right_teacher_wrong"])) == \
        paired["discordant"] == (2, 1)
    assert [e["index"] for e in found["teacher_right_variant_wrong"]] == [0, 3]
    assert found["variant_right_teacher_wrong"][0] == {
        "index": 6, "text": "bad", "label": "neg",
        "teacher": {"label": "pos", "probabilities": {"neg": 0.1, "pos": 0.9}},
        "variant": {"label": "neg", "probabilities": {"neg": 0.7, "pos": 0.3}}}
    for name in ("int8", "teacher"):
        matrix = np.array(found["confusion"][name])
        assert matrix.sum() == len(GOLD) and matrix.sum(axis=1).tolist() == [4, 4]
    assert found["confusion"]["int8"] == [[2, 2], [0, 4]]


def test_slices_show_where_the_loss_concentrates():
    teacher = Predictions("teacher", probs(GOLD))
    variant = Predictions("v", probs([1, 1, 1, 1, 0, 1, 0, 1]))  # wrong on both negated texts
    rows = {r["slice"]: r for r in inspect(TEXTS, GOLD, ["neg", "pos"], variant, teacher)["slices"]}
    assert rows["with a negation"]["examples"] == 2 and rows["with a negation"]["variant_accuracy"] == 0.0
    assert rows["with a negation"]["gap"] == 1.0 and rows["with a negation"]["lost"] == 2
    assert rows["without a negation"]["gap"] == 0.0
    assert rows["gold neg"]["lost"] == 2 and rows["gold pos"]["lost"] == 0
    assert rows["11-20 words"]["examples"] == 1 and "36+ words" not in rows  # empty slices left out


def test_pair_slices_use_both_texts():
    pairs = [("a b c", "a b c"), ("x y", "p q"), ("m n o", "m z w")]
    gold = np.array([1, 0, 1])
    same = Predictions("t", probs(gold))
    rows = {r["slice"]: r["examples"] for r in inspect(pairs, gold, ["no", "yes"], same, same)["slices"]}
    assert rows["word overlap >= 0.6"] == 1 and rows["word overlap < 0.3"] == 2
    found = inspect(pairs, gold, ["no", "yes"], Predictions("v", probs([0, 0, 1])), same)
    assert found["teacher_right_variant_wrong"][0]["text_pair"] == "a b c"


def test_calibration_matches_the_ece_metric_and_bins_hold_every_example():
    rng = np.random.default_rng(0)
    p = softmax(rng.normal(size=(300, 3)) * 2)
    gold = rng.integers(0, 3, size=300)
    found = calibration(p, gold)
    expected = load_metric("ece").compute(predictions=p.tolist(), references=gold.tolist())["ece"]
    assert found["ece"] == pytest.approx(expected, abs=1e-6)
    assert sum(b["examples"] for b in found["bins"]) == 300


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="shape"):
        inspect(TEXTS, GOLD, ["neg", "pos"], Predictions("v", probs(GOLD)[:3]), Predictions("t", probs(GOLD)))


# ---------------------------------------------------------------- kept by builds, read by `inspect`

def _inspect(*args):
    import json

    from .conftest import run_main

    result = run_main("inspect", *args)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout) if "--json" in args else result.stdout


def test_inspect_lists_match_mcnemar_and_confusions_sum_to_the_test_set(tiny_store):
    from compression.store.run_store import RunStore

    found = _inspect("teacher-int8", "--json", "--store", str(tiny_store))
    with RunStore(tiny_store, readonly=True) as store:
        recorded = store.get_variant("teacher-int8").metrics
    assert found["variant"] == "teacher-int8" and found["against"] == "teacher"  # the run's teacher by default
    assert len(found["teacher_right_variant_wrong"]) == recorded["only_teacher_correct"]
    assert len(found["variant_right_teacher_wrong"]) == recorded["only_variant_correct"]
    assert found["accuracy"]["teacher-int8"] == pytest.approx(recorded["accuracy"])
    assert found["calibration"]["teacher-int8"]["ece"] == pytest.approx(recorded["ece"], abs=1e-5)
    for matrix in found["confusion"].values():
        assert sum(map(sum, matrix)) == recorded["test_examples"] == found["examples"]
    table = _inspect("teacher-int8", "--store", str(tiny_store))
    assert "confusion of teacher:" in table and "McNemar's discordant pairs" in table and "calibration" in table


def test_a_published_copy_carries_them_and_nothing_is_written(tiny_store, tmp_path):
    import hashlib

    from .conftest import run_main

    out = tmp_path / "pub"
    assert run_main("publish", "--store", str(tiny_store), "--to", str(out), "--no-chart").returncode == 0
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()}
    here = _inspect("teacher-int8", "--json", "--store", str(tiny_store))
    there = _inspect("teacher-int8", "--json", "--published", str(out))
    for key in ("confusion", "mcnemar", "slices", "accuracy"):
        assert there[key] == here[key], key
    assert [e["index"] for e in there["teacher_right_variant_wrong"]] == \
        [e["index"] for e in here["teacher_right_variant_wrong"]]
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()} == before


def test_older_stores_and_published_runs_without_them_say_so_and_still_work(tiny_store, tmp_path):
    import json
    import shutil
    import sqlite3

    from .conftest import run_main, store_copy

    store = store_copy(tiny_store, tmp_path)
    with sqlite3.connect(store / "lab.sqlite") as conn:  # as a store made before the lab kept them
        conn.execute("DROP TABLE predictions")
        conn.execute("DROP TABLE test_splits")
    refused = run_main("inspect", "teacher-int8", "--store", str(store))
    assert refused.returncode == 1 and "recorded before the lab kept them" in refused.stderr
    assert run_main("list", "--store", str(store)).returncode == 0
    out = tmp_path / "pub"
    published = run_main("publish", "--store", str(store), "--to", str(out), "--no-chart")
    assert published.returncode == 0 and not (out / "predictions.json").exists()
    refused = run_main("inspect", "teacher-int8", "--published", str(out))
    assert refused.returncode == 1 and "published before the lab kept them" in refused.stderr
    assert json.loads(run_main("list", "--published", str(out), "--json").stdout.splitlines()[0])["status"] == "ok"
    shutil.rmtree(out)


def test_pair_runs_show_both_texts(pair_store):
    from compression.store.run_store import RunStore

    found = _inspect("student", "--json", "--store", str(pair_store))
    assert found["examples"] == 80 and {s["kind"] for s in found["slices"]} >= {"length", "label", "overlap"}
    every = found["teacher_right_variant_wrong"] + found["variant_right_teacher_wrong"]
    assert all("text_pair" in e and e["text"] for e in every)  # (the unit test above has a pair that differs)
    with RunStore(pair_store, readonly=True) as store:
        split = store.predictions(store.get_variant("student").id).split
    assert all(isinstance(t, tuple) and len(t) == 2 and all(t) for t in split.texts)
