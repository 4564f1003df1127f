"""A student's pooling choice (first token or mean of tokens): its forward, and that every runtime honours it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from compression.bundle.folder import load_bundle
from compression.bundle.pooling import mean_pooled_class, pooled, pooling_of
from compression.core.config import StudentConfig
from compression.core.errors import LabError
from compression.data.sources import load_tokenizer_and_model

from .conftest import run_cli, run_main

TEXTS = ["good", "a dull and tedious plot with a weak ending", "the film was great fun"]


def _mean_logits(model, tokenizer, text: str) -> torch.Tensor:
    """What a mean-pooled head computes, written out for one unpadded text."""
    with torch.no_grad():
        enc = tokenizer([text], return_tensors="pt")
        last = model.bert(**enc).last_hidden_state[0]
        pooler = model.bert.pooler
        return model.classifier(pooler.activation(pooler.dense(last.mean(0))))


def test_mean_pooling_reads_the_mean_of_the_real_tokens(tiny_model):
    tokenizer, model = load_tokenizer_and_model(str(tiny_model), ["negative", "positive"])
    model.eval()
    with torch.no_grad():
        enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
        first = model(**enc).logits
        model = pooled(model, "mean")
        mean = model(**enc).logits  # padded together: padding must not count
        loss = model(**enc, labels=torch.tensor([1, 0, 1])).loss
    assert type(model) is mean_pooled_class() and pooling_of(model) == "mean" and model.config.lab_pooling == "mean"
    for row, text in enumerate(TEXTS):
        torch.testing.assert_close(mean[row], _mean_logits(model, tokenizer, text), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(mean, first, atol=1e-3)  # the first token alone gives other logits
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(mean, torch.tensor([1, 0, 1])))
    assert type(pooled(model, "first")).__name__ == "BertForSequenceClassification"  # before training, reversible


def test_mean_pooling_is_refused_for_a_head_it_cannot_read():
    from transformers import MPNetConfig, MPNetForSequenceClassification

    model = MPNetForSequenceClassification(MPNetConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1,
                                                       num_attention_heads=2, intermediate_size=32))
    with pytest.raises(LabError, match="pooling: mean is built for BERT-architecture classifiers"):
        pooled(model, "mean")
    assert pooled(model) is model and not hasattr(model.config, "lab_pooling")  # left untouched
    with pytest.raises(ValueError, match="pooling"):
        StudentConfig(name="s", model="embedded:minilm-l6", pooling="max")


def test_every_runtime_of_a_mean_pooled_student_reads_the_mean(tiny_data, tiny_model, tmp_path):
    """A build with a mean-pooled student: the bundle records it, and its TorchScript trace, its int8 copy and its
    ONNX export all predict what the mean-pooled model does, not what the first token would give."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: r\ndata: {{source: {tiny_data}}}\n"
                      f"teacher: {{model: {tiny_model}, max_length: 32, train: {{epochs: 2, batch_size: 16, "
                      f"learning_rate: 3.0e-3, warmup_ratio: 0.0}}}}\nstudents:\n"
                      f"  - {{name: mean, model: {tiny_model}, pooling: mean, max_length: 32, "
                      f"train: {{epochs: 2, batch_size: 16, learning_rate: 3.0e-3}}}}\n"
                      "quantize:\n  - {name: mean-int8, source: mean, method: dynamic-int8}\n"
                      "  - {name: mean-onnx, source: mean, method: onnx-fp32}\n"
                      "bench: {samples: 4, repeats: 1, warmup: 1, throughput_batches: 1, memory: false}\n")
    result = run_cli("build", str(recipe), "--store", str(tmp_path / "store"))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["name"]: r for r in map(json.loads, run_main("list", "--json", "--store", str(tmp_path / "store"))
                                      .stdout.splitlines())}
    student = load_bundle(rows["mean"]["bundle"])
    assert student.meta["pooling"] == "mean" and "pooling" not in load_bundle(rows["teacher"]["bundle"]).meta
    assert json.loads((student.folder / "config.json").read_text())["lab_pooling"] == "mean"
    assert type(student.model) is mean_pooled_class()
    got = student.logits(TEXTS)
    assert student.runtime.startswith("torchscript"), student.runtime
    expected = np.stack([_mean_logits(student.model, student.tokenizer, t).numpy() for t in TEXTS])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    first = pooled(load_tokenizer_and_model(str(student.folder))[1], "first").eval()  # same weights, first token
    with torch.no_grad():
        first_logits = first(**student.tokenizer(TEXTS, padding=True, return_tensors="pt")).logits.numpy()
    assert not np.allclose(got, first_logits, atol=1e-2)
    for name, atol in (("mean-onnx", 1e-4), ("mean-int8", 0.15)):
        bundle = load_bundle(rows[name]["bundle"])
        assert bundle.meta["pooling"] == "mean", name
        logits = bundle.logits(TEXTS)
        np.testing.assert_allclose(logits, got, atol=atol, err_msg=name)
        assert np.abs(logits - got).max() < np.abs(logits - first_logits).max() / 3, name
    assert type(load_bundle(rows["mean-int8"]["bundle"]).model) is mean_pooled_class()


def test_the_card_of_a_mean_pooled_bundle_says_how_to_load_it():
    from compression.publishing.cards import _load_snippet

    assert "AutoModelForSequenceClassification.from_pretrained" in _load_snippet("s", "hf")
    snippet = _load_snippet("s", "hf", pooling="mean")
    assert "load_bundle" in snippet and "from_pretrained" not in snippet and "mean" in snippet
