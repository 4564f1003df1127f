"""Hidden-state distillation across tokenizers that cut texts alike: token alignment, the teacher's first-token
states cached in its logits pass, and students that learn them with the teacher out of the loop."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from compression.bundle.folder import load_bundle
from compression.core.config import DataConfig, DistillConfig, TrainConfig
from compression.core.errors import LabError
from compression.data.align import MAX_MISMATCH, alignment, check_alignment, id_map
from compression.data.augment import swapped_pairs
from compression.data.loading import load_data
from compression.data.sources import load_tokenizer_and_model
from compression.training.distill import CachedStates, tokenize, train
from compression.training.teacher_targets import teacher_logits, teacher_states

from .conftest import make_tiny_backbone, run_cli, run_main, synthetic_pairs

FAST = dict(batch_size=16, learning_rate=3e-3, warmup_ratio=0.0)


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    """A backbone whose vocabulary has one extra word sorting first: every id is 1 higher than tiny_model's, the
    pieces are the same (like MiniLM and MPNet). It is also wider (48) and has 1 layer."""
    return make_tiny_backbone(tmp_path_factory.mktemp("shifted") / "m", hidden=48, layers=1, seed=3,
                              extra_vocab=["aaa"])


def _tokenizer(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def test_id_map_matches_pieces_by_string_not_by_id(tiny_model, shifted):
    student, teacher = _tokenizer(tiny_model), _tokenizer(shifted)
    mapping = id_map(student, teacher)
    good = student.convert_tokens_to_ids("good")
    assert mapping[good] == good + 1 == teacher.convert_tokens_to_ids("good")
    texts = ["the film was good", ("a dull plot", "great acting")]
    assert alignment(student, teacher, texts[:1]).mismatched == 0
    assert alignment(student, teacher, texts[1:]).mismatched == 0  # a pair: both texts compared


def test_alignment_counts_texts_cut_differently(tiny_model, tmp_path):
    student = _tokenizer(make_tiny_backbone(tmp_path / "few", drop_vocab=["good", "dull"]))
    teacher = _tokenizer(tiny_model)
    texts = ["the film was good", "the plot was dull", "great acting", "a fine cast"]
    found = alignment(student, teacher, texts)
    assert (found.texts, found.mismatched, found.example) == (4, 2, "the film was good")
    assert found.rate == 0.5 and "2 tokenized differently (50.00 %)" in found.summary()
    with pytest.raises(LabError, match=r"2 tokenized differently .* above the 1 % allowed .*hidden_weight to 0"):
        check_alignment(student, teacher, texts, "s")
    assert check_alignment(student, teacher, texts[2:], "s").mismatched == 0
    assert MAX_MISMATCH == 0.01


def test_outputs_give_the_first_token_state_of_the_same_pass(tiny_teacher):
    teacher = load_bundle(tiny_teacher)
    texts = ["the film was good", "a dull and tedious plot with a weak ending", "great"]
    logits, states = teacher.outputs(texts, batch_size=2, layers=[1, 2])
    assert states.shape == (3, 2, 32) and states.dtype == np.float16
    np.testing.assert_allclose(logits, teacher.logits(texts), atol=1e-4)
    with torch.inference_mode():
        enc = teacher.tokenizer(texts[1:2], return_tensors="pt")
        hidden = teacher.model(**enc, output_hidden_states=True).hidden_states
    np.testing.assert_allclose(states[1], torch.stack([hidden[1][0, 0], hidden[2][0, 0]]).numpy(), atol=2e-2)


def test_states_are_cached_in_the_logits_pass(tiny_teacher, tiny_data, tmp_path, monkeypatch):
    data = load_data(DataConfig(source=str(tiny_data)))
    texts = list(data.splits["train"]["text"])
    teacher_logits(tiny_teacher, data, tmp_path, layers=[2])
    assert len(list(tmp_path.glob("teacher-states-*.npz"))) == 1

    import compression.training.teacher_targets as teacher_targets

    def no_pass(*args, **kwargs):
        raise AssertionError("the teacher ran again")

    monkeypatch.setattr(teacher_targets, "load_bundle", no_pass)
    states = teacher_states(tiny_teacher, texts, [2], tmp_path)  # read from the logits pass's cache
    assert states.shape == (len(texts), 1, 32)
    teacher_logits(tiny_teacher, data, tmp_path, layers=[2])  # both caches hit
    monkeypatch.undo()
    other = teacher_states(tiny_teacher, texts[:5], [2], tmp_path)  # other texts: their own pass, same values
    np.testing.assert_allclose(other.astype(np.float32), states[:5].astype(np.float32), atol=2e-2)


def test_cached_states_standardise_per_dimension():
    rng = np.random.default_rng(0)
    states = rng.normal(size=(500, 3, 8)).astype(np.float16)
    states[:, :, 0] *= 300  # an outlier channel, like MPNet's
    cached = CachedStates(states, [4, 8, 12], [8, 12])
    assert cached.values.shape == (500, 2, 8) and cached.layer_map == [8, 12]
    targets = cached.targets(torch.arange(500))
    assert torch.allclose(targets.mean(0), torch.zeros(2, 8), atol=1e-3)
    assert torch.allclose(targets.std(0, unbiased=False), torch.ones(2, 8), atol=1e-2)
    with pytest.raises(LabError, match=r"teacher layers \[6\] are not in the cached states"):
        CachedStates(states, [4, 8, 12], [6, 12])


def test_student_learns_cached_states_with_the_teacher_out_of_the_loop(tiny_teacher, tiny_data, shifted, tmp_path,
                                                                       monkeypatch):
    """The hidden-state loss falls, the projection (48 -> 32) trains and is dropped from the returned model."""
    import compression.training.distill as distill
    from compression.training.losses import hidden_mse

    data = load_data(DataConfig(source=str(tiny_data)))
    logits = teacher_logits(tiny_teacher, data, tmp_path / "cache", layers=[2])
    states = CachedStates(teacher_states(tiny_teacher, list(data.splits["train"]["text"]), [2], tmp_path / "cache"),
                          [2], [2])
    tokenizer, student = load_tokenizer_and_model(str(shifted), data.labels)
    calls = []

    def spy(student_hidden, teacher_hidden, mask, projection=None):
        loss = hidden_mse(student_hidden, teacher_hidden, mask, projection)
        calls.append((loss.item(), projection.weight.detach().clone()))
        return loss

    monkeypatch.setattr(distill, "hidden_mse", spy)
    trained = train(student, tokenizer, tokenize(data, tokenizer, 32, logits, rows=True),
                    TrainConfig(epochs=4, **FAST), tmp_path / "w", seed=0, name="s",
                    distill=DistillConfig(alpha=0.5, hidden_weight=1.0), states=states)
    assert len(calls) >= 40  # 13 steps an epoch, training only (validation batches have no rows)
    losses = [c[0] for c in calls]
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5]), (losses[:5], losses[-5:])
    assert calls[0][1].shape == (32, 48) and not torch.equal(calls[0][1], calls[-1][1])
    assert not any("distill_projections" in k for k in trained.state_dict())


def _build(tmp_path, data, teacher, students: str, selection=None):
    recipe = tmp_path / "r.yaml"
    chosen = f", selection: {selection}" if selection else ""
    recipe.write_text(f"name: r\ndata: {{source: {data}{chosen}}}\n"
                      f"teacher: {{model: {teacher}, max_length: 32, train: {{epochs: 2, batch_size: 16, "
                      f"learning_rate: 3.0e-3, warmup_ratio: 0.0}}}}\nstudents:\n{students}")
    return run_cli("build", str(recipe), "--store", str(tmp_path / "store"))


def test_build_on_augmented_pairs_distills_first_token_states_across_tokenizers(tiny_pair_data, tiny_model,
                                                                                shifted, tmp_path):
    """A pair task with teacher-labelled swapped pairs and copies of its pairs: the student (another, aligned
    tokenizer) learns the teacher's first-token states of every training pair, the data's from the logits pass and
    the new pairs' from their labelling pass. Checkpoints are chosen on a selection set's tuning half; every variant
    is scored on its reporting half (tests/test_selection.py covers the split itself)."""
    test = set((tiny_pair_data / "test.tsv").read_text().splitlines())
    selection = tmp_path / "selection.tsv"
    selection.write_text("sentence1\tsentence2\tlabel\n" + "".join(
        f"{a}\t{b}\t{y}\n" for a, b, y in synthetic_pairs(120, seed=21) if f"{a}\t{b}\t{y}" not in test))
    result = _build(tmp_path, tiny_pair_data, tiny_model,
                    f"  - {{name: s, model: {shifted}, max_length: 32, distill: {{hidden_weight: 1.0}},\n"
                    f"     train: {{epochs: 2, batch_size: 16, learning_rate: 3.0e-3}}}}\n"
                    "augment: {copies: 1, swap: true, min_words: 3, replace: 0.5, neighbours: 3}\n",
                    selection=selection)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    reporting = len(selection.read_text().splitlines()) - 1 - (len(selection.read_text().splitlines()) - 1) // 2
    assert f"reporting half ({reporting}) is scored as held-out" in log, log
    assert "first-token states at layers [2]" in log and "MB on disk" in log, log
    train = [tuple(line.split("\t")[:2]) for line in (tiny_pair_data / "train.tsv").read_text().splitlines()[1:]]
    evaluated = {tuple(line.split("\t")[:2]) for line in test | set(selection.read_text().splitlines())}
    swapped = swapped_pairs(train, avoid=evaluated)
    extra = int(re.search(r"augment: ([\d,]+) teacher-labelled texts join the 240 training texts", log)[1])
    assert 200 <= len(swapped) <= 240 and 100 <= extra - len(swapped) <= 240  # the swapped pairs, then the copies
    assert (f"token alignment with the teacher: {240 + extra} texts, 0 tokenized differently (0.00 %)" in log), log
    cache = tmp_path / "store" / "cache"
    assert len(list(cache.glob("teacher-states-*.npz"))) == 2  # the data's pairs, the new pairs
    with np.load(next(cache.glob("augmented-*.npz"))) as saved:
        pairs = json.loads(saved["texts"].tobytes().decode())
    assert len(pairs) == extra and all(isinstance(p, list) and len(p) == 2 and all(p) for p in pairs)
    assert pairs[:len(swapped)] == [list(p) for p in swapped]
    rows = {r["name"]: r for r in map(json.loads, run_main("list", "--json", "--store", str(tmp_path / "store"))
                                      .stdout.splitlines())}
    bundle = load_bundle(rows["s"]["bundle"])
    assert bundle.pair and bundle.meta["hidden_states"] == {
        "alignment": {"texts": 240 + extra, "mismatched": 0}, "positions": "first token", "layer_map": [2]}
    assert not any("distill_projections" in k for k in bundle.model.state_dict())
    for row in rows.values():
        low, high = row["heldout_accuracy_ci"]
        assert low <= row["heldout_accuracy"] <= high and row["metrics"]["heldout_examples"] == reporting
        assert 0 < row["mcnemar_p_vs_teacher"] <= 1  # beside the CI in every table
    table = run_main("list", "--markdown", "--store", str(tmp_path / "store")).stdout
    assert "| held-out % (95% CI) |" in table.splitlines()[0]
    assert f"{rows['teacher']['heldout_accuracy'] * 100:.1f} (" in table
    assert rows["teacher"]["mcnemar_p_vs_teacher"] == 1.0 and "| McNemar p |" in table.splitlines()[0]


def test_build_refuses_a_tokenizer_that_cuts_texts_differently(tiny_data, tiny_model, tmp_path):
    other = make_tiny_backbone(tmp_path / "few", drop_vocab=["good", "bad"])
    result = _build(tmp_path, tiny_data, tiny_model,
                    f"  - {{name: s, model: {other}, max_length: 32, distill: {{hidden_weight: 1.0}}}}\n")
    assert result.returncode == 1
    assert "tokenized differently" in result.stderr and "hidden_weight to 0" in result.stderr
    assert "Traceback" not in result.stderr
    assert "loading teacher" not in result.stdout + result.stderr  # refused before the teacher's fine-tune


def test_attention_distillation_still_needs_the_teachers_tokenizer(tiny_data, tiny_model, shifted, tmp_path):
    result = _build(tmp_path, tiny_data, tiny_model,
                    f"  - {{name: s, model: {shifted}, max_length: 32, distill: {{attention_weight: 1.0}}}}\n")
    assert result.returncode == 1
    assert "attention distillation needs the teacher's tokenizer" in result.stderr
    assert "Traceback" not in result.stderr and "loading teacher" not in result.stdout + result.stderr


def test_augmented_and_transfer_texts_get_their_states_in_their_labelling_pass(tiny_teacher, tiny_data, tmp_path,
                                                                              monkeypatch):
    from compression.core.config import AugmentConfig
    from compression.training.teacher_targets import teacher_augmented, teacher_transfer

    train = list(load_data(DataConfig(source=str(tiny_data))).splits["train"]["text"])
    texts, logits = teacher_augmented(tiny_teacher, train, AugmentConfig(copies=1, min_words=6), seed=0,
                                      cache_dir=tmp_path, layers=[1, 2])
    transfer = ["a quite dull film", "the cast was great and the plot was clever"]
    teacher_transfer(tiny_teacher, transfer, tmp_path, layers=[1, 2])
    assert len(texts) > 50 and len(list(tmp_path.glob("teacher-states-*.npz"))) == 2

    import compression.training.teacher_targets as teacher_targets

    monkeypatch.setattr(teacher_targets, "load_bundle", lambda *a, **k: pytest.fail("the teacher ran again"))
    assert teacher_states(tiny_teacher, texts, [1, 2], tmp_path).shape == (len(texts), 2, 32)
    assert teacher_states(tiny_teacher, transfer, [1, 2], tmp_path).shape == (2, 2, 32)
