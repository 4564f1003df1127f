"""The lab's torch runtime: a torch bundle predicts through a frozen TorchScript trace of its model.

Why: at batch 1 on short texts, a small model's eager forward is mostly Python and dispatch overhead, and dynamic
int8 adds a Python wrapper per Linear. Measured with ``python -m compression bench`` (eager vs traced, 2-core VM,
SST-2 test sentences, 2 threads, p50): MiniLM-L6 int8 4.92 -> 3.31 ms, fp32 12.10 -> 10.53 ms, MPNet-base
62.35 -> 56.29 ms (docs/techniques.md).

The trace is made in memory the first time a bundle predicts (bundles stay safetensors: nothing pickled is ever
written or read) and checked against the eager model on a batch with other lengths and padding; when tracing fails
or differs, the eager model is used and the reason is kept. ``COMPRESSION_LAB_RUNTIME=eager`` turns it off.
"""

from __future__ import annotations

import os
import warnings

import torch

from compression.core.texts import encode

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Two texts of different lengths: the trace sees real padding, so the attention-mask path is recorded.
TRACE_TEXTS = ("a short one", "and a rather longer example, so that the first text in the batch gets padded")
CHECK_TEXTS = ("another check", "of a different batch size and length", "with more words in it than the others, "
               "and punctuation too!")
LONG_TEXT = "a long text that runs past the model's maximum length, " * 200
# Pair models are traced and checked on pairs: the segment ids and separators of a second text are in the graph.
TRACE_PAIRS = (("a short one", "and its partner"), ("a longer first text of the pair", "so that the other pair in "
                                                   "the batch gets padded at its end"))
CHECK_PAIRS = (("another check", "of a different batch size"), ("and lengths", "with more words in it than the "
                                                                "others, and punctuation too!"),
               ("short", "pair"))
LONG_PAIR = ("a short first text", LONG_TEXT)


class _Logits(torch.nn.Module):
    def __init__(self, model, names):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *tensors):
        return self.model(**dict(zip(self.names, tensors))).logits


def wanted() -> bool:
    return os.environ.get("COMPRESSION_LAB_RUNTIME", "torchscript").lower() != "eager"


def trace(model, tokenizer, max_length: int, pair: bool = False) -> tuple[object | None, str]:
    """``(runner, description)``: ``runner(encoding) -> logits`` from a frozen trace, or ``None`` to run eagerly.
    ``pair``: the model classifies pairs of texts, so it is traced and checked on pairs."""

    if not wanted():
        return None, "eager (COMPRESSION_LAB_RUNTIME=eager)"
    texts, checks, long = (TRACE_PAIRS, CHECK_PAIRS, LONG_PAIR) if pair else (TRACE_TEXTS, CHECK_TEXTS, LONG_TEXT)
    example = encode(tokenizer, list(texts), padding=True, truncation=True, max_length=max_length,
                     return_tensors="pt")
    names = [n for n in INPUTS if n in example]
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch marks jit deprecated; it is still the fastest CPU path here
            traced = torch.jit.freeze(torch.jit.trace(_Logits(model.eval(), names).eval(),
                                                      tuple(example[n] for n in names), check_trace=False))
            checks = [  # another batch size with other lengths and padding; batch 1 at full length
                encode(tokenizer, list(checks), padding=True, truncation=True, max_length=max_length,
                       return_tensors="pt"),
                encode(tokenizer, [long], truncation=True, max_length=max_length, return_tensors="pt")]
            pairs = [(model(**{n: c[n] for n in names}).logits.float(), traced(*(c[n] for n in names)).float())
                     for c in checks]
    except Exception as err:  # any model the tracer cannot follow still runs, just eagerly
        return None, f"eager (trace failed: {type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''})"
    # As strict as a bundle's own reload check (fp32 1e-4): a trace must not change what the bundle predicts.
    if any(got.shape != eager.shape or not torch.allclose(got, eager, atol=1e-4, rtol=1e-4) for eager, got in pairs):
        return None, "eager (the trace did not reproduce the model on the check batches)"

    def run(encoding):
        return traced(*(encoding[n] for n in names))

    return run, "torchscript (traced and frozen at load)"
