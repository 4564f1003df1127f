"""Encode model weights into plain tensors for a safetensors file, and back.

Codecs (recorded per tensor in the file's metadata, so a loader needs no outside knowledge):
- ``qint8``: a dynamically quantized Linear's weight as int8 + per-channel scales and zero points, plus its bias;
- ``rowint8``: an embedding matrix as int8 with one fp32 scale per row (dequantized to fp32 when loaded);
- ``bitmask``: any tensor with enough zeros as a packed bitmask + its non-zero values, so pruned weights
  take bytes in proportion to what is left (torch's CSR would be larger for BERT-sized matrices).
"""

from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn

SPARSE_MIN_NUMEL = 256


def quantize_dynamic_int8(model: nn.Module, inplace: bool = False, activation_bits: int = 7,
                          keep_fp32=()) -> nn.Module:
    """Dynamic int8 for every Linear but those named in ``keep_fp32`` (per-channel weights), the fastest CPU path
    measured here, as the lab's :class:`~compression.bundle.qlinear.LabDynamicLinear` with ``activation_bits`` (7: torch's
    own ``reduce_range``, what bundles written before the setting used; 8 needs VNNI/AMX)."""
    from compression.bundle.qlinear import quantize_linears

    return quantize_linears(model, activation_bits, keep_fp32, inplace=inplace)


def _rowint8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row: (int8 values, fp32 scales)."""
    scale = weight.detach().abs().amax(dim=1).clamp_min(1e-12) / 127.0
    return torch.round(weight.detach() / scale[:, None]).clamp(-127, 127).to(torch.int8), scale.float()


def round_embeddings_int8(model: nn.Module) -> None:
    """Snap word embeddings onto their int8 grid in place, so the model in memory predicts exactly what its
    int8-embedding bundle will predict after reload."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) and name.endswith("word_embeddings"):
            q, scale = _rowint8(module.weight)
            with torch.no_grad():
                module.weight.copy_(q.float() * scale[:, None])


def quantized_linears(model: nn.Module) -> dict[str, nn.Module]:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return {name: m for name, m in model.named_modules() if isinstance(m, DynamicLinear)}


def _worth_sparse(t: torch.Tensor) -> bool:
    if t.numel() < SPARSE_MIN_NUMEL or t.dtype == torch.bool:
        return False
    zeros = int((t == 0).sum())
    # a bitmask costs 1 bit per element; dropping a zero saves its element size
    return zeros * t.element_size() * 8 > t.numel() * 1.1


def _put(tensors: dict, spec: dict, key: str, t: torch.Tensor, codec: str, **info) -> None:
    t = t.detach().contiguous().cpu()
    entry = {"codec": codec, **info}
    if _worth_sparse(t):
        flat = t.reshape(-1)
        mask = flat != 0
        tensors[key + ".mask"] = torch.from_numpy(np.packbits(mask.numpy()))
        tensors[key] = flat[mask].clone()
        entry["sparse"] = {"shape": list(t.shape)}
    else:
        tensors[key] = t
    spec[key] = entry


def encode(model: nn.Module, int8_embeddings: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, safetensors metadata) for ``model``; see the module docstring for the codecs."""
    tensors: dict[str, torch.Tensor] = {}
    spec: dict[str, dict] = {}
    qlinears = quantized_linears(model)
    for name, module in qlinears.items():
        weight, bias = module.weight(), module.bias()
        _put(tensors, spec, f"{name}.weight", weight.int_repr(), "qint8", axis=weight.q_per_channel_axis())
        tensors[f"{name}.weight.scales"] = weight.q_per_channel_scales().to(torch.float64)
        tensors[f"{name}.weight.zero_points"] = weight.q_per_channel_zero_points().to(torch.int64)
        if bias is not None:
            _put(tensors, spec, f"{name}.bias", bias, "plain")
    for key, value in model.state_dict().items():
        if not isinstance(value, torch.Tensor) or any(key.startswith(q + ".") for q in qlinears):
            continue
        if int8_embeddings and key.endswith("word_embeddings.weight"):
            q, scale = _rowint8(value)
            _put(tensors, spec, key, q, "rowint8")
            tensors[key + ".scales"] = scale
        else:
            _put(tensors, spec, key, value, "plain")
    return tensors, {"lab_codecs": json.dumps(spec, sort_keys=True)}


def _take(tensors: dict, key: str, entry: dict) -> torch.Tensor:
    t = tensors[key]
    if "sparse" in entry:
        shape = entry["sparse"]["shape"]
        numel = int(np.prod(shape)) if shape else 1
        mask = torch.from_numpy(np.unpackbits(tensors[key + ".mask"].numpy(), count=numel).astype(bool))
        dense = torch.zeros(numel, dtype=t.dtype)
        dense[mask] = t
        t = dense.reshape(shape)
    return t


def decode_into(model: nn.Module, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Load encoded tensors into ``model``, whose skeleton (shapes, quantized modules) must already match."""
    spec = json.loads(metadata["lab_codecs"])
    qlinears = quantized_linears(model)
    state = {}
    for key, entry in spec.items():
        t = _take(tensors, key, entry)
        if entry["codec"] == "qint8":
            name = key[: -len(".weight")]
            weight = torch._make_per_channel_quantized_tensor(
                t.to(torch.int8), tensors[key + ".scales"], tensors[key + ".zero_points"], entry["axis"])
            bias_entry = spec.get(f"{name}.bias")
            bias = _take(tensors, f"{name}.bias", bias_entry) if bias_entry else None
            qlinears[name].set_weight_bias(weight, bias)
        elif entry["codec"] == "rowint8":
            state[key] = t.float() * tensors[key + ".scales"][:, None]
        elif not any(key.startswith(q + ".") for q in qlinears):
            state[key] = t
    # Copy tensor by tensor: load_state_dict would make quantized modules demand their unused output qparams.
    targets = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    expected = {k for k in model.state_dict() if not any(k.startswith(q + ".") for q in qlinears)}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - set(targets))
    if missing or unexpected:
        raise ValueError(f"weights do not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    with torch.no_grad():
        for key, value in state.items():
            if targets[key].shape != value.shape:
                raise ValueError(f"weights do not match the model: {key} is {tuple(value.shape)}, "
                                 f"the model expects {tuple(targets[key].shape)}")
            targets[key].copy_(value)
