import json

import pytest

from .conftest import run_cli, run_main, synthetic_rows


@pytest.fixture(scope="module")
def built_store(tiny_model, tiny_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    recipe = folder / "tiny.yaml"
    recipe.write_text(f"name: tiny\ndata:\n  source: {tiny_data.name}\nteacher:\n  model: {tiny_model}\n"
                      f"  max_length: 32\n  train: {{epochs: 1, batch_size: 16}}\n"
                      "bench: {samples: 4, repeats: 1, warmup: 1, throughput_batches: 1, memory: false}\n")
    store = folder / "store"
    result = run_cli("build", str(recipe), "--store", str(store), "--data-dir", str(tiny_data.parent))
    assert result.returncode == 0, result.stderr[-2000:]
    return store


def test_build_then_list_json(built_store):
    result = run_main("list", "--store", str(built_store), "--json")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["name"], r["kind"]) for r in rows] == [("teacher", "teacher")]
    assert 0 <= rows[0]["accuracy"] <= 1 and rows[0]["metrics"]["test_examples"] == 80
    assert rows[0]["accuracy_ci"][0] <= rows[0]["accuracy"] <= rows[0]["accuracy_ci"][1]
    assert rows[0]["size_mb"] > 0


def test_store_from_environment(built_store):
    result = run_main("list", env={"COMPRESSION_LAB_STORE": str(built_store)})
    assert result.returncode == 0 and "teacher" in result.stdout


def test_predict_by_name_and_by_folder(built_store):
    result = run_main("predict", "teacher", "a great film", "a dull film", "--store", str(built_store), "--json")
    preds = json.loads(result.stdout)
    assert len(preds) == 2 and {p["label"] for p in preds} <= {"0", "1"}
    folder = json.loads(run_main("list", "--store", str(built_store), "--json").stdout.splitlines()[0])["bundle"]
    assert run_main("predict", folder, "hello there").returncode == 0


def test_verify_command(built_store):
    folder = json.loads(run_main("list", "--store", str(built_store), "--json").stdout.splitlines()[0])["bundle"]
    result = run_main("verify", folder)
    assert result.returncode == 0 and result.stdout.startswith("ok")


def test_evaluate_on_other_data_matches_the_recorded_test_figures(built_store, tiny_data, tmp_path):
    row = json.loads(run_main("list", "--store", str(built_store), "--json").stdout.splitlines()[0])
    result = run_main("evaluate", "teacher", row["bundle"], "--data", str(tiny_data), "--store", str(built_store),
                     "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    by_name, by_folder = map(json.loads, result.stdout.splitlines())
    assert by_name["accuracy"] == row["accuracy"] and by_name["test_examples"] == 80  # same split, same figure
    assert by_folder["agreement"] == 1.0
    every = json.loads(run_main("evaluate", "teacher", "--data", str(tiny_data), "--split", "all", "--store",
                               str(built_store), "--json").stdout)
    assert every["test_examples"] == 340
    table = run_main("evaluate", "teacher", "--data", str(tiny_data), "--store", str(built_store)).stdout
    assert "agreement is with teacher" in table and f"{row['accuracy'] * 100:.1f} (" in table
    named = tmp_path / "named.csv"  # string labels the model does not have: refused, not silently mis-scored
    named.write_text("text,label\n" + "".join(f"a good film {i},pos\nan awful film {i},neg\n" for i in range(20)))
    result = run_main("evaluate", "teacher", "--data", str(named), "--store", str(built_store))
    assert result.returncode == 1 and "has no labelled test split" in result.stderr  # a file has no test split
    result = run_main("evaluate", "teacher", "--data", str(named), "--split", "all", "--store", str(built_store))
    assert result.returncode == 1 and "do not match the model's labels" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")  # one line, no traceback


def test_sources_lists_embedded():
    result = run_main("sources", "--json")
    refs = {r["ref"] for r in json.loads(result.stdout)}
    assert {"embedded:minilm-l6", "embedded:mpnet-base", "embedded:rotten-tomatoes"} <= refs


def _recipe(tmp_path, body: str):
    path = tmp_path / "r.yaml"
    path.write_text(body)
    return str(path)


@pytest.mark.parametrize("body, fragment", [
    ("name: r\nteacher:\n  model: /no/such/folder\n", "model folder /no/such/folder does not exist"),
    ("name: r\nteacher:\n  model: embedded:bert-huge\n", "unknown embedded model 'embedded:bert-huge'"),
    ("name: r\nteacher:\n  model: bert-base-uncased\n", "cannot load model 'bert-base-uncased' from the Hugging Face Hub"),
    ("name: r\ndata:\n  source: glue/sst2\n", "cannot load data set 'glue/sst2' from the Hugging Face Hub"),
    ("name: r\ndata:\n  source: NOLABEL\n", "cannot find a label column"),
    ("name: r\ndata:\n  source: EMPTY\n", "is empty"),
    ("name: r\nteachr: {}\n", "recipe: unknown key 'teachr'"),
])
def test_errors_are_one_line_and_non_zero(tmp_path, tiny_model, body, fragment):
    (tmp_path / "nolabel.csv").write_text("text,other\nhello,1\nworld,2\n")
    (tmp_path / "empty.csv").write_text("")
    body = body.replace("NOLABEL", str(tmp_path / "nolabel.csv")).replace("EMPTY", str(tmp_path / "empty.csv"))
    if "data:" in body:
        body += f"teacher:\n  model: {tiny_model}\n"
    result = run_main("build", _recipe(tmp_path, body), "--store", str(tmp_path / "store"))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], result.stderr[-1500:]
    assert "Traceback" not in result.stderr


