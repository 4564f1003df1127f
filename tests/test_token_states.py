"""Every token's teacher states, cached in its labelling pass and learned across aligned tokenizers; and weight
averaging (EMA): validated, chosen, saved with every checkpoint and resumed."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from compression.bundle.folder import load_bundle, token_positions
from compression.core.config import DataConfig, DistillConfig, TrainConfig
from compression.data.loading import load_data
from compression.data.sources import load_tokenizer_and_model
from compression.training.averaging import FILE, EMACallback
from compression.training.cached_states import CachedStates, CachedTokenStates
from compression.training.distill import tokenize, train
from compression.training.teacher_targets import TokenStates, _TokenStatesWriter, teacher_logits, teacher_states

from .conftest import make_tiny_backbone

FAST = dict(batch_size=16, learning_rate=3e-3, warmup_ratio=0.0)


def test_token_positions_drop_the_doubled_separator_of_a_pair():
    """``<s> A </s></s> B </s>`` (MPNet, RoBERTa) keeps the positions of ``[CLS] A [SEP] B [SEP]``; padding goes."""
    ids = torch.tensor([0, 7, 8, 2, 2, 9, 2, 1])
    mask = torch.tensor([1, 1, 1, 1, 1, 1, 1, 0])
    assert token_positions(ids, mask, sep_id=2) == [0, 1, 2, 3, 5, 6]
    assert token_positions(ids, mask, sep_id=None) == [0, 1, 2, 3, 4, 5, 6]
    assert token_positions(torch.tensor([0, 7, 2, 1]), torch.tensor([1, 1, 1, 0]), sep_id=2) == [0, 1, 2]


def test_outputs_with_tokens_give_every_real_tokens_states_of_the_same_pass(tiny_teacher):
    teacher = load_bundle(tiny_teacher)
    texts = ["the film was good", "a dull and tedious plot with a weak ending", "great"]
    logits, states = teacher.outputs(texts, batch_size=3, layers=[1, 2], tokens=True)  # padded together
    np.testing.assert_allclose(logits, teacher.logits(texts), atol=1e-4)
    _, firsts = teacher.outputs(texts, batch_size=3, layers=[1, 2])
    for text, got, first in zip(texts, states, firsts):
        with torch.inference_mode():
            enc = teacher.tokenizer([text], return_tensors="pt")
            hidden = teacher.model(**enc, output_hidden_states=True).hidden_states
        assert got.dtype == np.float16 and got.shape == (enc["input_ids"].shape[1], 2, 32)
        np.testing.assert_allclose(got, torch.stack([hidden[1][0], hidden[2][0]], 1).numpy(), atol=2e-2)
        np.testing.assert_array_equal(got[0], first)


def test_token_states_are_cached_in_the_logits_pass(tiny_teacher, tiny_data, tmp_path, monkeypatch):
    data = load_data(DataConfig(source=str(tiny_data)))
    texts = list(data.splits["train"]["text"])
    teacher_logits(tiny_teacher, data, tmp_path, layers=[1, 2], tokens=True)
    folders = list(tmp_path.glob("teacher-token-states-*"))
    assert len(folders) == 1 and sorted(p.name for p in folders[0].iterdir()) == ["meta.json", "offsets.npy",
                                                                                 "values.f16"]
    assert not list(tmp_path.glob("*.tmp*"))  # written in a temp folder, renamed when complete

    import compression.training.teacher_targets as teacher_targets

    monkeypatch.setattr(teacher_targets, "load_bundle", lambda *a, **k: pytest.fail("the teacher ran again"))
    states = teacher_states(tiny_teacher, texts, [1, 2], tmp_path, tokens=True)
    assert isinstance(states, TokenStates) and len(states) == len(texts) and states.layers == (1, 2)
    lengths = np.diff(states.offsets)
    tokenizer = load_bundle(tiny_teacher).tokenizer
    assert list(lengths[:20]) == [len(tokenizer(t)["input_ids"]) for t in texts[:20]]
    monkeypatch.undo()
    firsts = teacher_states(tiny_teacher, texts, [1, 2], tmp_path)  # the first-token cache: its own pass
    np.testing.assert_allclose(states.first().astype(np.float32), firsts.astype(np.float32), atol=2e-2)


def test_labelling_passes_run_in_bf16_where_the_cpu_has_it(tiny_teacher, tiny_data, tmp_path, monkeypatch):
    """Where the CPU computes bf16 natively the labelling passes run under bf16 autocast (and say so); the targets
    stay close to fp32's and the teacher's scored splits stay fp32."""
    import compression.training.teacher_targets as teacher_targets

    data = load_data(DataConfig(source=str(tiny_data)))
    texts = list(data.splits["train"]["text"])
    fp32 = teacher_logits(tiny_teacher, data, tmp_path / "fp32", layers=[1, 2])
    monkeypatch.setattr(teacher_targets, "labelling_bf16", lambda: True)
    teacher = load_bundle(tiny_teacher)
    calls, messages = [], []
    outputs = type(teacher).outputs
    monkeypatch.setattr(type(teacher), "outputs", lambda self, *a, **k: calls.append(k.get("bf16"))
                        or outputs(self, *a, **k))
    bf16 = teacher_logits(tiny_teacher, data, tmp_path / "bf16", lambda f, m: messages.append(m), layers=[1, 2])
    assert calls and set(calls[:-2]) == {True} and calls[-2:] == [None, None]  # train in bf16; validation, test fp32
    assert any(m.endswith(" in bf16") for m in messages), messages
    np.testing.assert_array_equal(bf16["test"], fp32["test"])
    assert not np.array_equal(bf16["train"], fp32["train"])  # it did run in bf16 ...
    np.testing.assert_allclose(bf16["train"], fp32["train"], atol=0.1)  # ... and stayed close
    assert (bf16["train"].argmax(1) == fp32["train"].argmax(1)).mean() > 0.95
    states = teacher_states(tiny_teacher, texts, [1, 2], tmp_path / "bf16")
    np.testing.assert_allclose(states.astype(np.float32), teacher_states(tiny_teacher, texts, [1, 2], tmp_path / "fp32")
                               .astype(np.float32), atol=0.15)


def _token_states(folder, lengths, layers=(4, 8), hidden=6, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    writer = _TokenStatesWriter(folder, list(layers), hidden)
    writer.write([(rng.normal(size=(n, len(layers), hidden)) * scale).astype(np.float16) for n in lengths])
    writer.close()
    return TokenStates.open(folder)


def test_cached_token_states_give_standardised_targets_and_a_mask(tmp_path):
    data = _token_states(tmp_path / "a", [5, 3, 8, 2] * 50, scale=40.0)
    extra = _token_states(tmp_path / "b", [4, 6], seed=1, scale=40.0)
    cached = CachedTokenStates([data, extra], layer_map=[8], mismatched=(1,))
    assert len(cached) == 202 and cached.width == 6 and cached.layer_map == [8]
    targets, mask = cached.targets(torch.tensor([0, 1, 2, 201]), length=6)
    assert targets.shape == (4, 1, 6, 6) and mask.tolist() == [
        [1, 1, 1, 1, 1, 0], [1, 0, 0, 0, 0, 0],  # row 1 is cut differently by the two tokenizers: first token only
        [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]  # row 2 (8 tokens) cut to the batch's length; 201 is extra's row 1
    expected = (torch.from_numpy(extra.rows(1)[:, 1].astype(np.float32)) - cached.mean[0]) / cached.std[0]
    assert torch.allclose(targets[3, 0], expected)
    assert (targets[1, :, 1:] == 0).all()
    everything, _ = cached.targets(torch.arange(200), length=8)
    real = everything[:, 0][cached.targets(torch.arange(200), length=8)[1].bool()]
    assert abs(real.mean().item()) < 0.05 and abs(real.std().item() - 1) < 0.05  # ~N(0, 1) after standardising
    first = CachedStates(data.first(), [4, 8], [8])
    assert torch.allclose(first.targets(torch.arange(3))[:, 0], first.values[:3, 0].float().sub(first.mean[0])
                          .div(first.std[0]))


def test_student_learns_every_tokens_states_with_the_teacher_out_of_the_loop(tiny_teacher, tiny_data, tmp_path,
                                                                            monkeypatch):
    """Another, aligned tokenizer (ids shifted by one, 48 wide): the token-level loss covers every real token of
    each training text and falls."""
    import compression.training.distill as distill
    from compression.training.losses import hidden_mse

    shifted = make_tiny_backbone(tmp_path / "shifted", hidden=48, layers=1, seed=3, extra_vocab=["aaa"])
    data = load_data(DataConfig(source=str(tiny_data)))
    logits = teacher_logits(tiny_teacher, data, tmp_path / "cache", layers=[2], tokens=True)
    texts = list(data.splits["train"]["text"])
    states = CachedTokenStates([teacher_states(tiny_teacher, texts, [2], tmp_path / "cache", tokens=True)], [2])
    tokenizer, student = load_tokenizer_and_model(str(shifted), data.labels)
    calls = []

    def spy(student_hidden, teacher_hidden, mask, projection=None):
        calls.append((hidden_mse(student_hidden, teacher_hidden, mask, projection), mask.sum().item()))
        return calls[-1][0]

    monkeypatch.setattr(distill, "hidden_mse", spy)
    trained = train(student, tokenizer, tokenize(data, tokenizer, 32, logits, rows=True),
                    TrainConfig(epochs=4, **FAST), tmp_path / "w", seed=0, name="s",
                    distill=DistillConfig(alpha=0.5, hidden_weight=1.0, hidden_positions="tokens"), states=states)
    tokens_per_epoch = sum(len(tokenizer(t)["input_ids"]) for t in texts)
    assert sum(c[1] for c in calls[:13]) == tokens_per_epoch  # 13 batches: an epoch, every real token once
    losses = [c[0].item() for c in calls]
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5]), (losses[:5], losses[-5:])
    assert not any("distill_projections" in k for k in trained.state_dict())


def test_ema_is_validated_chosen_saved_and_resumed(tiny_data, tmp_path, monkeypatch):
    """With ema_decay every checkpoint carries its average, the returned model is the kept checkpoint's average (not
    its raw weights), and a run stopped after its first checkpoint resumes the same average: it ends exactly where
    the uninterrupted run ends."""
    from safetensors.torch import load_file

    import compression.training.distill as distill

    backbone = make_tiny_backbone(tmp_path / "m", heads=4)
    data = load_data(DataConfig(source=str(tiny_data)))
    cfg = TrainConfig(epochs=4, ema_decay=0.9, evals_per_epoch=1, **FAST)

    def run(folder):
        torch.manual_seed(0)  # the same classifier head in both runs
        tokenizer, model = load_tokenizer_and_model(str(backbone), data.labels)
        return train(model, tokenizer, tokenize(data, tokenizer, 32), cfg, folder, seed=0, name="s",
                     progress=lambda f, m: None)

    whole = run(tmp_path / "whole")
    kept = sorted((tmp_path / "whole").glob("checkpoint-*"), key=lambda c: int(c.name.split("-")[1]))
    assert kept and all((c / FILE).is_file() for c in kept)
    state = json.loads((kept[-1] / "trainer_state.json").read_text())
    assert [h["eval_accuracy"] for h in state["log_history"] if "eval_accuracy" in h][-1] > 0.8
    best = state["best_model_checkpoint"]
    params = dict(whole.named_parameters())
    average, raw = load_file(f"{best}/{FILE}"), load_file(f"{best}/model.safetensors")
    assert all(torch.equal(params[n].detach(), v) for n, v in average.items())
    assert not all(torch.equal(average[n], raw[n]) for n in average if n in raw)

    class Stop(Exception):
        pass

    def stop(name):  # the first checkpoint is written, then the build "dies"
        if name == "train.after-checkpoint":
            raise Stop

    monkeypatch.setattr(distill, "failpoint", stop)
    with pytest.raises(Stop):
        run(tmp_path / "cut")
    assert [c.name for c in (tmp_path / "cut").glob("checkpoint-*")] == ["checkpoint-13"]
    assert (tmp_path / "cut" / "checkpoint-13" / FILE).is_file()  # saved before the progress callback's failpoint
    monkeypatch.undo()
    resumed = run(tmp_path / "cut")
    for name, value in dict(resumed.named_parameters()).items():
        assert torch.allclose(value, params[name], atol=1e-6), name


def test_ema_warm_up_and_resume_of_the_callback(tmp_path):
    from types import SimpleNamespace

    from safetensors.torch import save_file

    model = torch.nn.Linear(2, 1)
    args = SimpleNamespace(output_dir=str(tmp_path))
    ema = EMACallback(0.99)
    ema.on_train_begin(args, SimpleNamespace(global_step=0), None, model=model)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.on_step_end(args, SimpleNamespace(global_step=1), None, model=model)
    assert torch.allclose(ema.shadow["weight"], start * (2 / 11) + (start + 1) * (9 / 11))  # d = 2 / 11, not 0.99
    with ema.applied(model):
        assert torch.equal(model.weight, ema.shadow["weight"])
    assert torch.equal(model.weight, start + 1)
    (tmp_path / "checkpoint-7").mkdir()
    save_file({"weight": torch.full((1, 2), 5.0), "bias": torch.zeros(1)}, str(tmp_path / "checkpoint-7" / FILE))
    again = EMACallback(0.99)
    again.on_train_begin(args, SimpleNamespace(global_step=7), None, model=model)
    assert torch.equal(again.shadow["weight"], torch.full((1, 2), 5.0))


def test_build_distills_every_tokens_states_and_the_first_token_from_one_cache(tiny_data, tiny_model, tmp_path):
    """One student learns every token's states (with EMA), another the first token's: one teacher pass caches every
    token's states, the first-token student reads its first rows."""
    from .conftest import run_cli, run_main

    shifted = make_tiny_backbone(tmp_path / "shifted", hidden=48, layers=1, seed=3, extra_vocab=["aaa"])
    recipe = tmp_path / "r.yaml"

    def student(name, extra_distill="", extra_train=""):
        return (f"  - {{name: {name}, model: {shifted}, max_length: 32, distill: {{hidden_weight: 1.0{extra_distill}}},"
                f" train: {{epochs: 2, batch_size: 16, learning_rate: 3.0e-3{extra_train}}}}}\n")

    recipe.write_text(f"name: r\ndata: {{source: {tiny_data}}}\n"
                      f"teacher: {{model: {tiny_model}, max_length: 32, train: {{epochs: 2, batch_size: 16, "
                      f"learning_rate: 3.0e-3, warmup_ratio: 0.0}}}}\nstudents:\n"
                      + student("tokens", ", hidden_positions: tokens", ", ema_decay: 0.9") + student("first")
                      + "bench: {samples: 4, repeats: 1, warmup: 1, throughput_batches: 1, memory: false}\n")
    result = run_cli("build", str(recipe), "--store", str(tmp_path / "store"))
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "every token's states at layers [2]" in log and "MB on disk (fp16)" in log, log
    assert "tokens: token alignment with the teacher: 200 texts, 0 tokenized differently" in log, log
    assert "learns the teacher's every token's states at layers [2]" in log, log
    assert "learns the teacher's first-token states at layers [2]" in log, log
    cache = tmp_path / "store" / "cache"
    assert len(list(cache.glob("teacher-token-states-*"))) == 1 and not list(cache.glob("teacher-states-*"))
    rows = {r["name"]: r for r in map(json.loads, run_main("list", "--json", "--store", str(tmp_path / "store"))
                                      .stdout.splitlines())}
    assert load_bundle(rows["tokens"]["bundle"]).meta["hidden_states"]["positions"] == "every token"
    assert load_bundle(rows["first"]["bundle"]).meta["hidden_states"]["positions"] == "first token"



