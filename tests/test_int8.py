"""Accuracy-aware dynamic int8: the lab's int8 Linear with 8-bit activations, per-layer fp32 fallback tuned on
validation accuracy, what the bundle records, how it reloads (also on a CPU without VNNI), and its trace."""

import copy
import json
import warnings
from pathlib import Path

import pytest
import torch

from compression.bundle.folder import load_bundle, save_bundle
from compression.bundle.meta import update_meta
from compression.bundle.qlinear import LabDynamicLinear, default_bits, linear_names, quantize_linears, tune_fp32_layers
from compression.bundle.runtime import trace
from compression.bundle.verify import verify_bundle
from compression.core.config import QuantizeConfig
from compression.core.errors import LabError
from compression.core.typed import from_dict
from compression.data.sources import load_tokenizer_and_model

from .conftest import make_tiny_backbone, run_cli, synthetic_rows

TEXTS = [t for t, _ in synthetic_rows(120, seed=5)]
OUTLIER_LAYER = "bert.encoder.layer.1.output.dense"
NO_VNNI = {"avx2": True, "avx512f": True, "avx512_vnni": False, "avx_vnni": False, "avx512_bf16": False,
           "amx_bf16": False, "amx_int8": False, "amx_tile": False}
WITH_VNNI = {**NO_VNNI, "avx512_vnni": True}


@pytest.fixture(scope="module")
def outlier_model(tmp_path_factory):
    """A tiny random BERT classifier whose last FFN-output Linear sees three input channels about 300x wider than
    the rest (as MPNet's do): the preceding Linear's rows are scaled up 300x and the FFN output's columns down as
    much, so the model computes much the same, but one 7-bit activation step is now coarse for every other channel.
    Weights are drawn wider than BERT's init (std 0.2), so that every sublayer, not only the residual path,
    shapes the logits."""
    folder = make_tiny_backbone(tmp_path_factory.mktemp("outlier") / "backbone", hidden=32, layers=2, heads=2,
                                seed=3)
    tokenizer, model = load_tokenizer_and_model(str(folder), ["0", "1"])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0, 0.2, generator=generator)
        layer = model.bert.encoder.layer[1]
        for channel in (3, 17, 40):
            layer.intermediate.dense.weight[channel].mul_(300)
            layer.intermediate.dense.bias[channel].mul_(300)
            layer.output.dense.weight[:, channel].div_(300)
    return tokenizer, model.eval()


def _logits(model, tokenizer, texts=TEXTS):
    enc = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.inference_mode():
        return model(**enc).logits.float()


def _int8_bits(model) -> dict[str, int]:
    return {name: m.activation_bits for name, m in model.named_modules() if isinstance(m, LabDynamicLinear)}


def _save(model, tokenizer, folder, weights_meta=None, **kw):
    folder = save_bundle(model, tokenizer, folder, name=folder.name, kind="quantized", labels=["0", "1"],
                         max_length=32, technique="dynamic-int8", **kw)
    if weights_meta:
        update_meta(folder, weights=weights_meta)  # what stages.quantize does with Built.weights_meta
    return folder


def test_8bit_activations_are_closer_to_fp32_than_torch_7bit_on_outlier_channels(outlier_model):
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    tokenizer, model = outlier_model
    inputs = layer_input(model, tokenizer)
    assert inputs.abs().amax(dim=(0, 1))[[3, 17, 40]].min() > 50 * inputs.abs().amax(dim=(0, 1)).median()
    fp32 = _logits(model, tokenizer)
    with warnings.catch_warnings():  # torch.ao's deprecation notices
        warnings.simplefilter("ignore")
        torch7 = quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear: per_channel_dynamic_qconfig},
                                  dtype=torch.qint8)
    lab7, lab8 = quantize_linears(model, 7), quantize_linears(model, 8)
    assert set(_int8_bits(lab8).values()) == {8} and len(_int8_bits(lab8)) == len(linear_names(model))
    err = {name: float((_logits(m, tokenizer) - fp32).abs().mean()) for name, m in
           (("torch7", torch7), ("lab7", lab7), ("lab8", lab8))}
    assert torch.equal(_logits(lab7, tokenizer), _logits(torch7, tokenizer))  # 7 bits: exactly torch's module
    assert err["lab8"] < 0.7 * err["torch7"], err  # one more bit: about half the activation rounding error
    assert model.bert.encoder.layer[1].output.dense.__class__ is torch.nn.Linear  # the source is left fp32


