"""Quantize ``method: onnx-int8``: the fp32 ONNX export, then ONNX Runtime's dynamic int8 (which quantizes the
embeddings too): the yardstick the lab's torch int8 is measured against."""

from compression.core.hardware import int8_fast
from compression.core.registry import MAYBE, PAYS, Built, LabChoice, Technique, register
from compression.techniques.onnx_fp32 import restore


def apply(model, tokenizer, cfg, work_dir) -> Built:
    from compression.techniques.quantization import export_onnx, onnx_int8

    work_dir.mkdir(parents=True, exist_ok=True)
    fp32 = export_onnx(model, tokenizer, work_dir / "model.fp32.onnx")
    return Built(model, onnx_file=onnx_int8(fp32, work_dir / "model.int8.onnx"))


def advise(flags: dict) -> tuple[str, str]:
    if int8_fast(flags):
        return PAYS, "VNNI/AMX int8 instructions present"
    return MAYBE, "no VNNI/AMX: int8 matmuls run without their fast path"


TECHNIQUE = register(Technique(
    "onnx-int8", "quantize", "int8 (ONNX Runtime)", apply, restore=restore, tolerance=1e-3, advise=advise,
    quantized=True, lab=LabChoice("ONNX Runtime int8", lambda base, teacher: {
        "name": f"{base}-onnx-int8", "source": base, "method": "onnx-int8"})))
