"""Selection that matches the test: a recipe's selection set is split once, seeded, into a tuning half that replaces
validation (checkpoints are chosen on it) and a reporting half every variant is scored on (the held-out figure; a
build that scores it: tests/test_hidden_states.py)."""

from __future__ import annotations

import pytest

from compression.core.config import DataConfig
from compression.core.errors import LabError
from compression.data.loading import load_data

from .conftest import synthetic_rows


def _write(path, rows):
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    return path


@pytest.fixture()
def selection(tmp_path, tiny_data):
    test = set((tiny_data / "test.tsv").read_text().splitlines()[1:])
    rows = [r for r in synthetic_rows(120, seed=7) if f"{r[0]}\t{r[1]}" not in test]
    return _write(tmp_path / "selection.tsv", rows), rows


def test_selection_halves_replace_validation_and_hold_out_the_rest(tiny_data, selection):
    path, rows = selection
    plain = load_data(DataConfig(source=str(tiny_data)))
    data = load_data(DataConfig(source=str(tiny_data), selection=str(path), seed=3))
    tuning, reporting = data.splits["validation"], data.heldout
    assert len(tuning) == len(rows) // 2 and len(tuning) + len(reporting) == len(rows)
    assert sorted(zip([*tuning["text"], *reporting["text"]], [*tuning["label"], *reporting["label"]])) == sorted(rows)
    assert data.selection == {"source": str(path), "seed": 3, "tuning": len(tuning), "reporting": len(reporting)}
    assert "tuning half" in data.summary() and "reporting half" in data.summary()
    assert list(data.splits["train"]["text"]) == list(plain.splits["train"]["text"])  # train and test untouched
    assert list(data.splits["test"]["text"]) == list(plain.splits["test"]["text"])
    again = load_data(DataConfig(source=str(tiny_data), selection=str(path), seed=3))
    assert list(again.splits["validation"]["text"]) == list(tuning["text"]) and again.fingerprint == data.fingerprint
    other = load_data(DataConfig(source=str(tiny_data), selection=str(path), seed=4))
    assert list(other.splits["validation"]["text"]) != list(tuning["text"]) and other.fingerprint != data.fingerprint
    assert plain.heldout is None and plain.fingerprint not in (data.fingerprint, other.fingerprint)


def test_selection_sharing_a_test_text_is_refused(tiny_data, tmp_path):
    test_line = (tiny_data / "test.tsv").read_text().splitlines()[1]
    text, label = test_line.split("\t")
    path = _write(tmp_path / "s.tsv", synthetic_rows(30, seed=9) + [(text.upper() + " !", int(label))])
    with pytest.raises(LabError, match=r"shares 1 texts with the test split .*never select on the data you report"):
        load_data(DataConfig(source=str(tiny_data), selection=str(path)))


def test_selection_with_labels_the_data_lacks_is_refused(tiny_data, tmp_path):
    path = _write(tmp_path / "s.tsv", [("a fine film", 0), ("a dull plot", 7)])
    with pytest.raises(LabError, match=r"labels \['7'\] are not labels of"):
        load_data(DataConfig(source=str(tiny_data), selection=str(path)))


def test_sst2_sentences_test_is_a_fair_selection_set_for_sst2(shared_data):
    data = load_data(DataConfig(source=str(shared_data / "sst2"),
                                selection=str(shared_data / "sst2-sentences" / "test.tsv")))
    assert (len(data.splits["validation"]), len(data.heldout)) == (910, 911)
    assert len(data.splits["test"]) == 872  # checked apart from it: no shared sentence
    with pytest.raises(LabError, match="shares 872 texts with the test split"):  # the SST dev sentences again
        load_data(DataConfig(source=str(shared_data / "sst2"),
                             selection=str(shared_data / "sst2-sentences" / "validation.tsv")))
