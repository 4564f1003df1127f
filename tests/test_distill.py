import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from compression.bundle.folder import load_bundle, save_bundle
from compression.core.config import DataConfig, DistillConfig, StudentConfig, TrainConfig
from compression.core.errors import LabError
from compression.data.loading import load_data
from compression.data.sources import load_tokenizer_and_model
from compression.training.distill import build_student, curve_advice, keep_layers, shares_tokenizer, tokenize, train
from compression.training.teacher_targets import teacher_logits

from .conftest import ROOT, make_tiny_backbone, run_cli, run_main

FAST = dict(batch_size=16, learning_rate=3e-3, warmup_ratio=0.0)


@pytest.fixture(scope="module")
def data(tiny_data):
    return load_data(DataConfig(source=str(tiny_data)))


@pytest.fixture(scope="module")
def teacher_dir(tiny_teacher):
    """The session's tiny teacher (fine-tuned once for every test file that needs one)."""
    return tiny_teacher


def test_teacher_learns_the_task(teacher_dir, data):
    preds = load_bundle(teacher_dir).logits(data.splits["test"]["text"]).argmax(1)
    assert (preds == np.array(data.splits["test"]["label"])).mean() > 0.85


def test_teacher_logits_are_cached(teacher_dir, data, tmp_path):
    first = teacher_logits(teacher_dir, data, tmp_path)
    files = list(tmp_path.glob("teacher-logits-*.npz"))
    assert len(files) == 1 and first["test"].shape == (80, 2) and first["train"].shape == (200, 2)
    stamp = files[0].stat().st_mtime_ns
    second = teacher_logits(teacher_dir, data, tmp_path)
    assert files[0].stat().st_mtime_ns == stamp  # read, not recomputed
    assert all(np.array_equal(first[s], second[s]) for s in first)


def test_teacher_logits_take_the_test_logits_the_teacher_stage_computed(teacher_dir, data, tmp_path):
    computed = load_bundle(teacher_dir).logits(data.splits["test"]["text"], batch_size=64)
    fresh = teacher_logits(teacher_dir, data, tmp_path / "a")
    np.testing.assert_allclose(computed, fresh["test"], atol=1e-5)  # the same logits: no need to compute twice
    marked = computed + 100.0
    given = teacher_logits(teacher_dir, data, tmp_path / "b", known={"test": marked})
    assert np.array_equal(given["test"], marked) and np.allclose(given["train"], fresh["train"], atol=1e-5)


def test_keep_layers_copies_the_chosen_layers(tiny_model):
    _, model = load_tokenizer_and_model(str(tiny_model), ["a", "b"])
    smaller = keep_layers(model, [1])
    assert smaller.config.num_hidden_layers == 1
    assert sum(p.numel() for p in smaller.parameters()) < sum(p.numel() for p in model.parameters())
    assert torch.equal(smaller.bert.encoder.layer[0].output.dense.weight, model.bert.encoder.layer[1].output.dense.weight)
    ids = torch.tensor([[2, 5, 6, 3]])
    assert smaller(input_ids=ids).logits.shape == model(input_ids=ids).logits.shape
    with pytest.raises(LabError, match="layers 0..1"):
        keep_layers(model, [0, 5])


