import numpy as np
import pytest

from compression.evaluation.metrics import AVAILABLE, load_metric, score_logits


def test_shipped_metrics_load_offline_by_path():
    assert set(AVAILABLE) >= {"accuracy", "f1", "agreement", "ece"}
    with pytest.raises(ValueError, match="unknown metric 'bleu'"):
        load_metric("bleu")


def test_accuracy_ci_brackets_the_estimate_and_is_seeded():
    rng = np.random.default_rng(0)
    refs = rng.integers(0, 2, 500).tolist()
    preds = [r if rng.random() < 0.8 else 1 - r for r in refs]
    a = load_metric("accuracy").compute(predictions=preds, references=refs)
    b = load_metric("accuracy").compute(predictions=preds, references=refs)
    assert a == b
    assert a["accuracy_ci_low"] < a["accuracy"] < a["accuracy_ci_high"]
    assert 0.03 < a["accuracy_ci_high"] - a["accuracy_ci_low"] < 0.1  # ~ 2 * 1.96 * sqrt(.8 * .2 / 500) = 0.07


def test_macro_f1_hand_computed():
    # class 0: tp 1, fp 1, fn 1 -> 0.5; class 1: tp 2, fp 1, fn 1 -> 2/3; class 2: absent in both -> 0
    result = load_metric("f1").compute(predictions=[0, 1, 1, 0, 1], references=[0, 1, 0, 1, 1], num_classes=3)
    assert result["f1"] == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)
    assert load_metric("f1").compute(predictions=[0, 1], references=[0, 1])["f1"] == 1.0


def test_ece_zero_when_calibrated_and_large_when_overconfident():
    refs = [0, 1, 0, 1]
    assert load_metric("ece").compute(predictions=[[1, 0], [0, 1], [1, 0], [0, 1]], references=refs)["ece"] == 0
    wrong = load_metric("ece").compute(predictions=[[0.99, 0.01]] * 4, references=[1, 1, 1, 1])["ece"]
    assert wrong == pytest.approx(0.99, abs=1e-6)


def test_score_logits_fills_every_metric():
    logits = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 0.5], [0.2, 0.1]])
    result = score_logits(logits, [0, 1, 1, 0], reference_logits=np.array([[1, 0], [0, 1], [0, 1], [0, 1]]))
    assert result["accuracy"] == 0.75 and result["agreement"] == 0.5 and result["test_examples"] == 4
    assert set(result) >= {"accuracy_ci_low", "accuracy_ci_high", "f1", "ece"}
