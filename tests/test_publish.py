"""Published runs: pack a finished run into a read-only folder / zip / Hub repo, and serve it without writing to it."""

import hashlib
import io
import json
import os
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

from compression.core.errors import LabError
from compression.publishing import reader as reading
from compression.publishing import writer as pub

from .conftest import ROOT, run_cli, run_main, store_copy

NAMES = ["teacher", "teacher-int8"]


@pytest.fixture(scope="module")
def built(tiny_store, tmp_path_factory):
    """A store with one finished run: a tiny teacher and its dynamic-int8 copy, benchmarked (a copy of the
    session's template store)."""
    return store_copy(tiny_store, tmp_path_factory.mktemp("publish"))


@pytest.fixture(scope="module")
def published(built, tmp_path_factory):
    """The run published to a folder by the command line."""
    to = tmp_path_factory.mktemp("out") / "published"
    result = run_cli("publish", "--store", str(built), "--to", str(to), "--no-chart")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"published to {to}" in result.stdout
    return to


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSION_LAB_CACHE", str(tmp_path / "lab-cache"))
    return tmp_path / "lab-cache"


def hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def front_matter(text: str) -> str:
    assert text.startswith("---\n")
    return text.split("---\n")[1]


def copy_of(published: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(published, tmp_path / "copy"))


def rewrite_manifest(root: Path) -> None:
    """Make a tampered run self-consistent again: every file's hash as it is now (what an attacker would do)."""
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"] = {k: v for k, v in hashes(root).items() if k != "manifest.json"}
    (root / "manifest.json").write_text(json.dumps(manifest))


# ------------------------------------------------------------------------------------------------- writing

def test_folder_layout_manifest_results_examples(published, tiny_data):
    manifest = json.loads((published / "manifest.json").read_text())
    assert manifest["format"] == "compression-lab-published" and manifest["version"] == 1
    assert manifest["variants"] == NAMES and manifest["recipe"] == "tiny" and isinstance(manifest["run"], int)
    assert manifest["lab_version"] and "T" in manifest["created"]
    every = hashes(published)
    assert manifest["files"] == {k: v for k, v in every.items() if k != "manifest.json"}  # every file, right hash
    assert {"results.json", "recipe.json", "examples.json", "README.md", "bundles/teacher/bundle.json",
            "bundles/teacher/model.safetensors", "bundles/teacher-int8/weights.safetensors",
            "bundles/teacher/README.md"} <= set(every)

    results = json.loads((published / "results.json").read_text())
    assert results["run"] == manifest["run"] and "tiny" in results["label"]
    rows = results["variants"]
    assert [r["name"] for r in rows] == NAMES
    assert all(r["bundle"] == f"bundles/{r['name']}" and r["status"] == "ok" for r in rows)
    assert rows[0]["metrics"]["test_examples"] == 80 and rows[1]["latency_p50_ms"] > 0 and rows[1]["provenance"]
    assert json.loads((published / "recipe.json").read_text())["name"] == "tiny"

    examples = json.loads((published / "examples.json").read_text())
    test_texts = {line.split("\t")[0] for line in (tiny_data / "test.tsv").read_text().splitlines()[1:]}
    assert examples["task"] == "single" and examples["source"] == str(tiny_data) and examples["split"] == "test"
    assert 1 <= len(examples["texts"]) <= 12 and set(examples["texts"]) <= test_texts
    assert len(examples["test_texts"]) == 80 and set(examples["test_texts"]) == test_texts

    readme = (published / "README.md").read_text()
    assert "text-classification" in front_matter(readme) and "knowledge-distillation" in front_matter(readme)
    assert "| teacher-int8 | quantized (teacher) |" in readme and "python app.py --published" in readme
    assert "No chart" in readme and "chart.png" not in every  # --no-chart: left out, and the README says how to add it
    assert "Where the speed figures come from" in readme and "threads" in readme


