"""Quantize ``method: onnx-fp32``: the fp32 model exported with ``torch.onnx.export`` and run by ONNX Runtime: the
peer runtime, to compare against the lab's own."""

from compression.core.registry import Built, Technique, register


def apply(model, tokenizer, cfg, work_dir) -> Built:
    from compression.techniques.quantization import export_onnx

    work_dir.mkdir(parents=True, exist_ok=True)
    return Built(model, onnx_file=export_onnx(model, tokenizer, work_dir / "model.fp32.onnx"))


def restore(folder, weights: dict, skeleton):
    from compression.techniques.quantization import OnnxClassifier

    return OnnxClassifier(folder / "model.onnx")


TECHNIQUE = register(Technique("onnx-fp32", "quantize", "ONNX Runtime fp32", apply, restore=restore, tolerance=1e-3,
                               quantized=True))
