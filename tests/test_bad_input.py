"""Bad input, case by case, in the CLI, the backend API and the app: each gets a clear message, and nothing is
lost or half-written. The closing note of issue 8 lists these cases with what each gets."""

import json

import pytest

from compression.bundle.folder import load_bundle
from compression.core.config import Recipe
from compression.core.errors import LabError
from compression.core.typed import from_dict
from compression.dashboard.views import MAX_UPLOAD_BYTES, parse_batch

from .conftest import run_cli, run_main

LONG = "good " * 20_000  # 100,000 characters
MIXED = ["🎬🍿 loved it 😍", "الفيلم رائع جدا", "映画は素晴らしい but the ending ... מרגש"]


@pytest.fixture(scope="module")
def store(served_app):
    return served_app[1] / "store"


@pytest.fixture(scope="module")
def teacher(store):
    rows = [json.loads(line) for line in run_main("list", "--json", "--store", str(store)).stdout.splitlines()]
    return load_bundle(next(r["bundle"] for r in rows if r["name"] == "teacher"))


def _error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-1500:]
    return lines[0]


# ------------------------------------------------------------------ CLI

@pytest.mark.parametrize("text", ["", "   \t  "], ids=["empty", "whitespace"])
def test_cli_predict_refuses_empty_text(store, text):
    assert "empty text" in _error_line(run_main("predict", "teacher", text, "--store", str(store)))


def test_cli_predict_long_text_is_truncated_and_says_so(store):
    result = run_main("predict", "teacher", LONG, "--store", str(store))
    assert result.returncode == 0 and "reads only the first 32" in result.stderr
    assert "(100,000 characters)" in result.stdout  # the echo is shortened too


def test_cli_predict_file_invalid_utf8_and_nul(store, tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("très bien\n".encode("latin-1"))
    assert "is not UTF-8" in _error_line(run_main("predict", "teacher", "--file", str(bad), "--store", str(store)))
    nul = tmp_path / "nul.txt"
    nul.write_bytes(b"fine\x00 words\n\nmore words\n")
    result = run_main("predict", "teacher", "--file", str(nul), "--store", str(store), "--json")
    assert result.returncode == 0 and [p["text"] for p in json.loads(result.stdout)] == ["fine words", "more words"]


def test_cli_predict_emoji_rtl_mixed_scripts(store):
    result = run_main("predict", "teacher", *MIXED, "--store", str(store), "--json")
    assert result.returncode == 0 and len(json.loads(result.stdout)) == 3


def test_cli_unknown_variant_and_traversal(store):
    for name in ("ghost", "../../etc/passwd"):
        assert "no finished variant named" in _error_line(run_main("predict", name, "hi", "--store", str(store)))


RECIPES = [
    ("name: r\nteachr: {}\n", "unknown key 'teachr'"),
    ("name: r\nprune: [{name: p, source: teacher, method: magnitude, sparsity: -0.5}]\n", "sparsity"),
    ("name: r\nstudents: [{name: s, distill: {temperature: 0}}]\n", "temperature"),
    ("name: r\nstudents: [{name: s, distill: {temperature: -2}}]\n", "temperature"),
    ("name: r\nstudents: [{name: s, distill: {alpha: 1.5}}]\n", "alpha"),
    ("name: r\nstudents: [{name: s, distill: {alpha: -0.1}}]\n", "alpha"),
    ("name: r\nstudents: [{name: ../../evil}]\n", "name"),
    ("name: ../escape\n", "name"),
]


@pytest.mark.parametrize("body, fragment", RECIPES, ids=[f"recipe-{i}" for i in range(len(RECIPES))])
def test_cli_bad_recipes(tmp_path, body, fragment):
    path = tmp_path / "r.yaml"
    path.write_text(body)
    line = _error_line(run_cli("build", str(path), "--store", str(tmp_path / "store")))
    assert fragment in line
    assert not (tmp_path / "store" / "artifacts").exists() or not any((tmp_path / "store" / "artifacts").iterdir())


DATA = [
    ("one.csv", "text,label\n" + "fine,pos\ngreat,pos\nlovely,pos\n" * 20, "only one class"),
    ("names.csv", "text,label\n" + "a,0\nb,1\nc,2\nd,2\n" * 20, "label"),  # 3 labels, 2 label_names
    ("latin.csv", "text,label\n" + "très,0\nbien,1\n" * 20, "is not UTF-8"),
    ("noheader.csv", "fine film,1\nawful film,0\n" * 20, "column"),
    ("semicolon.csv", "text;label\n" + "fine;1\nawful;0\n" * 20, "column"),
    ("missing.csv", "text\n" + "fine\nawful\n" * 20, "label column"),
]


@pytest.mark.parametrize("name, content, fragment", DATA, ids=[d[0] for d in DATA])
def test_cli_bad_data_files(tmp_path, tiny_model, name, content, fragment):
    path = tmp_path / name
    path.write_bytes(content.encode("latin-1") if name == "latin.csv" else content.encode())
    extra = "  label_names: [neg, pos]\n" if name == "names.csv" else ""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: r\ndata:\n  source: {path}\n{extra}teacher:\n  model: {tiny_model}\n")
    assert fragment in _error_line(run_cli("build", str(recipe), "--store", str(tmp_path / "store")))


def test_pickle_weights_refused_as_a_model_source(tmp_path, tiny_model):
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model, folder)
    for f in folder.glob("*.safetensors"):
        f.rename(folder / "pytorch_model.bin")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: r\nteacher:\n  model: {folder}\n")
    assert "safetensors" in _error_line(run_cli("build", str(recipe), "--store", str(tmp_path / "store")))


