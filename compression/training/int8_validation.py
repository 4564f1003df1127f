"""Validation of a model's dynamic-int8 copy during training (``train.select_by: int8``).

A student whose purpose is its int8 variant is best kept at the checkpoint whose *int8* copy scores highest: int8
does not cost every checkpoint alike (MiniLM-L6 on MRPC dev, 7-bit activations: 0.2 to 3.4 points by checkpoint).
The copy is made as the dynamic-int8 technique makes its variant with default settings on this CPU (int8 word
embeddings, per-channel int8 Linear layers, 8-bit activations with VNNI/AMX, else 7), so the score that picks the
checkpoint is the one the variant will show.
"""

from __future__ import annotations

import copy

import torch

from compression.bundle.qlinear import default_bits, quantize_linears
from compression.bundle.weights import round_embeddings_int8

NOT_INPUTS = ("labels", "teacher_logits", "row")  # training columns the model does not read


def int8_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A CPU dynamic-int8 copy of ``model`` (left untouched), without its distillation projections."""
    from accelerate.utils import extract_model_from_parallel

    # The copy drops any mixed-precision forward patch Accelerate put on the model; the model keeps its own.
    work = extract_model_from_parallel(copy.deepcopy(model), keep_fp32_wrapper=False).float().to("cpu").eval()
    if hasattr(work, "distill_projections"):
        del work.distill_projections
    round_embeddings_int8(work)
    return quantize_linears(work, default_bits(), inplace=True)


@torch.no_grad()
def int8_accuracy(model: torch.nn.Module, dataloader, gather=lambda t: t) -> float:
    """Accuracy of ``model``'s int8 copy on ``dataloader``'s batches; ``gather`` joins the processes' shares
    (``accelerator.gather_for_metrics``) so that every process sees the same score."""
    work = int8_copy(model)
    predicted, gold = [], []
    for batch in dataloader:
        logits = work(**{k: v.to("cpu") for k, v in batch.items() if k not in NOT_INPUTS}).logits
        predicted.append(gather(logits.argmax(-1).to(batch["labels"].device)))
        gold.append(gather(batch["labels"]))
    return float((torch.cat(predicted) == torch.cat(gold)).float().mean())
