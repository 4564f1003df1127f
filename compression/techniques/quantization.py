"""Quantization mechanisms: dynamic int8 (torch), dtype casts, ONNX export, ONNX Runtime int8 and its runner.

Which method uses which, and what each bundle records, lives in ``compression/techniques/`` (one file per method).
Measured on CPUs like these (see DESIGN/README): dynamic int8 of Linear layers is the fastest path; bf16 pays only
with AVX512-BF16/AMX; fp16 is several times slower than fp32 on CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from compression.bundle.weights import quantize_dynamic_int8, round_embeddings_int8
from compression.core.errors import LabError

ONNX_OPSET = 18


def dynamic_int8(model, int8_embeddings: bool = False):
    """A dynamic-int8 copy of a torch model (every Linear, per-channel weights). ``int8_embeddings``: snap word
    embeddings to int8 too, so the model in memory predicts what its int8-embedding bundle will after reload."""
    quantized = quantize_dynamic_int8(model.float())
    if int8_embeddings:
        round_embeddings_int8(quantized)
    return quantized


def cast(model, dtype: str):
    """A copy of a torch model in ``dtype`` (``bfloat16`` or ``float16``)."""
    import copy

    return copy.deepcopy(model).to(getattr(torch, dtype))


def export_onnx(model, tokenizer, path: str | Path) -> Path:
    """Export a (fp32, not quantized) classifier to ONNX with dynamic batch and sequence axes."""
    from compression.bundle.weights import quantized_linears

    if quantized_linears(model):
        raise LabError("export the fp32 model to ONNX, not a torch int8 one; use method onnx-int8 for ONNX int8")
    path = Path(path)
    # A pair sample: segment ids of a second text are in the graph for pair tasks (and harmless for single texts).
    sample = tokenizer(["a short probe text", "and another, a little longer than the first"],
                       ["with a second text", "as pair tasks have"], padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
    model = model.float().eval()

    class Logits(torch.nn.Module):  # a plain tensor output keeps the graph simple for every runtime
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits

    batch, seq = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("sequence", min=2, max=4096)
    dynamic = {n: {0: batch, 1: seq} for n in names}
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(Logits(model), tuple(sample[n] for n in names), dynamic_shapes=dynamic,
                                    input_names=names, output_names=["logits"], opset_version=ONNX_OPSET,
                                    dynamo=True, external_data=False)
    program.save(str(path))
    return path


def onnx_int8(source: str | Path, target: str | Path) -> Path:
    """ONNX Runtime dynamic int8 (weights int8, activations quantized per batch), the peer to torch's int8."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    return Path(target)


class OnnxClassifier:
    """Runs an ONNX classifier with ONNX Runtime on CPU; ``__call__`` takes numpy token arrays, returns logits."""

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # Idle ORT threads spin by default: they would steal the CPU from whatever runs next (interleaved benches).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, encoding: dict) -> np.ndarray:
        feed = {n: np.asarray(encoding[n], dtype=np.int64) for n in self.input_names}
        return self.session.run(["logits"], feed)[0].astype(np.float32)