def test_model_cards(published):
    import yaml

    cards = {name: (published / f"bundles/{name}/README.md").read_text() for name in NAMES}
    meta = {name: yaml.safe_load(front_matter(card)) for name, card in cards.items()}
    for name in NAMES:
        assert meta[name]["pipeline_tag"] == "text-classification" and "compression-lab" in meta[name]["tags"]
        assert "base_model" not in meta[name] and "datasets" not in meta[name]  # local model and data: no Hub ids
        result = meta[name]["model-index"][0]["results"][0]
        assert result["dataset"]["split"] == "test" and "pytest" not in result["dataset"]["name"]  # no local paths
        assert {m["type"] for m in result["metrics"]} == {"accuracy", "f1"}
        assert "from compression.bundle import load_bundle" in cards[name]
    assert meta["teacher"]["library_name"] == "transformers"  # plain HF safetensors
    assert meta["teacher-int8"]["library_name"] == "bert-compression-lab"  # the lab's int8 encoding
    assert "dynamic-int8" in meta["teacher-int8"]["tags"]
    assert "Parent: `teacher`" in cards["teacher-int8"] and "p50" in cards["teacher-int8"]
    assert "a local folder or file (tiny-bert)" in cards["teacher-int8"]  # its root model, walked up the chain
    top = yaml.safe_load(front_matter((published / "README.md").read_text()))
    assert top["pipeline_tag"] == "text-classification" and "quantization" in top["tags"]


def test_card_metadata_names_hub_ids_only():
    assert pub.hub_model_id("embedded:minilm-l6") == "sentence-transformers/all-MiniLM-L6-v2"
    assert pub.hub_model_id("embedded:mpnet-base") == "sentence-transformers/all-mpnet-base-v2"
    assert pub.hub_model_id("bert-base-uncased") == "bert-base-uncased"
    assert pub.hub_model_id("/models/tiny-bert") is None and pub.hub_model_id("./tiny") is None
    assert pub.hub_dataset_id("glue/sst2") == "nyu-mll/glue" and pub.hub_dataset_id("user/name:cfg") == "user/name"
    for local in ("embedded:rotten-tomatoes", "../shared/data/sst2", "/data/x.csv", "synthetic", "data/x.tsv"):
        assert pub.hub_dataset_id(local) is None, local


def test_zip_and_open_published(built, published, tmp_path, cache):
    from compression.store.run_store import RunStore

    messages = []
    with RunStore(built) as store:
        out = pub.publish(store, str(tmp_path / "run.zip"), variants=["teacher-int8"], chart=False,
                          progress=lambda f, m: messages.append(m))
    assert any("added teacher" in m for m in messages)  # left out by the user, added: ratios are against it
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("manifest.json"))
        assert all(not n.startswith("/") and ".." not in n.split("/") for n in names)
        for name, digest in manifest["files"].items():
            assert hashlib.sha256(zf.read(name)).hexdigest() == digest
    assert set(manifest["files"]) | {"manifest.json"} == set(names) and manifest["variants"] == NAMES

    run = pub.open_published(out)
    assert cache in run.root.parents and run.root.parent.name == "published"
    assert [r["name"] for r in run.rows()] == NAMES and all(r["status"] == "ok" for r in run.rows())
    assert run.rows()[1]["bundle"] == str(run.root / "bundles" / "teacher-int8")
    assert run.examples and run.test_texts and "tiny" in run.label
    again = pub.open_published(out)  # extracted once, then reused
    assert again.root == run.root and len(list(run.root.parent.iterdir())) == 1


def test_publish_refusals(built, published, tmp_path):
    from compression.store.run_store import RunStore

    with RunStore(built) as store:
        with pytest.raises(LabError, match=r"no finished variant 'ghost' \(known: teacher, teacher-int8\)"):
            pub.publish(store, str(tmp_path / "x"), variants=["ghost"])
        with pytest.raises(LabError, match="not an empty folder"):
            pub.publish(store, str(published))
        with pytest.raises(LabError, match="one run"):
            pub.publish(store, str(tmp_path / "y"), run="all")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_examples_fall_back_to_probe_texts(built, tmp_path, monkeypatch):
    import compression.publishing.writer as writer
    from compression.bundle.folder import PROBE_TEXTS
    from compression.store.run_store import RunStore

    def unavailable(*args, **kwargs):
        raise LabError("data folder /gone does not exist")

    monkeypatch.setattr(writer, "load_data", unavailable)
    with RunStore(built) as store:
        out = Path(pub.publish(store, str(tmp_path / "p"), chart=False))
    examples = json.loads((out / "examples.json").read_text())
    assert examples["split"] == "probe" and "does not exist" in examples["note"]
    assert examples["texts"] == list(PROBE_TEXTS) and examples["test_texts"] == list(PROBE_TEXTS)
    assert "probe texts" in (out / "README.md").read_text()


