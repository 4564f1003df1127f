"""Code digests: which files a closure holds, and that editing code (or a library version) changes the digest.

Most tests build a throwaway ``compression`` package under tmp_path, so they read no real module and run fast.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compression.core import digest as codehash

from .conftest import ROOT

# A fake package where `a` reaches every kind of import the lab uses; `outside`, `config` and the root are not in it.
TREE = {
    "__init__.py": "from .config import X  # re-exports, like the real root\n__version__ = '0'\n",
    "config.py": "X = 1\n",
    "a.py": ("import os\nimport numpy as np\nfrom .b import helper\n\n\n"
             "def lazy():\n    import torch.nn\n    from compression.sub import inner\n"),
    "b.py": "from . import c  # a submodule through `from . import`\nhelper = 1\n",
    "c.py": "import compression.d\n",
    "d.py": "from compression.b import helper  # a cycle back to b\n",
    "e.py": "import yaml  # v1\n",
    "sub/__init__.py": "",
    "sub/inner.py": "from ..e import not_a_module\nfrom . import later\n",
    "outside.py": "from . import a\n",
    "uses_metrics.py": "from .evaluation.metrics import load_metric\n",
    "evaluation/__init__.py": "",
    "evaluation/metrics/__init__.py": "def load_metric(name):\n    import evaluate\n",
    "evaluation/metrics/acc/acc.py": "import datasets\nimport evaluate\n",
}
A_CLOSURE = ["compression.a", "compression.b", "compression.c", "compression.d", "compression.e",
             "compression.sub", "compression.sub.inner"]


@pytest.fixture
def pkg(tmp_path: Path) -> Path:
    root = tmp_path / "src" / "compression"
    for rel, text in TREE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture
def versions(monkeypatch) -> dict[str, str]:
    """Installed versions as the digest sees them; tests edit this dict to "upgrade" a library."""
    table = {"numpy": "2.0.0", "torch": "2.13.0", "pyyaml": "6.0", "evaluate": "0.4.6", "datasets": "4.0.0"}
    monkeypatch.setattr(codehash, "_dist_version", lambda dist: table.get(dist, "absent"))
    return table


def edit(path: Path, text: str) -> None:
    """Rewrite a file and move its mtime forward, so even a same-size edit in the same clock tick is seen."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before, before + 1_000_000))


def test_closure_follows_every_import_form_and_ignores_libraries(pkg):
    assert codehash.module_closure("compression.a", root=pkg) == A_CLOSURE
    assert codehash.module_closure("compression.c", root=pkg) == ["compression.b", "compression.c", "compression.d"]
    assert codehash.module_closure("compression.outside", root=pkg) == sorted(A_CLOSURE + ["compression.outside"])


def test_root_init_is_left_out_and_a_subpackage_init_is_in(pkg):
    names = codehash.module_closure("compression.sub.inner", root=pkg)
    assert names == ["compression.e", "compression.sub", "compression.sub.inner"]
    assert "compression" not in codehash.module_closure("compression.a", root=pkg)
    assert "compression.core.config" not in codehash.module_closure("compression.a", root=pkg)


def test_editing_the_closure_changes_the_digest_and_nothing_else_does(pkg, versions):
    digest = codehash.code_digest("compression.a", root=pkg)
    assert len(digest) == 16 and int(digest, 16) >= 0
    for rel in ("outside.py", "config.py", "__init__.py", "evaluation/metrics/acc/acc.py"):
        edit(pkg / rel, (pkg / rel).read_text() + "# unrelated edit\n")
        assert codehash.code_digest("compression.a", root=pkg) == digest, rel
    edit(pkg / "c.py", "import compression.d  \n")  # whitespace only, same process: size and mtime change
    changed = codehash.code_digest("compression.a", root=pkg)
    assert changed != digest
    edit(pkg / "sub" / "__init__.py", "Y = 2\n")
    assert codehash.code_digest("compression.a", root=pkg) not in (digest, changed)


