"""The lab's dynamic int8 Linear: torch's, with the activation bits a setting instead of a constant.

torch 2.13's ``torch.ao.nn.quantized.dynamic.Linear`` always calls ``quantized::linear_dynamic`` with
``reduce_range=True``: activations are quantized to 7 bits (0..127), because without VNNI fbgemm's u8 x s8 kernel
(VPMADDUBSW) adds pairs of products in saturating 16-bit lanes and 8-bit activations could overflow them. With VNNI
(VPDPBUSD) or AMX the products accumulate in 32 bits, so 8-bit activations are safe — and they matter: MPNet's
FFN-output inputs have channel ranges up to 500x the median, so one 7-bit step is coarse for every other channel;
its int8 lost 14 points of SST-2 accuracy with 7 bits and matched fp32 with 8 (DESIGN, "Traps already found").

:class:`LabDynamicLinear` keeps the weights, packing, codecs and TorchScript behaviour of torch's module (the trace
records one ``quantized::linear_dynamic`` call with the bits fixed) and only passes ``reduce_range`` from its
``activation_bits`` attribute. :func:`quantize_linears` swaps a model's ``nn.Linear`` layers for it, leaving the
layers named in ``keep_fp32`` as they are.
"""

from __future__ import annotations

import time
import warnings
from typing import Iterable

import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as TorchDynamicLinear

from compression.core import hardware  # hardware.cpu_info() looked up per call: tests stand in another CPU
from compression.core.hardware import INT8_FAST_FLAGS, int8_fast
from compression.core.texts import char_length, encode

ACTIVATION_BITS = (8, 7)
LEGACY_BITS = 7  # what torch's own module (and every bundle written before the setting existed) uses


class LabDynamicLinear(TorchDynamicLinear):
    """torch's dynamic int8 Linear (per-channel int8 weights, activations quantized per batch) whose activations
    use ``activation_bits`` (8, or 7 = torch's ``reduce_range``)."""

    def __init__(self, in_features, out_features, bias_=True, dtype=torch.qint8, activation_bits: int = LEGACY_BITS):
        super().__init__(in_features, out_features, bias_, dtype=dtype)
        self.activation_bits = check_bits(activation_bits)

    def forward(self, x):
        if self._packed_params.dtype == torch.qint8:
            y = torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params,
                                                   reduce_range=self.activation_bits == 7)
        elif self._packed_params.dtype == torch.float16:
            y = torch.ops.quantized.linear_dynamic_fp16(x, self._packed_params._packed_params)
        else:
            raise RuntimeError("Unsupported dtype on dynamic quantized linear!")
        return y.to(x.dtype)

    def _get_name(self):
        return "LabDynamicQuantizedLinear"

    def extra_repr(self):
        return f"{super().extra_repr()}, activation_bits={self.activation_bits}"


def check_bits(bits) -> int:
    if bits not in ACTIVATION_BITS or isinstance(bits, bool):
        raise ValueError(f"activation_bits: invalid value {bits!r} (allowed: 8, 7)")
    return int(bits)


def default_bits(flags: dict | None = None) -> int:
    """8 where the CPU has VNNI/AMX, else 7."""
    if flags is None:
        flags = hardware.cpu_info()["flags"]
    return 8 if int8_fast(flags) else 7