def test_distillation_raises_agreement_across_vocabularies(teacher_dir, data, tmp_path):
    """A student with its own vocabulary learns the teacher's decisions from logits alone (alpha = 0: no labels)."""
    other = make_tiny_backbone(tmp_path / "other", seed=1, extra_vocab=["zebra", "quark", "aardvark", "abacus"])
    cfg = StudentConfig(name="s", init="pretrained", model=str(other), max_length=32,
                        distill=DistillConfig(alpha=0.0, temperature=1.0), train=TrainConfig(epochs=6, **FAST))
    tokenizer, student = build_student(cfg, teacher_dir, data.labels)
    assert not shares_tokenizer(tokenizer, load_bundle(teacher_dir).tokenizer)
    logits = teacher_logits(teacher_dir, data, tmp_path / "cache")
    teacher_test = logits["test"].argmax(1)

    def agreement(model):
        bundle = save_bundle(model, tokenizer, tmp_path / "probe", name="s", kind="student", labels=data.labels,
                             max_length=32)
        return float((load_bundle(bundle).logits(data.splits["test"]["text"]).argmax(1) == teacher_test).mean())

    before = agreement(student)
    student = train(student, tokenizer, tokenize(data, tokenizer, 32, logits), cfg.train, tmp_path / "w", seed=0,
                    name="s", distill=cfg.distill)
    after = agreement(student)
    assert after > before and after >= 0.85, (before, after)


def test_curve_advice_reads_the_validation_curve():
    rising = [(100, 0.90), (200, 0.904), (300, 0.911), (400, 0.915)]  # the last SST-2 build's tuning curve, in shape
    assert curve_advice("s", rising, 400) == ("s: validation accuracy still rising at the end "
                                              "(90.4 -> 91.1 -> 91.5 %): more epochs may pay")
    early = [(100, 0.90), (200, 0.93), (300, 0.92), (400, 0.925)]
    assert "peaked at step 200 of 400" in curve_advice("s", early, 400)
    tied = [(100, 0.90), (200, 0.93), (300, 0.93), (400, 0.91)]  # the Trainer keeps the first of tied maxima
    assert "peaked at step 200" in curve_advice("s", tied, 400)
    assert curve_advice("s", [(100, 0.90), (200, 0.91), (300, 0.93), (400, 0.92)], 400) is None  # late peak: fine
    assert curve_advice("s", [(100, 0.90), (200, 0.95), (300, 0.91)], 300) is None  # too few points to tell


@pytest.mark.parametrize("teacher_width", [48, 32], ids=["wider-teacher-projected", "same-width-unprojected"])
def test_hidden_distillation_projects_only_across_widths(data, tiny_model, tmp_path, monkeypatch, teacher_width):
    """Hidden-state distillation from a teacher of another width (same tokenizer) trains one projection per layer
    pair with the student and drops it from the returned model; at equal widths there is no projection."""
    import compression.training.distill as distill
    from compression.training.losses import hidden_mse

    backbone = make_tiny_backbone(tmp_path / "teacher", hidden=teacher_width, seed=2)  # same vocabulary
    tokenizer, student = load_tokenizer_and_model(str(tiny_model), data.labels)
    teacher_tokenizer, teacher = load_tokenizer_and_model(str(backbone), data.labels)
    assert shares_tokenizer(tokenizer, teacher_tokenizer) and teacher.config.hidden_size == teacher_width
    calls = []  # (loss, projection, its weights then), one per student layer per training step

    def spy(student_hidden, teacher_hidden, mask, projection=None):
        loss = hidden_mse(student_hidden, teacher_hidden, mask, projection)
        calls.append((loss.item(), projection, None if projection is None else projection.weight.detach().clone()))
        return loss

    monkeypatch.setattr(distill, "hidden_mse", spy)
    trained = train(student, tokenizer, tokenize(data, tokenizer, 32), TrainConfig(epochs=3, **FAST), tmp_path / "w",
                    seed=0, name="s", distill=DistillConfig(alpha=0.5, hidden_weight=1.0), teacher_model=teacher)
    assert len(calls) >= 20
    losses = [c[0] for c in calls]
    assert sum(losses[-4:]) < sum(losses[:4]), (losses[:4], losses[-4:])  # the hidden-state loss falls
    projections = {id(c[1]): c[1] for c in calls}
    if teacher_width == student.config.hidden_size:
        assert list(projections.values()) == [None]
    else:
        assert len(projections) == 2  # one per student layer
        for projection in projections.values():
            assert (projection.in_features, projection.out_features) == (32, teacher_width)
            seen = [c[2] for c in calls if c[1] is projection]
            assert not torch.equal(seen[0], seen[-1])  # it received gradients and was trained
    assert not hasattr(trained, "distill_projections")
    assert not any("distill_projections" in k for k in trained.state_dict())
    ids = tokenizer(["a good film"], return_tensors="pt")
    assert trained(**ids).logits.shape == (1, 2)