# ------------------------------------------------------------------ backend API

def test_api_empty_text_refused(teacher):
    for texts in ([""], ["fine", "  "]):
        with pytest.raises(LabError, match="is empty"):
            teacher.predict(texts)


def test_api_nul_long_and_mixed_scripts(teacher):
    assert teacher.predict(["a good\x00 film"])[0] == teacher.predict(["a good film"])[0]
    long = teacher.predict([LONG])[0]
    assert long.truncated and long.tokens > teacher.max_length
    assert not teacher.predict(["short"])[0].truncated
    assert all(p.label in teacher.labels for p in teacher.predict(MIXED))


def test_api_pickle_bundle_refused(teacher, tmp_path):
    import shutil

    folder = tmp_path / "b"
    shutil.copytree(teacher.folder, folder)
    (folder / "pytorch_model.bin").write_bytes(b"not even a pickle")
    with pytest.raises(LabError, match="only safetensors are loaded"):
        load_bundle(folder)


def test_api_recipe_values(tmp_path):
    for data, fragment in [({"name": "r", "bogus": 1}, "unknown key"),
                           ({"name": "r", "prune": [{"name": "p", "source": "teacher", "sparsity": -1}]}, "sparsity"),
                           ({"name": "r", "students": [{"name": "s", "distill": {"temperature": 0}}]}, "temperature"),
                           ({"name": "r", "students": [{"name": "s", "distill": {"alpha": 2}}]}, "alpha")]:
        with pytest.raises((ValueError, LabError), match=fragment):
            from_dict(Recipe, data)


@pytest.mark.parametrize("content, message", [
    (b"review|stars\nfine|5\n", "text column"),                 # wrong delimiter
    (b"fine film\nawful film\n", "text column"),                # no header
    ("text\ntr\xe8s\n".encode("latin-1"), "not UTF-8"),         # non-UTF-8
    (b"text,label\nfine,1,extra\n", "more fields than the header"),  # extra column
    (b"label\n1\n", "text column"),                             # missing column
], ids=["delimiter", "no-header", "latin-1", "extra-column", "missing-column"])
def test_api_batch_upload_errors(tmp_path, content, message):
    path = tmp_path / "up.csv"
    path.write_bytes(content)
    with pytest.raises(LabError, match=message):
        parse_batch("", str(path))


def test_api_batch_upload_size_and_count_limits(tmp_path):
    big = tmp_path / "big.csv"
    big.write_bytes(b"text\n" + b"x" * (MAX_UPLOAD_BYTES + 1))
    with pytest.raises(LabError, match="larger than"):
        parse_batch("", str(big))
    with pytest.raises(LabError, match="at most 500"):
        parse_batch("\n".join(f"text {i}" for i in range(501)), None)


# ------------------------------------------------------------------ the app, through its API

@pytest.fixture(scope="module")
def client(served_app):
    from gradio_client import Client

    return Client(served_app[0], verbose=False)


@pytest.mark.parametrize("text", ["", "   \n\t "], ids=["empty", "whitespace"])
def test_app_empty_text(client, text):
    with pytest.raises(Exception, match="Type a sentence first"):
        client.predict(text, api_name="/predict")


def test_app_long_nul_and_mixed_text(client):
    page, note = client.predict(LONG, api_name="/predict")
    assert page.count("<tr") == 3 and "truncated to its first 5,000 characters" in note
    assert "the models read only the first 32" in note
    page, note = client.predict("a fine\x00 film", api_name="/predict")
    assert page.count("<tr") == 3 and note == ""
    for text in MIXED:
        assert client.predict(text, api_name="/predict")[0].count("<tr") == 3


@pytest.mark.parametrize("content, message", [
    ("text\ntr\xe8s\n".encode("latin-1"), "not UTF-8"),
    (b"review|stars\nfine|5\n", "text column"),
    (b"text\n" + b"x" * (MAX_UPLOAD_BYTES + 10), "(larger than|too large|exceeds|maximum)"),
], ids=["latin-1", "delimiter", "over-limit"])
def test_app_batch_upload_errors(client, tmp_path, content, message):
    from gradio_client import handle_file

    path = tmp_path / "up.csv"
    path.write_bytes(content)
    with pytest.raises(Exception, match=message):
        client.predict("", handle_file(str(path)), api_name="/batch")


def test_app_refuses_paths_from_visitors(client):
    with pytest.raises(Exception, match="(Choose the recipe|not in the list of choices)"):
        client.predict("../../../../etc/passwd", "embedded:mpnet-base", "embedded:rotten-tomatoes", 200, [], [],
                       api_name="/build")
    with pytest.raises(Exception, match="(Choose a variant|not in the list of choices)"):
        client.predict("../../../../etc", api_name="/bundle")
