"""The package's shape, checked the way anyone can run it: ``python -m tools.check_architecture``."""

from tools import check_architecture as arch


def test_imports_run_one_way_with_no_circle_and_files_stay_small():
    modules = arch.scan()
    assert len(modules) > 50  # the whole package was read, not an empty folder
    assert arch.problems(modules) == []


def test_the_check_sees_a_circle_an_upward_import_and_a_lazy_light_import(tmp_path):
    root = tmp_path / "compression"
    files = {
        "__init__.py": "",
        "core/__init__.py": "",
        "core/a.py": "from compression.core.b import x\n",
        "core/b.py": "from compression.core.a import y\n",  # a circle
        "core/c.py": "def f():\n    from compression.core.a import y\n",  # lazy, though a is light
        "data/__init__.py": "",
        "data/d.py": "import torch\n",  # heavy at import: a lazy import of it is right
        "store/__init__.py": "",
        "store/s.py": "from compression.data.d import z\n",  # same rank, other group: not allowed
        "bundle/__init__.py": "",
        "bundle/e.py": "def g():\n    from compression.data.d import z\n",
        "techniques/__init__.py": "",
        "techniques/t.py": "",
        "training/__init__.py": "",
        "training/u.py": "from compression.techniques.t import w\n",  # upward
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    found = arch.problems(arch.scan(root))
    assert "import circle: compression.core.a -> compression.core.b" in found
    assert ("compression.training.u imports compression.techniques.t: from layer training up to techniques"
            in found)
    assert "compression.store.s imports compression.data.d: from layer store across to data" in found
    assert ("compression.core.c imports compression.core.a inside a function, but it is light: import it at the top"
            in found)
    assert not any(line.startswith("compression.bundle.e") for line in found)  # torch behind it: lazy is right
