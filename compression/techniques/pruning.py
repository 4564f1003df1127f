"""Pruning: magnitude (threshold or global target sparsity) and structured (attention heads, FFN neurons, layers).

Unstructured sparsity zeroes weights but keeps every matrix dense: dense CPU kernels run no faster, only the
bundle (stored as bitmask + non-zero values) gets smaller. Structured pruning physically shrinks the matrices,
which is what buys speed. A structured-pruned model cannot be loaded by ``from_pretrained`` (its shapes differ
from its config), so the bundle records per-layer shapes and :func:`apply_structure` rebuilds the skeleton.
"""

from __future__ import annotations

import re

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from compression.bundle.shapes import _set_heads, _swap, count_parameters, layer_parts
from compression.core.config import PRUNE_TARGETS
from compression.core.errors import LabError

DEFAULT_TARGETS = tuple(PRUNE_TARGETS)  # one pattern, defined with the recipe field it defaults


# ---------------------------------------------------------------- magnitude pruning

def selected_weights(model: nn.Module, patterns=DEFAULT_TARGETS) -> list[tuple[str, nn.Linear]]:
    """(parameter name, module) for every Linear weight whose full name matches one of ``patterns`` (regexes)."""
    compiled = [re.compile(p) for p in patterns]
    found = [(f"{name}.weight", module) for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and any(p.search(f"{name}.weight") for p in compiled)]
    if not found:
        raise LabError(f"no Linear weights match {list(patterns)}")
    return found


def magnitude_prune(model: nn.Module, *, threshold: float | None = None, sparsity: float | None = None,
                    patterns=DEFAULT_TARGETS) -> list[tuple[str, nn.Linear]]:
    """Attach pruning masks: ``threshold`` zeroes every selected weight with ``|w| < threshold``; ``sparsity`` zeroes
    the globally smallest fraction of all selected weights. Masks stay in force (through fine-tuning) until
    :func:`make_permanent`."""
    if (threshold is None) == (sparsity is None):
        raise ValueError("give exactly one of threshold or sparsity")
    targets = selected_weights(model, patterns)
    if threshold is not None:
        for _, module in targets:
            torch_prune.custom_from_mask(module, "weight", module.weight.detach().abs() >= threshold)
    else:
        torch_prune.global_unstructured([(m, "weight") for _, m in targets], pruning_method=torch_prune.L1Unstructured,
                                        amount=float(sparsity))
    return targets


def make_permanent(model: nn.Module) -> None:
    """Fold every pruning mask into its weight (zeros stay zeros) and drop the re-parametrisation."""
    for module in model.modules():
        if torch_prune.is_pruned(module) and hasattr(module, "weight_mask"):
            torch_prune.remove(module, "weight")


def sparsity_report(model: nn.Module, patterns=DEFAULT_TARGETS) -> dict:
    """Achieved sparsity per selected weight and overall, plus total / non-zero parameter counts of the model."""
    per_layer, zeros, size = {}, 0, 0
    for name, module in selected_weights(model, patterns):
        weight = module.weight.detach()
        z = int((weight == 0).sum())
        per_layer[name] = round(z / weight.numel(), 4)
        zeros, size = zeros + z, size + weight.numel()
    total, nonzero = count_parameters(model)
    return {"overall": zeros / size if size else 0.0, "per_layer": per_layer, "params": total,
            "nonzero_params": nonzero}


# ---------------------------------------------------------------- structured pruning