def layer_input(model, tokenizer):
    seen = []
    handle = model.get_submodule(OUTLIER_LAYER).register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    try:
        _logits(model, tokenizer)
    finally:
        handle.remove()
    return seen[0]


def test_quantize_linears_keeps_named_layers_fp32_and_refuses_unknown_names(outlier_model):
    tokenizer, model = outlier_model
    q = quantize_linears(model, 8, keep_fp32=[OUTLIER_LAYER, "classifier"])
    assert type(q.get_submodule(OUTLIER_LAYER)) is torch.nn.Linear and type(q.classifier) is torch.nn.Linear
    assert len(_int8_bits(q)) == len(linear_names(model)) - 2
    with pytest.raises(ValueError, match="not Linear layers"):
        quantize_linears(model, 8, keep_fp32=["bert.nowhere"])


def test_torchscript_runtime_follows_the_lab_module(outlier_model):
    tokenizer, model = outlier_model
    lab8, lab7 = quantize_linears(model, 8), quantize_linears(model, 7)
    run, runtime = trace(lab8, tokenizer, 32)
    assert run is not None and runtime.startswith("torchscript"), runtime
    for batch in (TEXTS[:1], TEXTS[:7], TEXTS):
        enc = tokenizer(batch, padding=True, truncation=True, max_length=32, return_tensors="pt")
        with torch.inference_mode():
            eager8, eager7, traced = lab8(**enc).logits, lab7(**enc).logits, run(enc)
        assert torch.allclose(traced, eager8, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(traced, eager7, atol=1e-4)  # the trace kept 8 bits, not torch's constant 7


def test_tuning_puts_the_most_harmful_layer_back_to_fp32_first(outlier_model):
    tokenizer, model = outlier_model
    labels = _logits(model, tokenizer).argmax(-1).tolist()  # fp32 is right on every text: any flip is a drop
    tuned, kept, report = tune_fp32_layers(model, copy.deepcopy(model), tokenizer, TEXTS, labels, 32,
                                           activation_bits=7, tolerance=0.0, max_fp32_layers=2)
    assert report["fp32_accuracy"] == 1.0 and report["int8_accuracy"] < 1.0, report  # 7 bits flips some
    assert report["ranking"][0]["layer"] == OUTLIER_LAYER
    assert 1 <= len(kept) <= 2 and kept[0] == OUTLIER_LAYER
    assert [s["layer"] for s in report["steps"]][:len(kept)] == kept
    assert report["accuracy"] > report["int8_accuracy"] and report["drop"] == pytest.approx(1.0 - report["accuracy"])
    assert {n for n, m in tuned.named_modules() if type(m) is torch.nn.Linear} == set(kept)
    from compression.bundle.qlinear import _batches
    from compression.bundle.qlinear import _logits as batch_logits

    order = sorted(range(len(TEXTS)), key=lambda i: len(TEXTS[i]))  # as measured: activation scales are per batch
    preds = batch_logits(tuned, _batches(tokenizer, [TEXTS[i] for i in order], 32)).argmax(-1)
    got = int((preds == torch.tensor(labels)[order]).sum()) / len(TEXTS)
    assert got == pytest.approx(report["accuracy"])  # the returned model is the one measured
    assert type(model.get_submodule(OUTLIER_LAYER)) is torch.nn.Linear and not _int8_bits(model)  # source intact


def test_tuning_within_tolerance_keeps_every_layer_int8(outlier_model):
    tokenizer, model = outlier_model
    labels = _logits(model, tokenizer).argmax(-1).tolist()
    _, kept, report = tune_fp32_layers(model, copy.deepcopy(model), tokenizer, TEXTS, labels, 32,
                                       activation_bits=7, tolerance=0.5, max_fp32_layers=3)
    assert kept == [] and report["steps"] == [] and report["within_tolerance"]


def test_bundle_reloads_in_a_fresh_process_with_recorded_bits_and_fp32_layers(outlier_model, tmp_path):
    tokenizer, model = outlier_model
    bits, keep = default_bits(), [OUTLIER_LAYER, "classifier"]
    folder = _save(quantize_linears(model, bits, keep), tokenizer, tmp_path / "kept",
                   weights_meta={"activation_bits": bits, "fp32_layers": keep})
    assert verify_bundle(folder)["ok"]
    reloaded = load_bundle(folder)
    assert set(_int8_bits(reloaded.model).values()) == {bits}
    assert {n for n, m in reloaded.model.named_modules() if type(m) is torch.nn.Linear} == set(keep)
    assert reloaded.model.load_warnings == ()
    if bits == 8:  # the recorded bits are what restore uses: recording 7 for an 8-bit model breaks the reload
        update_meta(folder, weights={"activation_bits": 7})
        with pytest.raises(LabError, match="does not reproduce"):
            verify_bundle(folder)


def test_bundles_without_the_new_keys_restore_as_before(tiny_teacher, tmp_path):
    from compression.techniques.quantization import dynamic_int8

    source = load_bundle(tiny_teacher)
    folder = _save(dynamic_int8(source.model), source.tokenizer, tmp_path / "legacy")
    meta = json.loads((folder / "bundle.json").read_text())
    assert "activation_bits" not in meta["weights"]
    reloaded = load_bundle(folder)
    assert set(_int8_bits(reloaded.model).values()) == {7}  # torch's reduce_range, what they were made with


def test_8bit_bundle_on_a_cpu_without_vnni_runs_with_7_bits_and_says_so(outlier_model, tmp_path, monkeypatch):
    import compression.core.hardware as hardware
    from compression.techniques.dynamic_int8 import FALLBACK_WARNING

    tokenizer, model = outlier_model
    folder = _save(quantize_linears(model, 8), tokenizer, tmp_path / "eight",
                   weights_meta={"activation_bits": 8, "fp32_layers": []})
    monkeypatch.setattr(hardware, "cpu_info", lambda: {"model": "old", "logical_cores": 2, "usable_cores": 2,
                                                       "flags": dict(NO_VNNI)})
    with pytest.warns(RuntimeWarning, match="no VNNI/AMX"):
        bundle = load_bundle(folder)
    assert set(_int8_bits(bundle.model).values()) == {7}
    assert bundle.model.load_warnings == (FALLBACK_WARNING,)
    if FALLBACK_WARNING in bundle.meta.get("warnings", []):  # once load_bundle folds load_warnings into meta
        assert bundle.meta["warnings"].count(FALLBACK_WARNING) == 1


def test_activation_bits_resolve_from_the_cpu_flags():
    from compression.techniques.dynamic_int8 import activation_bits

    assert activation_bits("auto", WITH_VNNI) == (8, [])
    assert activation_bits("auto", {**NO_VNNI, "amx_int8": True}) == (8, [])
    assert activation_bits("auto", NO_VNNI) == (7, [])
    assert activation_bits(7, WITH_VNNI) == (7, [])
    bits, why = activation_bits(8, NO_VNNI)
    assert bits == 7 and "VNNI" in why[0]
    assert default_bits(WITH_VNNI) == 8 and default_bits(NO_VNNI) == 7


def test_apply_records_bits_and_layers_in_built(outlier_model, monkeypatch, tmp_path):
    import compression.core.hardware as hardware
    from compression.core.registry import Validation
    from compression.techniques.dynamic_int8 import apply

    tokenizer, model = outlier_model
    monkeypatch.setattr(hardware, "cpu_info", lambda: {"model": "old", "logical_cores": 2, "usable_cores": 2,
                                                       "flags": dict(NO_VNNI)})
    built = apply(model, tokenizer, QuantizeConfig(name="q", source="teacher"), tmp_path)
    assert built.weights_meta["activation_bits"] == 7 and built.weights_meta["fp32_layers"] == []
    assert built.weights_meta["int8_tuning"] is None and built.int8_embeddings
    labels = _logits(model, tokenizer).argmax(-1).tolist()
    cfg = QuantizeConfig(name="q", source="teacher",
                         options={"activation_bits": 7, "int8_tolerance": 0.0, "max_fp32_layers": 2})
    with pytest.raises(ValueError, match="validation"):
        apply(model, tokenizer, cfg, tmp_path)
    built = apply(model, tokenizer, cfg, tmp_path, validation=Validation(tuple(TEXTS), tuple(labels), 32))
    meta = built.weights_meta
    assert len(meta["fp32_layers"]) <= 2 and meta["int8_layers"] + len(meta["fp32_layers"]) == meta["linear_layers"]
    assert meta["int8_tuning"]["fp32_accuracy"] == 1.0
    if meta["fp32_layers"]:
        assert any("kept fp32" in w for w in built.warnings)


def test_config_checks_the_new_fields():
    base = {"name": "q", "source": "teacher"}
    assert QuantizeConfig(**base).options.activation_bits == "auto"
    with pytest.raises(ValueError, match=r"activation_bits: invalid value 6 \(allowed: 'auto' \| 8 \| 7\)"):
        QuantizeConfig(**base, options={"activation_bits": 6})
    for key, value, allowed in (("activation_bits", 6, "'auto' | 8 | 7"), ("activation_bits", "8", "'auto' | 8 | 7"),
                                ("int8_tolerance", -0.1, "[0, 1)"), ("int8_tolerance", 1.5, "[0, 1)"),
                                ("max_fp32_layers", -1, ">= 0")):
        with pytest.raises(ValueError, match=key) as err:
            from_dict(QuantizeConfig, {**base, key: value}, "quantize[0]")
        assert allowed in str(err.value) and str(err.value).startswith(f"quantize[0].{key}: invalid value")
    cfg = from_dict(QuantizeConfig, {**base, "activation_bits": 8, "int8_tolerance": 0, "max_fp32_layers": 0})
    opts = cfg.options
    assert (opts.activation_bits, opts.int8_tolerance, opts.max_fp32_layers) == (8, 0.0, 0)
    assert cfg.to_dict() == {**base, "method": "dynamic-int8", "int8_embeddings": True, "activation_bits": 8,
                             "int8_tolerance": 0.0, "max_fp32_layers": 0}  # written back as a recipe writes it
    with pytest.raises(ValueError, match=r"quantize\[0\]: unknown key 'sparsity' \(allowed: name, source, method; "
                                         r"dynamic-int8's own: int8_embeddings, activation_bits"):
        from_dict(QuantizeConfig, {**base, "sparsity": 0.5}, "quantize[0]")
    with pytest.raises(ValueError, match="unknown key 'activation_bits' .*bf16 has no options of its own"):
        from_dict(QuantizeConfig, {**base, "method": "bf16", "activation_bits": 8}, "quantize[0]")


def test_recipe_with_a_tolerance_keeps_at_most_two_layers_fp32_and_records_them(tiny_data, tiny_model, tmp_path):
    recipe = tmp_path / "tuned.yaml"
    recipe.write_text(
        f"name: tuned\ndata: {{source: {tiny_data}}}\n"
        f"teacher: {{model: {tiny_model}, max_length: 32, train: {{epochs: 2, batch_size: 16}}}}\n"
        "quantize:\n  - {name: teacher-int8, source: teacher, method: dynamic-int8, int8_tolerance: 0.0, "
        "max_fp32_layers: 2}\nbench: null\n")
    store = tmp_path / "store"
    result = run_cli("build", str(recipe), "--store", str(store))
    assert result.returncode == 0, result.stderr[-3000:]
    [path] = [p for p in Path(store).rglob("teacher-int8/bundle.json") if not p.parent.name.startswith(".")]
    meta = json.loads(path.read_text())
    weights = meta["weights"]
    assert weights["technique"] == "dynamic-int8" and weights["activation_bits"] == default_bits()
    assert isinstance(weights["fp32_layers"], list) and len(weights["fp32_layers"]) <= 2
    assert weights["int8_layers"] + len(weights["fp32_layers"]) == weights["linear_layers"]
    tuning = weights["int8_tuning"]
    assert tuning["tolerance"] == 0.0 and tuning["max_fp32_layers"] == 2 and tuning["validation_texts"] == 60
    assert meta["step"]["int8_tolerance"] == 0.0 and meta["step"]["activation_bits"] == "auto"
    bundle = load_bundle(path.parent)
    assert {n for n, m in bundle.model.named_modules() if type(m) is torch.nn.Linear} == set(weights["fp32_layers"])
    assert "mcnemar_p_vs_teacher" in meta["metrics"]
