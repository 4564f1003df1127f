"""Secure by default: no remote code, safetensors only, no server path from a visitor, sessions kept apart."""

import json
import re
from pathlib import Path

import pytest

from compression.errors import LabError
from compression.sources import load_tokenizer_and_model

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
    try:
        load_tokenizer_and_model(str(folder), ["a", "b"])
    except (LabError, ValueError, OSError):
        pass  # refusing is fine too; running the file is not
    assert not marker.exists()


def test_sessions_get_separate_private_folders(served_app, tmp_path):
    """Two visitors' batch downloads land in different private folders, both under Gradio's temp folder."""
    from gradio_client import Client

    url, folder = served_app
    paths = []
    for who in ("alice", "bob"):
        client = Client(url, verbose=False)
        table, summary, download = client.predict(f"{who} liked it\n{who} hated it", None, api_name="/batch")
        paths.append(Path(download))
    assert paths[0] != paths[1]
    assert paths[0].read_text() != paths[1].read_text()  # each holds only its own texts
    assert "alice" in paths[0].read_text() and "bob" not in paths[0].read_text()


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "x\x00y", ""])
def test_variant_names_cannot_be_paths(name):
    from compression.config import check_name

    with pytest.raises(ValueError):
        check_name(name, "students[0].name")