def test_publish_to_hub_offline_is_one_line(built, tmp_path):
    result = run_cli("publish", "--store", str(built), "--to", "hub:user/name", "--no-chart",
                     env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot upload to the Hugging Face Hub" in errors[0] and "offline?" in errors[0]
    assert "Traceback" not in result.stderr


def test_open_hub_offline_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LabError, match=r"cannot download hub:user/name from the Hugging Face Hub") as err:
        pub.open_published("hub:user/name", cache=tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(LabError, match="not a Hub repo"):
        pub.open_published("hub:../etc", cache=tmp_path)


def test_publish_to_hub_uploads_one_folder(built, tmp_path, monkeypatch):
    import huggingface_hub

    from compression.store.run_store import RunStore

    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create", repo_id, kwargs))

        def upload_folder(self, *, repo_id, folder_path, **kwargs):
            calls.append(("upload", repo_id, kwargs))
            shutil.copytree(folder_path, tmp_path / "uploaded")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    with RunStore(built) as store:
        assert pub.publish(store, "hub:user/name", chart=False) == "hub:user/name"
    assert calls[0] == ("create", "user/name", {"exist_ok": True}) and calls[1][1] == "user/name"
    assert calls[1][2]["delete_patterns"] == "*"  # files of an earlier publish would fail the manifest check
    assert pub.open_published(tmp_path / "uploaded").names == NAMES

    def refused(self, repo_id, **kwargs):
        raise ConnectionError("Max retries exceeded\nwith url: https://huggingface.co/api/repos/create")

    monkeypatch.setattr(FakeApi, "create_repo", refused)
    with RunStore(built) as store, pytest.raises(LabError) as err:
        pub.publish(store, "hub:user/name", chart=False)
    assert str(err.value).startswith("cannot upload to the Hugging Face Hub (Max retries exceeded): offline?")


def test_open_hub_downloads_data_and_weights_only(published, tmp_path, monkeypatch):
    import huggingface_hub

    asked = {}

    def fake_snapshot_download(repo_id, **kwargs):
        asked.update(kwargs, repo_id=repo_id)
        return str(published)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    run = pub.open_published("hub:user/name", cache=tmp_path)
    assert asked["repo_id"] == "user/name" and Path(asked["cache_dir"]).parent == tmp_path
    assert {"*.safetensors", "*.json", "*.onnx"} <= set(asked["allow_patterns"])
    assert not {"*.bin", "*.pkl", "*.py", "*"} & set(asked["allow_patterns"])
    assert [r["status"] for r in run.rows()] == ["ok", "ok"]


# ---------------------------------------------------------------------------------------- reading, read-only

def _read_only(folder: Path, writable: bool) -> None:
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode
        bits = stat.S_IWUSR if writable else 0
        path.chmod((mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) | bits)


def test_cli_reads_a_published_run_like_the_store_and_writes_nothing(built, published, tiny_data, tmp_path):
    before = hashes(published)
    runs_existed = (ROOT / "runs").exists()
    _read_only(published, writable=False)  # any write attempt inside it would now fail loudly
    try:
        env = {"COMPRESSION_LAB_CACHE": str(tmp_path / "cache")}
        from_store = [json.loads(x) for x in run_main("list", "--store", str(built), "--json").stdout.splitlines()]
        listed = run_main("list", "--published", str(published), "--json", env=env)
        assert listed.returncode == 0, listed.stderr[-1500:]
        from_pub = [json.loads(x) for x in listed.stdout.splitlines()]
        keys = ("name", "kind", "parent", "accuracy", "f1", "latency_p50_ms", "metrics", "provenance")
        assert [{k: r[k] for k in keys} for r in from_pub] == [{k: r[k] for k in keys} for r in from_store]
        assert [r["bundle"] for r in from_pub] == [str(published / "bundles" / n) for n in NAMES]
        assert all(r["status"] == "ok" for r in from_pub)

        texts = ["a great film", "a dull film", "superb and charming"]
        for name in NAMES:
            a = run_main("predict", name, *texts, "--store", str(built), "--json")
            b = run_main("predict", name, *texts, "--published", str(published), "--json", env=env)
            assert b.returncode == 0, b.stderr[-1500:]
            pa, pb = json.loads(a.stdout), json.loads(b.stdout)
            assert [p["label"] for p in pa] == [p["label"] for p in pb]
            flat = [[v for p in preds for v in p["probabilities"].values()] for preds in (pa, pb)]
            assert flat[1] == pytest.approx(flat[0], abs=1e-6)

        bench = run_main("bench", *NAMES, "--published", str(published), "--no-memory", "--samples", "2",
                        "--repeats", "1", "--json", env=env)
        assert bench.returncode == 0, bench.stderr[-1500:]
        assert [r["name"] for r in json.loads(bench.stdout)["results"]] == NAMES
        evaluate = run_main("evaluate", *NAMES, "--published", str(published), "--data", str(tiny_data), "--json",
                           env=env)
        assert evaluate.returncode == 0, evaluate.stderr[-1500:]
        assert json.loads(evaluate.stdout.splitlines()[0])["accuracy"] == from_store[0]["accuracy"]
    finally:
        _read_only(published, writable=True)
    assert hashes(published) == before  # byte-identical, nothing added
    assert (ROOT / "runs").exists() == runs_existed  # --published never opened (or created) a store


def test_cli_refusals_with_published(published, tmp_path):
    result = run_main("bench", "teacher", "--published", str(published), "--record")
    assert result.returncode == 1 and "a published run is read-only" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = run_main("list", "--published", str(published), "--run", "99")
    assert result.returncode == 1 and "holds run" in result.stderr
    result = run_main("predict", "ghost", "hi", "--published", str(published))
    assert result.returncode == 1 and "known: teacher, teacher-int8" in result.stderr
    result = run_main("list", "--published", str(published), "--store", str(tmp_path))
    assert result.returncode == 2 and "not allowed with argument" in result.stderr
    result = run_main("list", "--published", str(tmp_path / "nothing"))
    assert result.returncode == 1 and "not found" in result.stderr
    help_text = run_cli("publish", "--help").stdout
    assert "--to DIR|FILE.zip|hub:USER/NAME" in help_text and "examples:" in help_text


def test_tampered_weights_break_only_that_variant(published, tmp_path):
    root = copy_of(published, tmp_path)
    weights = root / "bundles/teacher-int8/weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    run = pub.open_published(root)
    status = {r["name"]: r["status"] for r in run.rows()}
    assert status["teacher"] == "ok"
    assert status["teacher-int8"].startswith("broken: ") and "SHA-256" in status["teacher-int8"]
    with pytest.raises(LabError, match="teacher-int8 of the published run is broken"):
        run.bundle_folder("teacher-int8")
    result = run_main("predict", "teacher-int8", "a great film", "--published", str(root))
    assert result.returncode == 1 and "broken" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = run_main("predict", "teacher", "a great film", "--published", str(root), "--json")
    assert result.returncode == 0 and json.loads(result.stdout)[0]["label"] in ("0", "1")
    listed = run_main("list", "--published", str(root))
    assert listed.returncode == 0 and "BROKEN teacher-int8" in listed.stdout


@pytest.mark.parametrize("extra", ["bundles/teacher/evil.pkl", "bundles/teacher/notes.txt",
                                   "bundles/teacher/sub/model.py"])
def test_added_files_break_the_variant(published, tmp_path, extra):
    root = copy_of(published, tmp_path)
    (root / extra).parent.mkdir(exist_ok=True)
    (root / extra).write_bytes(b"\x80\x04K\x01.")
    run = pub.open_published(root)
    assert run.problem("teacher") and extra in run.problem("teacher")
    assert run.problem("teacher-int8") is None


def test_missing_file_and_edited_model_card(published, tmp_path):
    root = copy_of(published, tmp_path)
    (root / "bundles/teacher/tokenizer_config.json").unlink()
    (root / "bundles/teacher-int8/README.md").write_text("edited on the Hub\n")  # documentation only: still served
    run = pub.open_published(root)
    assert "missing" in run.problem("teacher") and run.problem("teacher-int8") is None


def test_remote_code_in_a_self_consistent_run_never_runs(published, tmp_path):
    from compression.bundle.folder import load_bundle
    from compression.bundle.meta import file_hashes

    root = copy_of(published, tmp_path)
    bundle = root / "bundles/teacher"
    marker = tmp_path / "EXECUTED"
    (bundle / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n"
                                    "from transformers import BertForSequenceClassification as Evil\n"
                                    "from transformers import BertTokenizer as EvilTok\n")
    for name, key, value in (("config.json", "auto_map", {"AutoConfig": "evil.Evil",
                                                          "AutoModelForSequenceClassification": "evil.Evil"}),
                             ("tokenizer_config.json", "auto_map", {"AutoTokenizer": ["evil.EvilTok", None]})):
        data = json.loads((bundle / name).read_text())
        data[key] = value
        (bundle / name).write_text(json.dumps(data))
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["files"] = file_hashes(bundle)  # the bundle's own record agrees too
    (bundle / "bundle.json").write_text(json.dumps(meta))
    rewrite_manifest(root)

    run = pub.open_published(root)
    assert "evil.py" in run.problem("teacher")  # refused: a published run never holds code
    result = run_main("predict", "teacher", "a great film", "--published", str(root))
    assert result.returncode == 1 and "evil.py" in result.stderr
    try:  # and the loader itself, handed the folder directly, reads only data
        load_bundle(bundle).predict(["a great film"])
    except (LabError, ValueError, OSError):
        pass
    result = run_main("predict", str(bundle), "a great film")
    assert not marker.exists()


@pytest.mark.parametrize("what, content", [
    ("missing", None), ("invalid", "{not json"), ("version", {"format": "compression-lab-published", "version": 99}),
    ("format", {"format": "something-else", "version": 1})])
def test_bad_manifest_is_one_clear_error(published, tmp_path, what, content):
    root = copy_of(published, tmp_path)
    if content is None:
        (root / "manifest.json").unlink()
    else:
        (root / "manifest.json").write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(LabError) as err:
        pub.open_published(root)
    expected = {"missing": "manifest.json is missing", "invalid": "not valid JSON", "version": "upgrade",
                "format": "not a published run"}[what]
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_bad_results_is_one_clear_error(published, tmp_path):
    root = copy_of(published, tmp_path)
    (root / "results.json").write_text("[")
    with pytest.raises(LabError, match="results.json changed since it was published"):
        pub.open_published(root)
    rewrite_manifest(root)
    with pytest.raises(LabError, match="results.json is not valid JSON"):
        pub.open_published(root)
    (root / "results.json").unlink()
    with pytest.raises(LabError, match="results.json is missing"):
        pub.open_published(root)


# ------------------------------------------------------------------------------------------- hostile zips

def _zip(path: Path, members: list[tuple]) -> Path:
    manifest = json.dumps({"format": "compression-lab-published", "version": 1, "files": {}})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", manifest)
        for member in members:
            if isinstance(member, zipfile.ZipInfo):
                zf.writestr(member, "/etc/passwd")
            else:
                zf.writestr(*member)
    return path


def _symlink_member() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("bundles/teacher/model.safetensors")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.filterwarnings("ignore:Duplicate name")  # the duplicate member is the point of one case
@pytest.mark.parametrize("member, fragment", [
    (("../evil.txt", "x"), "unsafe path"),
    (("bundles/../../evil.txt", "x"), "unsafe path"),
    (("/tmp/evil-absolute.txt", "x"), "unsafe path"),
    (("C:/evil.txt", "x"), "unsafe path"),
    (_symlink_member(), "symbolic link"),
    (("manifest.json", "{}"), "twice"),
])
def test_hostile_zip_members_are_refused(tmp_path, member, fragment):
    work = tmp_path / "work"
    work.mkdir()
    path = _zip(work / "run.zip", [("results.json", "{}"), member])
    cache = work / "cache"
    with pytest.raises(LabError, match=fragment) as err:
        pub.open_published(path, cache=cache)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "evil.txt").exists() and not (work / "evil.txt").exists()
    assert not Path("/tmp/evil-absolute.txt").exists()
    assert not cache.exists() or not any(cache.iterdir())  # nothing extracted, no half-written folder left


