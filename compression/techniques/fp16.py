"""Quantize ``method: fp16``: a float16 copy. CPUs have no fast fp16 matmul kernels, so it runs 3-4x slower than
fp32 there: offered so the slowdown is measured and shown, and flagged as such everywhere (the bundle carries the
warning), never recommended for CPU."""

from compression.core.registry import NO, Built, LabChoice, Technique, register

FP16_CPU_WARNING = "fp16 runs 3-4x slower than fp32 on CPU (no fast fp16 kernels): keep it for GPUs"


def apply(model, tokenizer, cfg, work_dir) -> Built:
    from compression.techniques.quantization import cast

    return Built(cast(model, "float16"), warnings=(FP16_CPU_WARNING,))


def advise(flags: dict) -> tuple[str, str]:
    return NO, "CPUs have no fast fp16 matmul kernels: fp16 runs several times slower than fp32"


TECHNIQUE = register(Technique(
    "fp16", "quantize", "fp16 (slow on CPU)", apply, tolerance=2e-2, advise=advise, quantized=True,
    lab=LabChoice("fp16 (slow on CPU)", lambda base, teacher: {"name": f"{base}-fp16", "source": base,
                                                                "method": "fp16"})))