def linear_names(model: nn.Module) -> list[str]:
    """The names of the float Linear layers dynamic int8 would quantize, in module order."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def quantize_linears(model: nn.Module, activation_bits: int = LEGACY_BITS, keep_fp32: Iterable[str] = (),
                     inplace: bool = False) -> nn.Module:
    """Dynamic int8 (per-channel weights) of every ``nn.Linear`` of ``model`` but those named in ``keep_fp32``,
    as :class:`LabDynamicLinear` modules with ``activation_bits``. Unknown names in ``keep_fp32`` are an error (a
    bundle that names a layer its model lacks is not the model it was saved from)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    from torch.ao.quantization.quantization_mappings import get_default_dynamic_quant_module_mappings

    bits = check_bits(activation_bits)
    keep = list(dict.fromkeys(keep_fp32))
    linears = set(linear_names(model))
    unknown = [name for name in keep if name not in linears]
    if unknown:
        raise ValueError(f"keep_fp32 names {unknown[:3]}, which are not Linear layers of the model")
    mapping = {k: (LabDynamicLinear if v is TorchDynamicLinear else v)
               for k, v in get_default_dynamic_quant_module_mappings().items()}
    spec = {nn.Linear: per_channel_dynamic_qconfig, **{name: None for name in keep}}
    with warnings.catch_warnings():  # torch.ao marks eager quantization deprecated; it works and is fastest here
        warnings.simplefilter("ignore")
        quantized = quantize_dynamic(model, spec, dtype=torch.qint8, mapping=mapping, inplace=inplace)
    for module in quantized.modules():
        if isinstance(module, LabDynamicLinear):
            module.activation_bits = bits
    return quantized


def set_activation_bits(model: nn.Module, bits: int) -> nn.Module:
    """Set the activation bits of every lab int8 Linear of ``model`` in place."""
    bits = check_bits(bits)
    for module in model.modules():
        if isinstance(module, LabDynamicLinear):
            module.activation_bits = bits
    return model


# ---------------------------------------------------------------- accuracy-aware tuning (which layers stay fp32)

TUNING_TEXTS = 2000  # validation texts the accuracy is measured on (the first ones: the split is already shuffled)
RANKING_TEXTS = 512  # of those, the texts each layer's sensitivity is measured on (one forward pass per layer)
BATCH = 32


