"""Per-layer shapes of structurally pruned models (what a bundle records to rebuild them) and parameter counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from compression.core.errors import LabError


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, non-zero) parameters, counting int8-quantized Linear weights too."""
    from compression.bundle.weights import quantized_linears

    quantized = set(quantized_linears(model).values())
    total = nonzero = 0
    for module in model.modules():
        tensors = [p.detach() for p in module.parameters(recurse=False)]
        if module in quantized:  # dynamic int8 Linear keeps its weights outside parameters()
            tensors += [module.weight().int_repr()] + ([module.bias()] if module.bias() is not None else [])
        for t in tensors:
            total += t.numel()
            nonzero += int((t != 0).sum())
    return total, nonzero


@dataclass
class LayerParts:
    attention: nn.Module  # holds num_attention_heads / all_head_size
    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    o: nn.Linear
    ffn_in: nn.Linear
    ffn_out: nn.Linear
    head_size: int
    heads_prunable: bool
    names: dict  # attribute paths, to swap modules


def layer_parts(model) -> list[LayerParts]:
    """Adaptor from BERT-like and MPNet layers to the Linear layers that structured pruning shrinks."""
    encoder = getattr(model.base_model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if layers is None:
        raise LabError(f"structured pruning supports BERT-like and MPNet encoders, not {type(model).__name__}")
    parts = []
    for layer in layers:
        if hasattr(layer.attention, "self"):  # BERT, RoBERTa, ELECTRA, MiniLM
            attn = layer.attention.self
            names = {"q": (attn, "query"), "k": (attn, "key"), "v": (attn, "value"),
                     "o": (layer.attention.output, "dense")}
            prunable = True
        elif hasattr(layer.attention, "attn"):  # MPNet: relative position bias is shared by all heads of all layers
            attn = layer.attention.attn
            names = {"q": (attn, "q"), "k": (attn, "k"), "v": (attn, "v"), "o": (attn, "o")}
            prunable = False
        else:
            raise LabError(f"structured pruning does not know the layer type {type(layer).__name__}")
        names.update({"ffn_in": (layer.intermediate, "dense"), "ffn_out": (layer.output, "dense")})
        modules = {k: getattr(owner, attr) for k, (owner, attr) in names.items()}
        parts.append(LayerParts(attn, head_size=attn.attention_head_size, heads_prunable=prunable, names=names,
                                **modules))
    return parts


def _swap(part: LayerParts, key: str, module: nn.Linear) -> None:
    owner, attr = part.names[key]
    setattr(owner, attr, module)
    setattr(part, key, module)


def _set_heads(part: LayerParts, heads: int) -> None:
    part.attention.num_attention_heads = heads
    part.attention.all_head_size = heads * part.head_size


def structure(model) -> list[dict] | None:
    """Per-layer shapes when they differ from the config (what a bundle must record to rebuild the model)."""
    try:
        parts = layer_parts(model)
    except LabError:
        return None
    shapes = [{"heads": p.q.out_features // p.head_size, "intermediate": p.ffn_in.out_features} for p in parts]
    full = {"heads": model.config.num_attention_heads, "intermediate": model.config.intermediate_size}
    return shapes if any(s != full for s in shapes) else None


def apply_structure(model, shapes: list[dict]) -> None:
    """Resize a freshly built model's layers to recorded shapes (weights are loaded afterwards)."""
    parts = layer_parts(model)
    if len(parts) != len(shapes):
        raise LabError(f"bundle records {len(shapes)} layers but its config builds {len(parts)}")
    hidden = model.config.hidden_size
    for part, shape in zip(parts, shapes):
        width = shape["heads"] * part.head_size
        for key in ("q", "k", "v"):
            _swap(part, key, nn.Linear(hidden, width))
        _swap(part, "o", nn.Linear(width, hidden))
        _set_heads(part, shape["heads"])
        _swap(part, "ffn_in", nn.Linear(hidden, shape["intermediate"]))
        _swap(part, "ffn_out", nn.Linear(shape["intermediate"], hidden))