def _recipe(path, tiny_data, tiny_model, students: str) -> str:
    path.write_text(
        f"name: tiny\ndata: {{source: {tiny_data}}}\n"
        # a confident teacher (8 epochs): with a weak one, agreement is noise and the check below flakes
        f"teacher: {{model: {tiny_model}, max_length: 32,\n"
        f"          train: {{epochs: 8, batch_size: 16, learning_rate: 0.003, warmup_ratio: 0.0}}}}\n"
        f"students:\n{students}")
    return str(path)


def test_build_teacher_and_students_end_to_end(tiny_data, tiny_model, tmp_path):
    students = (
        "  - {name: half, init: teacher-layers, max_length: 32, train: {epochs: 4, batch_size: 16, learning_rate: 0.003}}\n"
        f"  - {{name: one, init: pretrained-layers, model: {tiny_model}, layers: [0], max_length: 32,\n"
        "     distill: {alpha: 0.2, hidden_weight: 1.0, attention_weight: 1.0},\n"
        "     train: {epochs: 3, batch_size: 16, learning_rate: 0.003}}\n")
    again = students.splitlines(keepends=True)[1:]  # "one" once more, after it: a student is its recipe line's alone
    recipe = _recipe(tmp_path / "r.yaml", tiny_data, tiny_model, students + "".join(again).replace("one,", "again,"))
    result = run_cli("build", recipe, "--store", str(tmp_path / "store"))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["name"]: r for r in map(json.loads, run_main("list", "--json", "--store", str(tmp_path / "store"))
                                      .stdout.splitlines())}
    assert set(rows) == {"teacher", "half", "one", "again"}
    one, again = (load_bundle(rows[n]["bundle"]).model.state_dict() for n in ("one", "again"))
    assert all(torch.equal(one[k], again[k]) for k in one)  # a new head starts from the seed, not where "half" left it
    assert rows["half"]["parent"] == "teacher" and rows["half"]["kind"] == "student"
    for row in rows.values():
        assert row["accuracy"] is not None and row["metrics"]["agreement"] is not None
    assert rows["teacher"]["metrics"]["agreement"] == 1.0
    assert rows["half"]["metrics"]["agreement"] > 0.5  # above chance; learning itself is tested above
    half = load_bundle(rows["half"]["bundle"])
    assert half.model.config.num_hidden_layers == 1  # every other layer of the 2-layer teacher
    assert not any("distill_projections" in k for k in load_bundle(rows["one"]["bundle"]).model.state_dict())
    assert not (tmp_path / "store" / "work").exists()  # training checkpoints cleaned up


def test_torchrun_two_cpu_processes(tiny_data, tiny_model, tmp_path):
    """Scale-out: the same build under torchrun with 2 processes (gloo) finishes and saves each student once."""
    students = "  - {name: half, init: teacher-layers, max_length: 32, train: {epochs: 2, batch_size: 8}}\n"
    recipe = _recipe(tmp_path / "r.yaml", tiny_data, tiny_model, students)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "compression", "build", recipe,
                             "--store", str(tmp_path / "store")],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(r) for r in run_main("list", "--json", "--store", str(tmp_path / "store")).stdout.splitlines()]
    assert sorted(r["name"] for r in rows) == ["half", "teacher"]
    runs = list((tmp_path / "store" / "artifacts").iterdir())
    assert [p.name for p in runs] == ["run-1"]
    assert sorted(p.name for p in runs[0].iterdir()) == ["half", "teacher"]
