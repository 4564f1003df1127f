"""Word attribution by occlusion, on models whose answer is known."""

import time

import numpy as np
import pytest

from compression.evaluation.attribution import MAX_WORDS, TooLong, highlighted, occlusion

POSITIVE, NEGATIVE = {"good", "great", "superb"}, {"bad", "dull", "awful"}


def counting_model(texts):
    """P(positive) = sigmoid(2 * (positive words - negative words)): the answer to each word is known."""
    def score(text):
        words = " ".join(text if isinstance(text, tuple) else (text,)).lower().split()
        return 2.0 * (sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words))

    p = 1 / (1 + np.exp(-np.array([score(t) for t in texts])))
    return np.stack([1 - p, p], axis=1)


def test_words_that_decide_score_high_and_filler_scores_zero():
    result = occlusion("the plot was good and the cast great", counting_model, ["neg", "pos"])
    scores = {w.text: w.score for w in result["words"]}
    assert result["label"] == "pos" and result["probability"] == pytest.approx(1 / (1 + np.exp(-4)))
    assert scores["good"] == pytest.approx(scores["great"]) and scores["good"] > 0.05
    assert all(scores[w] == 0 for w in ("the", "plot", "was", "and", "cast"))


def test_a_word_against_the_prediction_scores_negative():
    result = occlusion("good great but dull", counting_model, ["neg", "pos"])
    scores = {w.text: w.score for w in result["words"]}
    assert result["label"] == "pos" and scores["dull"] < 0 < scores["good"]


def test_pairs_attribute_words_of_both_texts_and_highlight_rebuilds_them():
    pair = ("a good film", "an awful  ending")
    result = occlusion(pair, counting_model, ["neg", "pos"])
    assert [(w.text, w.part) for w in result["words"]] == [("a", 0), ("good", 0), ("film", 0), ("an", 1),
                                                             ("awful", 1), ("ending", 1)]
    spans = highlighted(pair, result)
    assert ["".join(piece for piece, _ in part) for part in spans] == list(pair)  # exact, double space too
    assert dict((p, s) for p, s in spans[1] if s is not None)["awful"] != 0


def test_one_batch_through_the_models_own_predict_and_a_clear_limit():
    calls = []

    def spy(texts):
        calls.append(len(texts))
        return counting_model(texts)

    occlusion(" ".join(["good"] * 25), spy, ["neg", "pos"])
    assert calls == [26]  # the text and one copy per word, in one call
    with pytest.raises(TooLong, match=f"up to {MAX_WORDS} words; this one has {MAX_WORDS + 1}"):
        occlusion(" ".join(["word"] * (MAX_WORDS + 1)), spy, ["neg", "pos"])
    assert calls == [26]  # refused before the model ran
    with pytest.raises(ValueError, match="no words"):
        occlusion("   ", spy, ["neg", "pos"])


def test_an_int8_bundle_attributes_a_25_word_sentence_through_its_runtime(tiny_teacher, tmp_path):
    from compression.bundle.folder import load_bundle, save_bundle
    from compression.evaluation.inspection import softmax
    from compression.techniques.quantization import dynamic_int8

    source = load_bundle(tiny_teacher)
    folder = save_bundle(dynamic_int8(source.model, int8_embeddings=True), source.tokenizer, tmp_path / "int8",
                         name="int8", kind="quantized", labels=source.labels, max_length=32, int8_embeddings=True,
                         technique="dynamic-int8")
    bundle = load_bundle(folder)
    text = "the film was good and the acting superb but plot " + "is quite " * 7 + "dull"
    assert len(text.split()) == 25
    started = time.perf_counter()
    result = occlusion(text, lambda texts: softmax(bundle.logits(texts)), bundle.labels)
    assert time.perf_counter() - started < 30  # generous: a correctness test, not a benchmark
    assert len(result["words"]) == 25 and result["label"] in bundle.labels
    # dynamic int8 scales activations per batch: the batched answer matches the single one to ~1e-3, not exactly
    assert result["probability"] == pytest.approx(float(softmax(bundle.logits([text]))[0].max()), abs=2e-3)