def test_same_size_edit_is_seen_through_mtime(pkg, versions):
    digest = codehash.code_digest("compression.e", root=pkg)
    edit(pkg / "e.py", "import yaml  # v2\n")
    assert codehash.code_digest("compression.e", root=pkg) != digest


def test_a_module_that_appears_joins_the_closure(pkg, versions):
    digest = codehash.code_digest("compression.sub.inner", root=pkg)
    (pkg / "sub" / "later.py").write_text("import pandas\n")
    assert "compression.sub.later" in codehash.module_closure("compression.sub.inner", root=pkg)
    assert codehash.code_digest("compression.sub.inner", root=pkg) != digest
    assert "pandas" in codehash.closure_libraries("compression.sub.inner", root=pkg)


def test_library_versions_enter_the_digest(pkg, versions):
    assert codehash.closure_libraries("compression.a", root=pkg) == {
        "numpy": "2.0.0", "pyyaml": "6.0", "torch": "2.13.0"}
    digest = codehash.code_digest("compression.a", root=pkg)
    versions["pandas"] = "3.0.0"  # not imported by the closure
    assert codehash.code_digest("compression.a", root=pkg) == digest
    versions["torch"] = "2.14.0"  # imported inside a function
    assert codehash.code_digest("compression.a", root=pkg) != digest
    del versions["torch"]
    assert codehash.closure_libraries("compression.a", root=pkg)["torch"] == "absent"


def test_metric_scripts_loaded_by_path_are_in_the_closure(pkg, versions):
    names = codehash.module_closure("compression.uses_metrics", root=pkg)
    assert names == ["compression.evaluation", "compression.evaluation.metrics", "compression.evaluation.metrics.acc.acc",
                     "compression.uses_metrics"]
    assert set(codehash.closure_libraries("compression.uses_metrics", root=pkg)) == {"datasets", "evaluate"}
    digest = codehash.code_digest("compression.uses_metrics", root=pkg)
    edit(pkg / "evaluation" / "metrics" / "acc" / "acc.py", "import evaluate\n")
    edited = codehash.code_digest("compression.uses_metrics", root=pkg)
    assert edited != digest
    (pkg / "evaluation" / "metrics" / "ece").mkdir()
    (pkg / "evaluation" / "metrics" / "ece" / "ece.py").write_text("import numpy\n")
    assert "compression.evaluation.metrics.ece.ece" in codehash.module_closure("compression.uses_metrics", root=pkg)
    assert codehash.code_digest("compression.uses_metrics", root=pkg) not in (digest, edited)


def test_digest_does_not_depend_on_where_the_package_lives(pkg, tmp_path, versions):
    copy = tmp_path / "elsewhere" / "compression"
    shutil.copytree(pkg, copy)
    assert codehash.code_digest("compression.a", root=copy) == codehash.code_digest("compression.a", root=pkg)
    assert codehash.code_digest("compression.a", "compression.e", root=pkg) == \
        codehash.code_digest("compression.e", "compression.a", root=pkg)


@pytest.mark.parametrize("name", ["compression", "os", "compression.nope", "compressionx.a"])
def test_names_outside_the_package_are_refused(pkg, name):
    with pytest.raises(ValueError, match="compression"):
        codehash.code_digest(name, root=pkg)


def test_real_package_closure_without_importing_torch():
    code = ("import json, sys\n"
            "from compression.core import digest as codehash\n"
            "before = 'torch' in sys.modules\n"
            "names = codehash.module_closure('compression.techniques.quantization')\n"
            "digest = codehash.code_digest('compression.techniques.quantization')\n"
            "libs = codehash.closure_libraries('compression.techniques.quantization')\n"
            "print(json.dumps({'before': before, 'after': 'torch' in sys.modules, 'names': names,\n"
            "                  'digest': digest, 'libs': libs}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    result = json.loads(out)
    assert result["before"] is False and result["after"] is False
    assert {"compression.techniques.quantization", "compression.bundle.weights", "compression.core.errors"} <= set(result["names"])
    assert "compression" not in result["names"]
    assert len(result["digest"]) == 16
    assert {"torch", "numpy", "onnxruntime"} <= set(result["libs"])
