"""The technique registry: a method is one file plus one registry entry. A plugin named by the operator builds,
reloads in a fresh process and benchmarks with nothing else touched; a bundle never makes the lab import code;
changing a technique's code rebuilds what it made, and nothing else."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from compression.core import registry as techniques
from compression.core.config import QuantizeConfig, load_recipe

from .conftest import FRESH_VERIFY, ROOT, run_cli

PLUGIN = textwrap.dedent('''
    """A method of our own: every weight snapped to a 1/GRID grid."""
    from compression.techniques import Built, Technique, register

    GRID = 64


    def apply(model, tokenizer, cfg, work_dir):
        import copy

        import torch

        rounded = copy.deepcopy(model)
        with torch.no_grad():
            for p in rounded.parameters():
                p.copy_((p * GRID).round() / GRID)
        return Built(rounded)


    # No restore of its own: the generic loader reads what save_bundle wrote (plain or bitmask-sparse weights).
    register(Technique("grid-round", "quantize", "weights on a grid", apply, tolerance=1e-4))
''')


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "lab_grid_plugin.py").write_text(PLUGIN)
    shutil.copy(Path(__file__).with_name("lab_int4_plugin.py"), folder)  # a plugin with options and hooks
    env = {"COMPRESSION_LAB_TECHNIQUES": "lab_grid_plugin,lab_int4_plugin",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(folder)]),
           **FRESH_VERIFY}  # the fresh verify process must find the plugin by its name, as a user's would
    return folder / "lab_grid_plugin.py", env


def _recipe(tmp_path, tiny_data, tiny_model, extra: str = "") -> str:
    path = tmp_path / "grid.yaml"
    path.write_text(f"name: grid\ndata: {{source: {tiny_data}}}\n"
                    f"teacher: {{model: {tiny_model}, max_length: 32, train: {{epochs: 1, batch_size: 16}}}}\n"
                    "quantize:\n  - {name: teacher-grid, source: teacher, method: grid-round}\n"
                    f"{extra}"
                    "  - {name: teacher-int8, source: teacher, method: dynamic-int8}\n"
                    "bench: {samples: 4, repeats: 1, warmup: 1, throughput_batches: 1, memory: false}\n")
    return str(path)


def test_every_stage_reads_the_registry():
    loaded = techniques.load()
    assert {"pretrained", "teacher-layers", "pretrained-layers"} == set(techniques.names("student"))
    assert {"magnitude", "structured"} == set(techniques.names("prune"))
    assert {"dynamic-int8", "onnx-int8", "bf16", "fp16", "onnx-fp32"} == set(techniques.names("quantize"))
    assert all(t.module.startswith("compression.techniques.") for t in loaded.values())
    allowed = r"allowed: dynamic-int8, onnx-int8, bf16, fp16, onnx-fp32"  # BUILTIN order, whatever imported first
    with pytest.raises(ValueError, match=rf"method: invalid value 'int3' \({allowed}\)"):
        QuantizeConfig(name="q", source="teacher", method="int3")
    with pytest.raises(ValueError, match="registered twice"):
        techniques.register(techniques.Technique("bf16", "quantize", "another bf16", lambda *a: None))


INT4_STEP = "  - {name: teacher-int4, source: teacher, method: int4-weight, group_size: 16}\n"


def test_a_plugin_method_builds_reloads_in_a_fresh_process_and_benchmarks(plugin, tiny_data, tiny_model, tmp_path):
    """Two plugins, each one file with one register(): grid-round (no options, the generic bundle writer) and
    int4-weight (an option of its own, its own weights file, parameter count and runtime choice)."""
    _, env = plugin
    recipe, store = _recipe(tmp_path, tiny_data, tiny_model, INT4_STEP), str(tmp_path / "store")
    with pytest.raises(ValueError, match="grid-round"):
        load_recipe(recipe)  # this process was not told about the plugin: the recipe is refused, by name
    built = run_cli("build", recipe, "--store", store, env=env)
    assert built.returncode == 0, built.stderr[-3000:]
    assert "teacher-grid: reloads in a fresh process" in built.stdout + built.stderr  # the verify child loaded it
    rows = {r["name"]: r for r in map(json.loads, run_cli("list", "--json", "--store", store, env=env)
                                      .stdout.splitlines())}
    assert rows["teacher-grid"]["status"] == "ok" and rows["teacher-grid"]["latency_p50_ms"] > 0
    bundle = rows["teacher-grid"]["bundle"]
    assert json.loads(open(f"{bundle}/bundle.json").read())["weights"]["technique"] == "grid-round"
    bench = run_cli("bench", "teacher", "teacher-grid", "--store", store, "--samples", "4", "--repeats", "1",
                    "--no-memory", "--json", env=env)
    assert bench.returncode == 0 and json.loads(bench.stdout)["results"][1]["name"] == "teacher-grid"
    # A process without the plugin refuses the bundle by name: the bundle cannot make it import anything.
    refused = run_cli("predict", bundle, "a fine film")
    assert refused.returncode == 1 and "unknown technique 'grid-round'" in refused.stderr
    _check_int4(rows, env, store, recipe, tmp_path)


def _check_int4(rows: dict, env: dict, store: str, recipe: str, tmp_path) -> None:
    int4, teacher = rows["teacher-int4"], rows["teacher"]
    assert int4["status"] == "ok" and int4["latency_p50_ms"] > 0
    meta = json.loads(open(f"{int4['bundle']}/bundle.json").read())
    assert meta["step"]["group_size"] == 16 and meta["weights"]["group_size"] == 16  # its option, recorded
    assert meta["weights"]["format"] == "technique" and meta["weights"]["file"] == "int4.safetensors"
    files = set(os.listdir(int4["bundle"]))
    assert {"bundle.json", "config.json", "int4.safetensors"} <= files  # its own file, not the generic ones
    assert not files & {"model.safetensors", "weights.safetensors", "model.onnx"}
    assert meta["params"]["total"] == teacher["metrics"]["params"]  # its count: two weights per packed byte
    assert int4["size_mb"] < teacher["size_mb"]  # 4-bit encoder weights
    assert abs(int4["accuracy"] - teacher["accuracy"]) <= 0.1
    code = ("import json, sys; from compression.bundle import load_bundle; b = load_bundle(sys.argv[1]); "
            "p = b.predict(['a fine film']); print(json.dumps([b.runtime, p[0].label]))")
    out = subprocess.run([sys.executable, "-c", code, int4["bundle"]], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=300)
    runtime, label = json.loads(out.stdout.strip().splitlines()[-1])
    assert runtime == "eager (int4-weight is not traced)" and label in ("0", "1")  # its runtime choice
    helped = run_cli("build", "--help", env=env).stdout
    assert "int4-weight: int4 weight-only (plugin)" in helped and "group_size (default 32)" in helped
    bad = tmp_path / "bad.yaml"
    bad.write_text(open(recipe).read().replace("group_size: 16", "group_size: 12"))
    refused = run_cli("build", str(bad), "--store", store, env=env)
    assert refused.returncode == 1 and ("quantize[1].group_size: invalid value 12 (allowed: a power of two >= 2)"
                                        in refused.stderr)


def test_a_bundle_naming_code_is_refused_not_imported(tiny_teacher, tmp_path):
    import shutil

    from compression.bundle.folder import load_bundle
    from compression.core.errors import LabError

    folder = tmp_path / "evil"
    shutil.copytree(tiny_teacher, folder)
    meta = json.loads((folder / "bundle.json").read_text())
    meta["weights"]["technique"] = "os"
    (folder / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(LabError, match="unknown technique 'os'"):
        load_bundle(folder)


def test_changing_a_techniques_code_rebuilds_only_what_it_made(plugin, tiny_data, tiny_model, tmp_path):
    path, env = plugin
    recipe, store = _recipe(tmp_path, tiny_data, tiny_model), str(tmp_path / "store")
    assert run_cli("build", recipe, "--store", store, env=env).returncode == 0
    again = run_cli("build", recipe, "--store", store, env=env)
    log = again.stdout + again.stderr
    assert all(f"{n}: unchanged since run 1" in log for n in ("teacher", "teacher-grid", "teacher-int8")), log[-2000:]
    path.write_text(path.read_text().replace("GRID = 64", "GRID = 32"))
    changed = run_cli("build", recipe, "--store", store, env=env)
    log = changed.stdout + changed.stderr
    assert changed.returncode == 0, log[-2000:]
    assert "teacher: unchanged" in log and "teacher-int8: unchanged" in log
    assert "teacher-grid: unchanged" not in log and "teacher-grid: reloads in a fresh process" in log