def test_failed_build_leaves_no_finished_variant(tmp_path, tiny_model):
    """A build that fails part-way (the teacher is recorded, then a student's backbone is missing) marks its run
    failed, says why in one line, and lists only what finished."""
    recipe = _recipe(tmp_path, f"name: r\ndata: {{source: {tmp_path / 'd.csv'}}}\n"
                               f"teacher: {{model: {tiny_model}, max_length: 32, train: null}}\n"
                               "students:\n  - {name: s, init: pretrained, model: /no/such/backbone}\nbench: null\n")
    (tmp_path / "d.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in synthetic_rows(60)))
    result = run_main("build", recipe, "--store", str(tmp_path / "s"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "/no/such/backbone" in result.stderr.strip().splitlines()[-1]
    listed = run_main("list", "--store", str(tmp_path / "s"), "--json")
    assert listed.returncode == 0 and [json.loads(r)["name"] for r in listed.stdout.splitlines()] == ["teacher"]
    from compression.store.run_store import RunStore

    with RunStore(tmp_path / "s") as store:
        (run,) = store.runs()
        assert run["status"] == "failed" and "/no/such/backbone" in run["error"]
        assert {v.name for v in store.variants(status=None, latest_only=False) if v.status == "finished"} == {
            "teacher"}


def test_predict_unknown_variant_and_help(tmp_path):
    result = run_main("predict", "ghost", "hi", "--store", str(tmp_path / "s"))
    assert result.returncode == 1 and "no finished variant named 'ghost'" in result.stderr
    for command in ("sources", "build", "list", "predict", "verify"):
        help_text = run_main(command, "--help").stdout
        assert "usage: python -m compression" in help_text and "--" in help_text


def test_every_command_is_parsed_and_dispatched():
    import argparse

    from compression.cli import COMMANDS, main, make_parser

    sub = next(a for a in make_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == ["sources", "build", "list", "predict", "bench", "advise", "evaluate", "inspect",
                                 "export", "publish", "verify", "loadtest"]  # the order --help lists them in
    assert set(COMMANDS) == set(sub.choices) and callable(main)


def test_bench_record_refuses_a_published_run_before_measuring(tmp_path):
    result = run_main("bench", "teacher", "--published", str(tmp_path / "nowhere"), "--record")
    assert result.returncode == 1 and "a published run is read-only" in result.stderr


def test_child_env_finds_this_package_from_any_folder(tmp_path):
    import os
    import subprocess
    import sys

    from compression.core.child_env import PACKAGE_ROOT, child_env

    env = child_env(LAB_EXTRA="1")
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(PACKAGE_ROOT) and env["LAB_EXTRA"] == "1"
    assert "LAB_EXTRA" not in os.environ  # the parent's environment is left alone
    out = subprocess.run([sys.executable, "-c", "import compression, os; print(compression.__file__, "
                          "os.environ['LAB_EXTRA'])"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.split() == [str(PACKAGE_ROOT / "compression" / "__init__.py"), "1"], out.stderr[-500:]


def test_export_writes_the_reference_file_atomically(built_store, tmp_path):
    out = tmp_path / "ref" / "tiny.json"
    result = run_main("export", str(out), "--label", "tiny, test", "--store", str(built_store))
    assert result.returncode == 0 and f"wrote 1 variants to {out}" in result.stdout, result.stderr[-1000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["label"] == "tiny, test" and [r["name"] for r in data["variants"]] == ["teacher"]
    assert data["variants"][0]["bundle"] is None and "metrics" not in data["variants"][0]
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny.json"]  # no temp file left beside it
