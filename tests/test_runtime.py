"""The TorchScript runtime: same logits as the eager model at any batch size and length, or an eager fallback."""

import numpy as np
import pytest
import torch

from compression.bundle.folder import load_bundle
from compression.bundle.runtime import trace
from compression.techniques.quantization import cast, dynamic_int8

TEXTS = ["a", "good film", "a long and winding sentence about a film that was not good at all " * 4,
         "bad", "fine fine fine"]


@pytest.mark.parametrize("method", [None, "dynamic-int8", "bf16"])
def test_trace_matches_eager_on_every_batch_shape(tiny_teacher, method):
    bundle = load_bundle(tiny_teacher)
    model = {None: lambda m: m, "dynamic-int8": dynamic_int8, "bf16": lambda m: cast(m, "bfloat16")}[method](bundle.model)
    run, runtime = trace(model, bundle.tokenizer, bundle.max_length)
    assert run is not None and runtime.startswith("torchscript")
    for batch in ([TEXTS[0]], [TEXTS[2]], TEXTS[:2], TEXTS):  # batch 1 short / full length, padded batches
        enc = bundle.tokenizer(batch, padding=True, truncation=True, max_length=bundle.max_length,
                               return_tensors="pt")
        with torch.inference_mode():
            eager = model(**enc).logits.float()
            traced = run(enc).float()
        assert torch.allclose(eager, traced, atol=1e-4, rtol=1e-4)


def test_bundle_uses_the_trace_and_can_be_told_not_to(tiny_teacher, monkeypatch):
    traced = load_bundle(tiny_teacher)
    got = traced.logits(TEXTS)
    assert traced.runtime.startswith("torchscript")
    monkeypatch.setenv("COMPRESSION_LAB_RUNTIME", "eager")
    eager = load_bundle(tiny_teacher)
    assert np.allclose(eager.logits(TEXTS), got, atol=1e-4) and eager.runtime.startswith("eager")


def test_untraceable_model_falls_back_to_eager(tiny_teacher):
    bundle = load_bundle(tiny_teacher)

    class Moody(torch.nn.Module):  # data-dependent Python control flow: a trace would bake in one branch
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **kwargs):
            out = self.inner(**kwargs)
            if int(kwargs["input_ids"].shape[0]) == 2:
                out.logits = out.logits * 2
            return out

    run, runtime = trace(Moody(bundle.model), bundle.tokenizer, bundle.max_length)
    assert run is None and "did not reproduce" in runtime
