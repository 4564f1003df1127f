"""Correctness of three statistics the lab relies on: Taylor importance per example (pruning), leakage of
evaluated sentences into transfer texts (augmentation), and McNemar's exact paired test (metrics)."""

import math

import numpy as np
import pytest
import torch

from compression.bundle.shapes import layer_parts
from compression.data.augment import new_texts
from compression.data.sources import load_tokenizer_and_model
from compression.evaluation.metrics import paired_test, score_logits
from compression.techniques.pruning import importance

from .conftest import make_tiny_backbone

# ---------------------------------------------------------------- importance: |.| per example, then the sum

@pytest.fixture(scope="module")
def balanced_model(tmp_path_factory):
    """A tiny classifier whose two logits are equal on one text (p = 0.5 each): the same text labelled 0 and
    labelled 1 then has exactly opposite gradients everywhere, so per-example contributions cancel in a batch."""
    folder = make_tiny_backbone(tmp_path_factory.mktemp("importance") / "b", hidden=32, layers=2, heads=4, seed=1)
    tokenizer, model = load_tokenizer_and_model(str(folder), ["0", "1"])
    model.eval()
    enc = dict(tokenizer(["a good film with a great cast"], return_tensors="pt"))
    with torch.no_grad():
        logits = model(**enc).logits[0]
        model.classifier.bias -= logits - logits.mean()
        assert float((model(**enc).logits[0, 0] - model(**enc).logits[0, 1]).abs()) < 1e-6
    return model, enc


def _batch(enc, labels):
    return {**{k: v.repeat(len(labels), 1) for k, v in enc.items()}, "labels": torch.tensor(labels)}


def test_importance_sums_absolute_per_example_contributions(balanced_model):
    model, enc = balanced_model
    heads_pair, neurons_pair = importance(model, [_batch(enc, [0, 1])])
    heads_one, neurons_one = importance(model, [_batch(enc, [0])])
    # each example of the pair contributes |c| (scaled by the mean loss): the same ranking as the text alone
    for got, want in zip(heads_pair + neurons_pair, heads_one + neurons_one):
        assert torch.allclose(got, want, atol=1e-4), (got, want)
        assert float(got.norm()) == pytest.approx(1.0, abs=1e-5)


def test_the_pair_really_cancels_when_summed_over_the_batch(balanced_model):
    """What the old |sum over the batch| saw: (close to) nothing, while each example's contribution is large."""
    model, enc = balanced_model
    part = layer_parts(model)[0]
    seen = {}

    def keep(module, args):
        args[0].retain_grad()
        seen["x"] = args[0]

    handle = part.ffn_out.register_forward_pre_hook(keep)
    try:
        model.zero_grad(set_to_none=True)
        model(**_batch(enc, [0, 1])).loss.backward()
        per_example = (seen["x"] * seen["x"].grad).sum(dim=1).detach()  # (2 examples, neurons)
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    assert float(per_example.sum(0).abs().max()) < 1e-4 * float(per_example.abs().sum(0).max())
    assert float(per_example.abs().sum(0).max()) > 0


# ---------------------------------------------------------------- new_texts: containing an evaluated sentence

KNOWN = ["The acting is superb and the plot never drags for a moment .", "superb", "a fine cast"]
QUOTES = ("I went in expecting little. The acting is superb, and the plot -LRB- never -RRB- drags for a moment! "
          "Afterwards we argued for hours about the ending, the score, the odd choice of locations and whether "
          "the sequel, announced only last week, can possibly live up to any of it.")


def test_new_texts_drops_a_text_that_contains_a_known_sentence():
    assert new_texts([QUOTES], KNOWN, min_contained=10 ** 9) == [QUOTES]  # most of its 12-grams are new...
    assert new_texts([QUOTES], KNOWN) == []  # ...but it holds a whole evaluated sentence (respelled, even)