def _batches(tokenizer, texts: list, max_length: int) -> list[dict]:
    """Padded batches of ``texts`` (or pairs) in their order (callers sort them by length: less padding)."""

    return [dict(encode(tokenizer, texts[i:i + BATCH], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")) for i in range(0, len(texts), BATCH)]


def _logits(model: nn.Module, batches: list[dict]) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(**b).logits.float() for b in batches]) if batches else torch.zeros(0, 1)


def _kl(reference: torch.Tensor, logits: torch.Tensor) -> float:
    """Mean KL(p_reference || p) over rows: how far a candidate's predictive distribution moved from fp32's."""
    ref = torch.log_softmax(reference, dim=-1)
    return float((ref.exp() * (ref - torch.log_softmax(logits, dim=-1))).sum(-1).mean())


def _swap(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _tuning_batches(tokenizer, texts, labels, max_length: int):
    """(batches of the tuning texts, their labels in batch order, batches of the ranking texts, ranking texts):
    length-sorted, so batches carry little padding."""
    texts, labels = list(texts)[:TUNING_TEXTS], torch.as_tensor(list(labels)[:TUNING_TEXTS])
    if not texts:
        raise ValueError("int8_tolerance needs validation texts to measure the accuracy on; the validation split "
                         "is empty")

    order = sorted(range(len(texts)), key=lambda i: char_length(texts[i]))
    ranking_texts = texts[:RANKING_TEXTS]
    return (_batches(tokenizer, [texts[i] for i in order], max_length), labels[order],
            _batches(tokenizer, sorted(ranking_texts, key=char_length), max_length), ranking_texts)


def _rank(model, names, modules, reference, kl_int8: float, progress) -> list[tuple[float, str]]:
    """Linear layers by how much putting each one alone back to fp32 brings the int8 logits closer to fp32's (KL
    gain), most first; layers that do not help are left out. ``modules``: (fp32, int8) modules by name;
    ``reference``: (fp32 logits, batches) of the ranking texts."""
    (fp32_modules, int8_modules), (ref_few, few) = modules, reference
    gains = []
    for i, name in enumerate(names):
        progress(i, f"int8 sensitivity of {name} ({i + 1}/{len(names)})")
        _swap(model, name, fp32_modules[name])
        gains.append((kl_int8 - _kl(ref_few, _logits(model, few)), -i, name))
        _swap(model, name, int8_modules[name])
    return [(gain, name) for gain, _, name in sorted(gains, reverse=True) if gain > 0]


def tune_fp32_layers(reference: nn.Module, work: nn.Module, tokenizer, texts, labels, max_length: int, *,
                     activation_bits: int, tolerance: float, max_fp32_layers: int,
                     progress=None) -> tuple[nn.Module, list[str], dict]:
    """Accuracy-aware dynamic int8 (Intel Neural Compressor's per-layer fallback, in small).

    Quantize every Linear of ``work`` (an fp32 model the caller may have adjusted, e.g. int8-rounded embeddings) and
    measure validation accuracy against ``reference`` (the fp32 source). While the drop exceeds ``tolerance``:
    rank the Linear layers by how much putting each one alone back to fp32 brings the int8 logits closer to fp32's
    (mean KL on the first ``RANKING_TEXTS`` texts), then restore them in that order, one at a time, re-measuring
    accuracy, until the drop is within ``tolerance`` or ``max_fp32_layers`` are restored. If the tolerance is never
    met, the prefix of that order with the best accuracy is kept (fewest layers on ties): a layer that does not help
    is not worth its fp32 speed.

    Returns ``(model, fp32 layer names, report)``; ``work``'s fp32 layers become the returned model's.
    """
    started = time.perf_counter()
    report_progress = progress or (lambda fraction, message: None)
    full, labels, few, ranking_texts = _tuning_batches(tokenizer, texts, labels, max_length)

    ref_full, ref_few = _logits(reference.eval(), full), _logits(reference, few)
    fp32_accuracy = int((ref_full.argmax(-1) == labels).sum()) / len(labels)
    names = linear_names(work)
    fp32_modules = {name: work.get_submodule(name) for name in names}
    model = quantize_linears(work, activation_bits)  # a copy: work keeps its fp32 Linear modules
    int8_modules = {name: model.get_submodule(name) for name in names}

    def accuracy() -> float:
        return int((_logits(model, full).argmax(-1) == labels).sum()) / len(labels)

    int8_accuracy = accuracy()
    report = {"tolerance": tolerance, "max_fp32_layers": max_fp32_layers, "validation_texts": len(labels),
              "ranking_texts": len(ranking_texts), "fp32_accuracy": fp32_accuracy, "int8_accuracy": int8_accuracy,
              "kl_int8": _kl(ref_few, _logits(model, few)), "ranking": [], "steps": []}
    kept: list[str] = []
    final = int8_accuracy
    if fp32_accuracy - int8_accuracy > tolerance and max_fp32_layers > 0:
        total = len(names) + max_fp32_layers
        ranked = _rank(model, names, (fp32_modules, int8_modules), (ref_few, few), report["kl_int8"],
                       lambda i, m: report_progress(i / total, m))
        report["ranking"] = [{"layer": name, "kl_gain": gain} for gain, name in ranked[:10]]
        best = (int8_accuracy, 0)
        for step, (_, name) in enumerate(ranked[:max_fp32_layers], start=1):
            report_progress((len(names) + step) / total, f"int8 tuning: {name} back to fp32 ({step}/{max_fp32_layers})")
            _swap(model, name, fp32_modules[name])
            kept.append(name)
            acc = accuracy()
            report["steps"].append({"layer": name, "accuracy": acc})
            best = (acc, step) if acc > best[0] or fp32_accuracy - acc <= tolerance else best
            if fp32_accuracy - acc <= tolerance:
                break
        for name in kept[best[1]:]:  # restored layers past the best prefix did not pay for their fp32 speed
            _swap(model, name, int8_modules[name])
        kept, final = kept[:best[1]], best[0]
    report.update(accuracy=final, drop=fp32_accuracy - final, within_tolerance=fp32_accuracy - final <= tolerance,
                  seconds=round(time.perf_counter() - started, 2))
    report_progress(1.0, f"int8 tuning: {len(kept)} Linear layer(s) kept fp32; validation accuracy "
                         f"{final:.4f} (fp32 {fp32_accuracy:.4f})")
    return model.eval(), kept, report


__all__ = ["LabDynamicLinear", "ACTIVATION_BITS", "LEGACY_BITS", "INT8_FAST_FLAGS", "check_bits", "int8_fast",
           "default_bits", "linear_names", "quantize_linears", "set_activation_bits", "tune_fp32_layers"]
