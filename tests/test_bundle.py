import json

import pytest

from compression.bundle.folder import PROBE_TEXTS, load_bundle, save_bundle
from compression.bundle.meta import bundle_bytes, read_meta
from compression.bundle.verify import verify_bundle
from compression.core.errors import LabError
from compression.data.sources import load_tokenizer_and_model


@pytest.fixture
def bundle_dir(tiny_model, tmp_path):
    tokenizer, model = load_tokenizer_and_model(str(tiny_model), ["neg", "pos"])
    return save_bundle(model, tokenizer, tmp_path / "teacher", name="teacher", kind="teacher", labels=["neg", "pos"],
                       max_length=32, step={"stage": "teacher"})


def test_save_writes_a_whole_folder(bundle_dir):
    names = {p.name for p in bundle_dir.iterdir()}
    assert {"config.json", "model.safetensors", "bundle.json", "tokenizer.json"} <= names
    meta = read_meta(bundle_dir)
    assert meta["labels"] == ["neg", "pos"] and meta["step"] == {"stage": "teacher"}
    assert len(meta["probe"]["logits"]) == len(PROBE_TEXTS)
    assert not any(p.name.startswith(".") for p in bundle_dir.parent.iterdir())  # no temp folder left
    assert bundle_bytes(bundle_dir) > (bundle_dir / "model.safetensors").stat().st_size


@pytest.mark.parametrize("fresh", [True, False])
def test_reload_reproduces_probe_in_a_fresh_process_and_in_this_one(bundle_dir, fresh):
    result = verify_bundle(bundle_dir, fresh=fresh)
    assert result["ok"] and result["argmax_equal"] and result["max_abs_diff"] <= 1e-4
    assert result["process"] == ("fresh-process" if fresh else "in-process")


@pytest.mark.parametrize("fresh", [True, False])
def test_tampered_probe_is_caught(bundle_dir, fresh):
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    meta["probe"]["logits"] = [[v + 1.0 for v in row] for row in meta["probe"]["logits"]]
    (bundle_dir / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(LabError, match="does not reproduce its predictions"):
        verify_bundle(bundle_dir, fresh=fresh)


def test_verify_mode_comes_from_the_environment_and_a_typo_is_refused(bundle_dir, monkeypatch):
    monkeypatch.setenv("COMPRESSION_LAB_VERIFY", "fresh-process")
    assert verify_bundle(bundle_dir)["process"] == "fresh-process"
    monkeypatch.setenv("COMPRESSION_LAB_VERIFY", "in-process")
    assert verify_bundle(bundle_dir)["process"] == "in-process"
    monkeypatch.setenv("COMPRESSION_LAB_VERIFY", "inprocess")
    with pytest.raises(LabError, match="COMPRESSION_LAB_VERIFY='inprocess' is not one of fresh-process, in-process"):
        verify_bundle(bundle_dir)


def test_predict_returns_named_labels(bundle_dir):
    preds = load_bundle(bundle_dir).predict(["a good film", "a bad film"])
    assert [p.label in ("neg", "pos") for p in preds] == [True, True]
    assert all(abs(sum(p.probabilities.values()) - 1) < 1e-5 for p in preds)


def test_pickle_weights_refused(bundle_dir):
    (bundle_dir / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(LabError, match="pickle-based weights"):
        load_bundle(bundle_dir)


def test_broken_bundles_are_reported(bundle_dir, tmp_path):
    (bundle_dir / "model.safetensors").unlink()
    with pytest.raises(LabError, match="model.safetensors is missing"):
        load_bundle(bundle_dir)
    with pytest.raises(LabError, match="is not a bundle"):
        read_meta(tmp_path)
    (bundle_dir / "bundle.json").write_text("{not json")
    with pytest.raises(LabError, match="not valid JSON"):
        read_meta(bundle_dir)