def test_new_texts_keeps_texts_that_only_contain_short_known_phrases():
    text = "A superb evening with a fine cast of newcomers, shot in grey northern towns."
    assert new_texts([text], KNOWN) == [text]  # words and short phrases are not sentences


def test_new_texts_keeps_its_other_rules():
    known = ["it does n't work , and the plot -lrb- such as it is -rrb- drags .", "a charming , funny film",
             "the acting is superb"]
    texts = ["It doesn't work, and the plot (such as it is) drags.", "A charming, funny film; the acting is superb.",
             "An overlong mess with one great scene near the end.",
             "An overlong mess with one great scene near the end!",
             "   ", "Nothing here resembles any review we have seen."]
    assert new_texts(texts, known) == ["An overlong mess with one great scene near the end.",
                                       "Nothing here resembles any review we have seen."]
    assert new_texts([], known) == [] and new_texts(texts[2:3], []) == texts[2:3]


# ---------------------------------------------------------------- McNemar's exact test

def test_paired_test_counts_discordant_pairs_and_gives_exact_p_values():
    assert paired_test([True] * 5, [True] * 5) == {"mcnemar_p": 1.0, "discordant": (0, 0)}
    assert paired_test([1, 0, 1, 0], [1, 0, 1, 0]) == {"mcnemar_p": 1.0, "discordant": (0, 0)}
    ten = paired_test([1] * 10 + [1, 0], [0] * 10 + [1, 0])
    assert ten["discordant"] == (10, 0) and ten["mcnemar_p"] == pytest.approx(2 / 2 ** 10)
    # b = 18, c = 7: 2 * sum_{k <= 7} C(25, k) / 2^25 = 2 * 726206 / 33554432
    a = [1] * 18 + [0] * 7 + [1] * 30
    b = [0] * 18 + [1] * 7 + [1] * 30
    got = paired_test(a, b)
    assert got["discordant"] == (18, 7) and got["mcnemar_p"] == pytest.approx(2 * 726206 / 33554432, rel=1e-12)
    assert got["mcnemar_p"] == pytest.approx(0.043285, abs=1e-6)
    swapped = paired_test(b, a)
    assert swapped["mcnemar_p"] == got["mcnemar_p"] and swapped["discordant"] == (7, 18)
    assert paired_test([1, 0, 1, 0], [0, 1, 0, 1])["mcnemar_p"] == 1.0  # b == c: no evidence either way


def test_paired_test_is_exact_on_large_samples_and_checks_lengths():
    n_b, n_c = 520, 450
    got = paired_test([1] * n_b + [0] * n_c, [0] * n_b + [1] * n_c)["mcnemar_p"]
    z = (abs(n_b - n_c) - 1) / math.sqrt(n_b + n_c)  # normal approximation (continuity-corrected), close here
    assert got == pytest.approx(math.erfc(z / math.sqrt(2)), rel=0.05) and 0 < got < 0.05
    with pytest.raises(ValueError, match="same items"):
        paired_test([1, 0], [1])


def test_score_logits_reports_mcnemar_against_the_teacher():
    labels = [0, 1, 1, 0, 1, 0]
    teacher = np.array([[2, 0], [0, 2], [0, 2], [2, 0], [0, 2], [0, 2]], dtype=np.float32)  # 5 of 6 right
    variant = np.array([[2, 0], [2, 0], [0, 2], [0, 2], [0, 2], [2, 0]], dtype=np.float32)  # 4 of 6 right
    result = score_logits(variant, labels, reference_logits=teacher)
    expected = paired_test([t == y for t, y in zip(teacher.argmax(1), labels)],
                           [p == y for p, y in zip(variant.argmax(1), labels)])
    assert result["mcnemar_p_vs_teacher"] == expected["mcnemar_p"]
    assert (result["only_teacher_correct"], result["only_variant_correct"]) == (2.0, 1.0)
    itself = score_logits(teacher, labels)
    assert itself["mcnemar_p_vs_teacher"] == 1.0 and itself["only_teacher_correct"] == 0.0