def test_zip_bomb_and_size_limits(tmp_path, monkeypatch):
    bomb = _zip(tmp_path / "bomb.zip", [("bundles/teacher/weights.safetensors", b"\0" * 200_000)])
    monkeypatch.setattr(reading, "RATIO_MIN_BYTES", 100_000)  # the real limits are 200:1 above 10 MB
    with pytest.raises(LabError, match="zip bomb"):
        pub.open_published(bomb, cache=tmp_path / "cache")
    monkeypatch.setattr(reading, "RATIO_MIN_BYTES", 10_000_000)
    monkeypatch.setattr(reading, "MAX_TOTAL_BYTES", 100_000)
    with pytest.raises(LabError, match="would expand to"):
        pub.open_published(bomb, cache=tmp_path / "cache")
    monkeypatch.setattr(reading, "MAX_MEMBERS", 1)
    with pytest.raises(LabError, match="members"):
        pub.open_published(bomb, cache=tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_not_a_zip_and_zip_without_manifest(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(LabError, match="is not a zip file"):
        pub.open_published(bad, cache=tmp_path / "cache")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("hello.txt", "hi")
    (tmp_path / "plain.zip").write_bytes(buffer.getvalue())
    with pytest.raises(LabError, match="not a published run"):
        pub.open_published(tmp_path / "plain.zip", cache=tmp_path / "cache")
    assert os.listdir(tmp_path / "cache")  # extracted (safe), just not a run: nothing outside the cache
