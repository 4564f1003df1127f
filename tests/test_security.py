"""Secure by default: no remote code, safetensors only, no server path from a visitor, sessions kept apart."""

import json
import re
from pathlib import Path

import pytest

from compression.data.sources import load_tokenizer_and_model

from .conftest import ROOT


def test_trust_remote_code_is_never_enabled():
    for path in (ROOT / "compression").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"trust_remote_code\s*=\s*True", text), path
        # every from_pretrained that could take a model folder says False explicitly
        for call in re.findall(r"Auto\w+\.from_pretrained\([^)]*\)", text, re.S):
            assert "trust_remote_code=False" in call or "from_config" in call, (path, call)


def test_custom_code_in_a_model_folder_is_not_run(tiny_model, tmp_path):
    import shutil

    folder = tmp_path / "remote-code"
    shutil.copytree(tiny_model, folder)
    marker = tmp_path / "EXECUTED"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n"
                                    "from transformers import BertForSequenceClassification as Evil\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "evil.Evil"}
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer, model = load_tokenizer_and_model(str(folder), ["a", "b"])
    assert not marker.exists()  # the folder's own code never ran ...
    assert type(model).__module__.startswith("transformers.models.bert")  # ... transformers' own class loaded
    assert type(model).__name__ == "BertForSequenceClassification" and model.config.num_labels == 2


def test_sessions_get_separate_private_folders(served_app):
    """Two visitors' batch downloads land in different private folders, both under the temp folder Gradio serves
    files from; neither folder holds the other visitor's file."""
    import os
    import stat
    import tempfile

    from gradio_client import Client

    url, _ = served_app
    work = Path(os.environ.get("GRADIO_TEMP_DIR", tempfile.gettempdir())).resolve()
    sessions = work / "compression-lab-sessions"
    before = set(sessions.glob("s-*"))
    clients, downloaded = [], {}
    for who in ("alice", "bob"):
        clients.append(Client(url, verbose=False))  # kept alive: a session's folder goes when its session ends
        _, _, download = clients[-1].predict(f"{who} liked it\n{who} hated it", None, api_name="/batch")
        downloaded[who] = Path(download).read_text()
    created = sorted(set(sessions.glob("s-*")) - before)
    assert len(created) == 2, created  # one new folder per session
    files = {}
    for folder in created:
        text = (folder / "batch-predictions.csv").read_text()
        files["alice" if "alice" in text else "bob"] = (folder / "batch-predictions.csv").resolve()
    assert set(files) == {"alice", "bob"}
    for who, other in (("alice", "bob"), ("bob", "alice")):
        folder = files[who].parent
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, oct(folder.stat().st_mode)  # owner only
        assert folder.is_relative_to(work)
        assert not files[who].is_relative_to(files[other].parent)  # not inside the other session's folder
        assert files[who].read_text() == downloaded[who]  # what the visitor downloaded is that file
        assert who in downloaded[who] and other not in downloaded[who]  # each holds only its own texts
    assert files["alice"].parent != files["bob"].parent


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "x\x00y", ""])
def test_variant_names_cannot_be_paths(name):
    from compression.core.config import check_name

    with pytest.raises(ValueError):
        check_name(name, "students[0].name")
