"""A technique from outside the package, as an operator would write it: int4 weight-only quantization of the
encoder's Linear layers, with an option of its own (``group_size``), its own weights file, parameter count and
runtime choice. One file, one ``register(...)``; nothing in the lab is edited for it (tests/test_registry.py).
The module is named in ``COMPRESSION_LAB_TECHNIQUES``; the test suite copies it next to nothing else."""

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from compression.techniques import Built, Technique, register

FILE = "int4.safetensors"


@dataclass
class Int4Options:
    group_size: int = field(default=32, metadata={"help": "weights that share one scale (a power of two)"})

    def __post_init__(self):
        if isinstance(self.group_size, bool) or self.group_size < 2 or self.group_size & (self.group_size - 1):
            raise ValueError(f"group_size: invalid value {self.group_size!r} (allowed: a power of two >= 2)")


class Int4Linear(nn.Module):
    """y = x W^T + b with W stored as 4-bit integers (two per byte) and one fp32 scale per group of inputs."""

    def __init__(self, out_features: int, in_features: int, group: int, bias: bool):
        super().__init__()
        self.group = group
        self.register_buffer("packed", torch.zeros(out_features, in_features // 2, dtype=torch.uint8))
        self.register_buffer("scales", torch.zeros(out_features, in_features // group))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @classmethod
    def of(cls, linear: nn.Linear, group: int) -> "Int4Linear":
        w = linear.weight.detach().float()
        grouped = w.reshape(w.shape[0], -1, group)
        scales = grouped.abs().amax(-1).clamp_min(1e-8) / 7
        q = (torch.round(grouped / scales[..., None]).clamp(-8, 7) + 8).to(torch.uint8).reshape(w.shape)
        module = cls(w.shape[0], w.shape[1], group, linear.bias is not None)
        module.packed.copy_(q[:, 0::2] | (q[:, 1::2] << 4))
        module.scales.copy_(scales)
        if linear.bias is not None:
            module.bias.data.copy_(linear.bias.detach())
        return module

    def weight(self) -> torch.Tensor:
        pairs = torch.stack((self.packed & 15, self.packed >> 4), -1).reshape(self.packed.shape[0], -1)
        q = pairs.float() - 8
        return (q.reshape(q.shape[0], -1, self.group) * self.scales[..., None]).reshape(q.shape)

    def forward(self, x):
        return nn.functional.linear(x, self.weight(), self.bias)


def _targets(model, group: int) -> list[str]:
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and ".encoder." in f".{name}." and m.in_features % group == 0]


def _swap(model, names: list[str], make) -> None:
    for name in names:
        parent, _, leaf = name.rpartition(".")
        owner = model.get_submodule(parent)
        setattr(owner, leaf, make(getattr(owner, leaf)))


def apply(model, tokenizer, cfg, work_dir) -> Built:
    group = cfg.options.group_size
    quantized = copy.deepcopy(model).float().eval()
    names = _targets(quantized, group)
    _swap(quantized, names, lambda linear: Int4Linear.of(linear, group))
    return Built(quantized, weights_meta={"group_size": group, "int4_layers": names})


def save(model, folder: Path) -> dict:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / FILE))
    return {"file": FILE}


def restore(folder, weights: dict, skeleton):
    model = skeleton()
    group = weights["group_size"]
    _swap(model, weights["int4_layers"],
          lambda linear: Int4Linear(linear.out_features, linear.in_features, group, linear.bias is not None))
    model.load_state_dict(load_file(str(Path(folder) / weights["file"])), strict=True)
    return model.eval()


def count(model) -> tuple[int, int]:
    """Parameters, with each packed byte counted as the two weights it holds."""
    total = nonzero = 0
    for module in model.modules():
        tensors = list(module.parameters(recurse=False))
        if isinstance(module, Int4Linear):
            tensors.append(module.weight())
        for t in tensors:
            total += t.numel()
            nonzero += int((t != 0).sum())
    return total, nonzero


register(Technique("int4-weight", "quantize", "int4 weight-only (plugin)", apply, options=Int4Options, save=save,
                   restore=restore, count=count, traceable=False, tolerance=1e-4, quantized=True))
