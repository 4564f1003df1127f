"""Quantize ``method: bf16``: a bfloat16 copy. It pays on CPUs with AVX512-BF16 or AMX, where bf16 matmuls run
natively; elsewhere bf16 is emulated and slow. Reduced precision rounds differently per process, hence the looser
reload tolerance."""

from compression.core.registry import NO, PAYS, Built, LabChoice, Technique, register


def apply(model, tokenizer, cfg, work_dir) -> Built:
    from compression.techniques.quantization import cast

    return Built(cast(model, "bfloat16"))


def advise(flags: dict) -> tuple[str, str]:
    if flags.get("avx512_bf16") or flags.get("amx_bf16"):
        return PAYS, "AVX512-BF16/AMX present: bf16 matmuls run natively"
    return NO, "no AVX512-BF16/AMX: bf16 is emulated and slow"


TECHNIQUE = register(Technique(
    "bf16", "quantize", "bf16", apply, tolerance=2e-2, advise=advise, quantized=True,
    lab=LabChoice("bf16", lambda base, teacher: {"name": f"{base}-bf16", "source": base, "method": "bf16"})))
