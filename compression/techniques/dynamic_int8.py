"""Quantize ``method: dynamic-int8``: torch dynamic int8 of every Linear (per-channel weights, activations quantized
per batch), optionally with int8 word embeddings (``int8_embeddings``; torch keeps them fp32, which would leave most
of a small model's bytes untouched). The fastest CPU path measured here. The bundle stores int8 weights with their
scales; the loader rebuilds the quantized modules and loads them."""

from . import MAYBE, PAYS, Built, LabChoice, Technique, register


def apply(model, tokenizer, cfg, work_dir) -> Built:
    from ..quantize import dynamic_int8

    return Built(dynamic_int8(model, int8_embeddings=cfg.int8_embeddings), int8_embeddings=cfg.int8_embeddings)


def restore(folder, weights: dict, skeleton):
    from ..bundle import decode_weights
    from ..weights import quantize_dynamic_int8

    return decode_weights(quantize_dynamic_int8(skeleton(), inplace=True), folder).eval()  # fp32 never needed


def advise(flags: dict) -> tuple[str, str]:
    if flags.get("avx512_vnni") or flags.get("avx_vnni") or flags.get("amx_int8"):
        return PAYS, "VNNI/AMX int8 instructions present"
    return MAYBE, "no VNNI/AMX: int8 matmuls run without their fast path"


TECHNIQUE = register(Technique(
    "dynamic-int8", "quantize", "int8 (torch dynamic)", apply, restore=restore, tolerance=1e-3, advise=advise,
    quantized=True, lab=LabChoice("dynamic int8", lambda base, teacher: {
        "name": f"{base}-int8", "source": base, "method": "dynamic-int8"})))