def test_select_by_int8_keeps_the_checkpoint_whose_int8_copy_validates_best(tiny_data, tmp_path):
    """Every validation scores the int8 copy too; the checkpoint kept is the first best by that score, and the
    returned model's int8 copy scores it again."""
    from compression.training.int8_validation import int8_accuracy, int8_copy

    backbone = make_tiny_backbone(tmp_path / "m", heads=4)
    data = load_data(DataConfig(source=str(tiny_data)))
    cfg = TrainConfig(epochs=4, evals_per_epoch=2, select_by="int8", **FAST)
    tokenizer, model = load_tokenizer_and_model(str(backbone), data.labels)
    messages = []
    trained = train(model, tokenizer, tokenize(data, tokenizer, 32), cfg, tmp_path / "w", seed=0, name="s",
                    progress=lambda f, m: messages.append(m))
    found = [re.search(r"at step (\d+) \(int8 ([\d.]+)\)", m) for m in messages]
    curve = [(int(f[1]), float(f[2])) for f in found if f]
    assert len(curve) >= 7  # 52 steps, a validation every 7
    best_step, best = max(curve, key=lambda point: (point[1], -point[0]))  # the first of tied maxima
    state = json.loads(next((tmp_path / "w").glob("checkpoint-*/trainer_state.json")).read_text())  # the kept one
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best_step}")
    assert state["best_metric"] == pytest.approx(best, abs=1e-4)
    assert not any(type(m) is torch.nn.Linear for m in int8_copy(trained).modules())
    texts, labels = list(data.splits["validation"]["text"]), list(data.splits["validation"]["label"])
    batch = {**tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt"),
             "labels": torch.tensor(labels)}
    # One batch instead of the Trainer's: int8 activation scales see other padding, so allow one text's difference.
    assert int8_accuracy(trained, [batch]) == pytest.approx(state["best_metric"], abs=1.01 / len(texts))
    with pytest.raises(ValueError, match="select_by"):
        TrainConfig(select_by="f1")