def importance(model, batches) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """First-order Taylor importance of every attention head and FFN neuron: ``sum over examples of
    |sum over the example's tokens of activation * gradient|`` (the expectation of the absolute per-example
    contribution, Michel et al., 2019; the absolute value comes before the sum over examples).

    ``batches`` yield model inputs with ``labels``. Returns (per-layer head scores, per-layer neuron scores),
    each layer's scores normalised to unit L2 norm so layers compare (Michel et al., 2019).
    """
    parts = layer_parts(model)
    heads = [torch.zeros(p.q.out_features // p.head_size) for p in parts]
    neurons = [torch.zeros(p.ffn_in.out_features) for p in parts]
    captured: dict[tuple[int, str], torch.Tensor] = {}

    def capture(index: int, kind: str):
        def hook(module, args):
            args[0].retain_grad()
            captured[(index, kind)] = args[0]
        return hook

    handles = []
    for i, part in enumerate(parts):
        handles.append(part.o.register_forward_pre_hook(capture(i, "heads")))
        handles.append(part.ffn_out.register_forward_pre_hook(capture(i, "ffn")))
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            captured.clear()
            model.zero_grad(set_to_none=True)
            out = model(**{k: v for k, v in batch.items() if k != "teacher_logits"})
            out.loss.backward()
            for i, part in enumerate(parts):
                # per example: sum over its tokens (and a head's dimensions), |.|, then sum over examples;
                # |sum over the batch| would let examples whose contributions differ in sign cancel out
                x = captured[(i, "heads")]
                contribution = (x * x.grad).reshape(*x.shape[:-1], -1, part.head_size).sum(dim=(1, 3))
                heads[i] += contribution.abs().sum(dim=0).detach()
                x = captured[(i, "ffn")]
                neurons[i] += (x * x.grad).sum(dim=1).abs().sum(dim=0).detach()
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    normalise = lambda t: t / t.norm().clamp_min(1e-12)  # noqa: E731
    return [normalise(h) for h in heads], [normalise(n) for n in neurons]


def prune_heads(model, remove: dict[int, list[int]]) -> None:
    """Physically remove attention heads: ``remove[layer] = [head, ...]`` (at least one head stays per layer)."""
    from transformers.pytorch_utils import prune_linear_layer

    parts = layer_parts(model)
    for layer, heads in remove.items():
        if not heads:
            continue
        part = parts[layer]
        if not part.heads_prunable:
            raise LabError("attention-head pruning is not supported for MPNet (its relative position bias is shared "
                           "by all heads); prune FFN neurons or layers instead")
        count = part.q.out_features // part.head_size
        keep_heads = [h for h in range(count) if h not in set(heads)]
        if not keep_heads:
            raise LabError(f"cannot remove every head of layer {layer}")
        index = torch.cat([torch.arange(h * part.head_size, (h + 1) * part.head_size) for h in keep_heads])
        for key in ("q", "k", "v"):
            _swap(part, key, prune_linear_layer(getattr(part, key), index, dim=0))
        _swap(part, "o", prune_linear_layer(part.o, index, dim=1))
        _set_heads(part, len(keep_heads))


def prune_neurons(model, keep: dict[int, torch.Tensor]) -> None:
    """Physically keep only the given FFN intermediate neurons of each layer."""
    from transformers.pytorch_utils import prune_linear_layer

    parts = layer_parts(model)
    for layer, index in keep.items():
        part = parts[layer]
        index = torch.as_tensor(index, dtype=torch.long).sort().values
        _swap(part, "ffn_in", prune_linear_layer(part.ffn_in, index, dim=0))
        _swap(part, "ffn_out", prune_linear_layer(part.ffn_out, index, dim=1))


def structured_prune(model, batches, *, heads: float = 0.0, ffn: float = 0.0) -> dict:
    """Remove the least important fraction ``heads`` of all attention heads (ranked globally) and ``ffn`` of each
    layer's FFN neurons, by Taylor importance on ``batches``. Returns what was removed."""
    head_scores, neuron_scores = importance(model, batches)
    removed_heads: dict[int, list[int]] = {}
    if heads > 0:
        ranked = sorted((float(s), layer, h) for layer, scores in enumerate(head_scores) for h, s in enumerate(scores))
        budget = int(round(heads * len(ranked)))
        remaining = {layer: len(scores) for layer, scores in enumerate(head_scores)}
        for _, layer, h in ranked:
            if budget == 0:
                break
            if remaining[layer] > 1:  # a layer keeps at least one head
                removed_heads.setdefault(layer, []).append(h)
                remaining[layer] -= 1
                budget -= 1
        prune_heads(model, removed_heads)
    kept_neurons = {}
    if ffn > 0:
        for layer, scores in enumerate(neuron_scores):
            keep = max(8, int(round(len(scores) * (1 - ffn) / 8)) * 8)  # multiples of 8 suit vectorised kernels
            kept_neurons[layer] = scores.topk(min(keep, len(scores))).indices
        prune_neurons(model, kept_neurons)
    return {"heads_removed": {str(k): sorted(v) for k, v in removed_heads.items()},
            "ffn_kept": {str(k): len(v) for k, v in kept_neurons.items()}}



