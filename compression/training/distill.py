"""Teacher fine-tuning, teacher logits as data, students, and the ``DistillationTrainer``.

The teacher runs once per (teacher, data set, max length) over the raw text with its own tokenizer; its logits are
cached on disk and added to each split as a column. Students then train on their own tokenization against that
column, so distillation works across tokenizers and the training loop never runs the teacher. Hidden-state
distillation across tokenizers that cut texts alike (align.py) matches the teacher's first-token or every token's
states, cached in the same pass as its logits (cached_states.py); with a shared tokenizer, every token's state and
the attention maps are matched with the teacher in the loop.

Training goes through ``transformers.Trainer``: ``accelerate launch`` and ``torchrun`` scale it out unchanged.
"""

from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from compression.core import registry as techniques
from compression.core.config import DistillConfig, StudentConfig, TrainConfig
from compression.core.errors import LabError, failpoint
from compression.core.hardware import bf16_enabled
from compression.data.loading import SPLITS, LabeledData
from compression.data.sources import resolve_model
from compression.training.averaging import EMACallback, load_average
from compression.training.cached_states import CachedStates, CachedTokenStates
from compression.training.int8_validation import int8_accuracy
from compression.training.losses import attention_kl, hidden_mse, kd_loss, uniform_layer_map

Progress = Callable[[float, str], None]
SELECTION = {"accuracy": "accuracy", "int8": "int8_accuracy"}  # train.select_by -> the metric that picks the checkpoint
LAYER_KEY = re.compile(r"^(.*\.(?:layer|layers)\.)(\d+)(\..*)$")


# ---------------------------------------------------------------- students

def keep_layers(model, layers: list[int]):
    """A copy of ``model`` with only the given 0-based encoder layers, in that order (weights copied)."""
    total = model.config.num_hidden_layers
    bad = [i for i in layers if not 0 <= i < total]
    if bad or not layers:
        raise LabError(f"cannot keep layers {layers}: the model has layers 0..{total - 1}")
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = len(layers)
    smaller = type(model)(config)
    state = {}
    for key, value in model.state_dict().items():
        match = LAYER_KEY.match(key)
        if match is None:
            state[key] = value
        elif int(match[2]) in layers:
            state[f"{match[1]}{layers.index(int(match[2]))}{match[3]}"] = value
    smaller.load_state_dict(state, strict=True)
    return smaller


def every_other_layer(total: int) -> list[int]:
    """DistilBERT's choice: layers 0, 2, 4, ... of the source model."""
    return list(range(0, total, 2))


def build_student(cfg: StudentConfig, teacher_folder: str | Path, labels: list[str]):
    """(tokenizer, model) for a student, made by the technique its ``init`` names (compression/techniques)."""

    return techniques.get(cfg.init, "student").apply(cfg, teacher_folder, labels)


def shares_tokenizer(a, b) -> bool:
    """True when two tokenizers split every text into the same ids (same vocabulary and same special tokens)."""
    return (type(a).__name__ == type(b).__name__ and a.get_vocab() == b.get_vocab()
            and a.all_special_ids == b.all_special_ids)


# ---------------------------------------------------------------- teacher logits as data


def state_layers(cfg: StudentConfig, teacher_folder: str | Path) -> list[int] | None:
    """The teacher layers whose cached states ``cfg`` learns from; None when it matches no hidden
    states, or shares the teacher's tokenizer (then the teacher runs in the loop and every token is matched)."""
    from transformers import AutoConfig, AutoTokenizer

    from compression.training.losses import uniform_layer_map

    if cfg.distill.hidden_weight == 0 or cfg.model is None:
        return None
    location = resolve_model(cfg.model)
    student = AutoTokenizer.from_pretrained(location, trust_remote_code=False)
    if shares_tokenizer(student, AutoTokenizer.from_pretrained(teacher_folder, trust_remote_code=False)):
        return None
    count = AutoConfig.from_pretrained(location, trust_remote_code=False).num_hidden_layers
    if cfg.init == "pretrained-layers":
        count = len(cfg.layers or every_other_layer(count))
    teacher_count = AutoConfig.from_pretrained(teacher_folder, trust_remote_code=False).num_hidden_layers
    return cfg.distill.layer_map or uniform_layer_map(count, teacher_count)


def tokenize(data: LabeledData, tokenizer, max_length: int, logits: dict[str, np.ndarray] | None = None,
             rows: bool = False):
    """Splits tokenized for training: input ids, attention mask, labels and (for students) ``teacher_logits``;
    with ``rows``, each training text's row number (its cached teacher states, :class:`CachedStates`)."""
    from datasets import DatasetDict

    def encode(batch):  # a pair keeps its structure: segment ids, and truncation shares the budget
        if "text_pair" in batch:
            return tokenizer(batch["text"], batch["text_pair"], truncation=True, max_length=max_length)
        return tokenizer(batch["text"], truncation=True, max_length=max_length)

    out = {}
    for split in SPLITS:
        ds = data.splits[split].map(encode, batched=True, desc=f"tokenizing {split}")
        ds = ds.rename_column("label", "labels").remove_columns(
            [c for c in ("text", "text_pair") if c in data.splits[split].column_names])
        if logits is not None:
            ds = ds.add_column("teacher_logits", logits[split].tolist())
        if rows and split == "train":
            ds = ds.add_column("row", list(range(len(ds))))
        out[split] = ds
    return DatasetDict(out)


class Collator:
    """Pads token fields per batch; stacks labels, teacher logits and row numbers."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, features: list[dict]) -> dict:
        extra = {k: [f.pop(k) for f in features] for k in ("labels", "teacher_logits", "row") if k in features[0]}
        batch = self.tokenizer.pad(features, return_tensors="pt")
        for key in ("labels", "row"):
            if key in extra:
                batch[key] = torch.tensor(extra[key], dtype=torch.long)
        if "teacher_logits" in extra:
            batch["teacher_logits"] = torch.tensor(extra["teacher_logits"], dtype=torch.float32)
        return batch


# ---------------------------------------------------------------- training

class DistillationTrainer(Trainer):
    """A ``Trainer`` whose loss is ``alpha * CE + (1 - alpha) * T^2 * KL`` against a ``teacher_logits`` column.

    Without ``distill`` it trains on gold labels only (plain cross-entropy), which is how teachers are fine-tuned.
    With ``distill.hidden_weight`` / ``attention_weight`` it also matches intermediate layers of ``teacher_model``
    (run in the loop under ``no_grad``), or with ``states`` its cached states (a student with another,
    aligned tokenizer: the teacher stays out of the loop); learned projections live on the student as
    ``distill_projections`` so they train and synchronise across processes with it, and are dropped before the
    student is saved.
    """

    def __init__(self, *args, distill: DistillConfig | None = None, teacher_model=None,
                 layer_map: list[int] | None = None, states: CachedStates | CachedTokenStates | None = None,
                 ema: EMACallback | None = None, select_int8: bool = False, **kwargs):
        if ema is not None:  # first of the caller's callbacks: a checkpoint has its average before anything else runs
            kwargs["callbacks"] = [ema, *(kwargs.get("callbacks") or [])]
        super().__init__(*args, **kwargs)
        self.distill, self.teacher_model, self.layer_map, self.states = distill, teacher_model, layer_map, states
        self.ema, self.select_int8 = ema, select_int8
        self.model_accepts_loss_kwargs = False  # our loss is a batch mean: let Trainer scale it for accumulation
        if teacher_model is not None:
            teacher_model.eval().requires_grad_(False)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)  # prediction_step reads labels from its own dict afterwards
        labels = inputs.pop("labels", None)
        teacher = inputs.pop("teacher_logits", None)
        rows = inputs.pop("row", None)
        d = self.distill
        want_hidden = bool(d and d.hidden_weight > 0)
        want_attention = bool(d and d.attention_weight > 0)
        outputs = model(**inputs, output_hidden_states=want_hidden, output_attentions=want_attention)
        logits = outputs.logits
        if d is None or teacher is None:
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        else:
            loss = kd_loss(logits.float(), teacher.float(), labels, d.alpha, d.temperature)
        if self.states is not None:
            if rows is not None and model.training:
                loss = loss + self._state_loss(model, outputs, rows)
        elif (want_hidden or want_attention) and model.training:
            loss = loss + self._intermediate_loss(model, inputs, outputs, want_hidden, want_attention)
        return (loss, outputs) if return_outputs else loss

    def evaluate(self, *args, **kwargs):
        """Validation scores the averaged weights when there are any (so the checkpoint kept is chosen by them)."""
        if self.ema is None or self.ema.shadow is None:
            return super().evaluate(*args, **kwargs)
        with self.ema.applied(self.model):
            return super().evaluate(*args, **kwargs)

    def evaluation_loop(self, dataloader, *args, metric_key_prefix="eval", **kwargs):
        """With ``select_int8``, validation also scores the model's int8 copy (before scores are logged, compared)."""
        output = super().evaluation_loop(dataloader, *args, metric_key_prefix=metric_key_prefix, **kwargs)
        if self.select_int8:
            output.metrics[f"{metric_key_prefix}_int8_accuracy"] = int8_accuracy(
                self.model, dataloader, self.accelerator.gather_for_metrics)
        return output

    def _state_loss(self, model, outputs, rows):
        """MSE between each mapped student layer's projected states and the teacher's (cached, standardised) — the
        first token's, or every token's — averaged over layers."""
        student = model.module if hasattr(model, "module") else model
        device = outputs.logits.device
        if self.states.positions == "tokens":
            hidden = outputs.hidden_states[1]
            targets, mask = self.states.targets(rows, hidden.shape[1])
            targets, mask = targets.to(device), mask.to(device)
        else:
            targets = self.states.targets(rows).to(device).unsqueeze(2)  # (B, layers, 1, H)
        loss = 0.0
        for i in range(len(self.layer_map)):  # student layer i + 1 learns teacher layer layer_map[i]
            states = outputs.hidden_states[i + 1].float()
            if self.states.positions == "first":
                states = states[:, :1]
                mask = torch.ones_like(states[..., 0])
            loss = loss + hidden_mse(states, targets[:, i], mask, student.distill_projections[i])
        return self.distill.hidden_weight * loss / len(self.layer_map)

    def _intermediate_loss(self, model, inputs, outputs, want_hidden, want_attention):
        d = self.distill
        device = inputs["input_ids"].device
        if next(self.teacher_model.parameters()).device != device:
            self.teacher_model.to(device)
        with torch.no_grad():
            t_out = self.teacher_model(**inputs, output_hidden_states=want_hidden, output_attentions=want_attention)
        mask = inputs["attention_mask"]
        student = model.module if hasattr(model, "module") else model
        loss = 0.0
        for s_layer, t_layer in enumerate(self.layer_map, start=1):
            if want_hidden:
                projections = getattr(student, "distill_projections", None)
                projection = projections[s_layer - 1] if projections is not None else None
                loss = loss + d.hidden_weight * hidden_mse(outputs.hidden_states[s_layer].float(),
                                                           t_out.hidden_states[t_layer].float(), mask, projection)
            if want_attention:
                loss = loss + d.attention_weight * attention_kl(outputs.attentions[s_layer - 1].float(),
                                                                t_out.attentions[t_layer - 1].float(), mask)
        return loss / len(self.layer_map)


class ProgressCallback(TrainerCallback):
    """Reports training progress to a ``progress(fraction, message)`` callback, about every 5 %."""

    def __init__(self, progress: Progress, name: str):
        self.progress, self.name, self.last = progress, name, -1.0

    def on_step_end(self, args, state, control, **kwargs):
        fraction = state.global_step / max(state.max_steps, 1)
        if fraction - self.last >= 0.05 or state.global_step == state.max_steps:
            self.last = fraction
            loss = next((h["loss"] for h in reversed(state.log_history) if "loss" in h), None)
            shown = f", loss {float(loss):.4f}" if loss is not None else ""
            self.progress(fraction, f"{self.name}: step {state.global_step}/{state.max_steps}{shown}")

    def on_save(self, args, state, control, **kwargs):
        failpoint("train.after-checkpoint")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and "eval_accuracy" in metrics:
            int8 = f" (int8 {metrics['eval_int8_accuracy']:.4f})" if "eval_int8_accuracy" in metrics else ""
            self.progress(state.global_step / max(state.max_steps, 1), f"{self.name}: validation accuracy "
                          f"{metrics['eval_accuracy']:.4f} at step {state.global_step}{int8}")


def curve_advice(name: str, curve: list[tuple[int, float]], total: int) -> str | None:
    """What the validation curve ``[(step, accuracy), ...]`` of a finished training says about its length: best at
    its last evaluation (still rising: more epochs may pay), or peaked in its first half (fewer would do)."""
    if len(curve) < 4:
        return None
    shown = " -> ".join(f"{100 * acc:.1f}" for _, acc in curve[-3:])
    if curve[-1][1] > max(acc for _, acc in curve[:-1]):
        return f"{name}: validation accuracy still rising at the end ({shown} %): more epochs may pay"
    best_step = max(curve, key=lambda point: point[1])[0]  # the first of tied maxima, as the Trainer keeps it
    if best_step <= total / 2:
        return (f"{name}: validation accuracy peaked at step {best_step} of {total} (last three {shown} %): "
                f"fewer epochs would do")
    return None


def _accuracy(eval_pred) -> dict:
    logits, labels = eval_pred
    logits = logits[0] if isinstance(logits, tuple) else logits
    return {"accuracy": float((np.asarray(logits).argmax(-1) == np.asarray(labels)).mean())}


def _resumable_checkpoint(folder: Path, setup: dict) -> str | None:
    """The newest complete checkpoint in ``folder`` written under the same setup, else None (fresh start).

    A checkpoint is complete once ``trainer_state.json`` is written (the Trainer writes it last); a different
    process count, device or precision changes steps and schedule, so its checkpoints are dropped, not resumed.
    """
    import json
    import shutil

    marker = folder / "setup.json"
    main = int(os.environ.get("RANK", "0")) == 0
    stale = marker.is_file() and json.loads(marker.read_text()) != setup
    done = [] if stale else [p for p in folder.glob("checkpoint-*")
                             if (p / "trainer_state.json").is_file() and p.name.split("-")[-1].isdigit()]
    if main:
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(setup))
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None


def _intermediate_setup(model, teacher_model, distill: DistillConfig, name: str,
                        states: CachedStates | CachedTokenStates | None = None) -> list[int]:
    """The layer map of intermediate-layer distillation; adds the learned projections (student width -> teacher
    width) it needs to the student and makes both models return attention maps when they are matched."""
    if states is not None:  # standardised targets: a projection even at equal widths
        if len(states.layer_map) != model.config.num_hidden_layers:
            raise LabError(f"{name}: distill.layer_map {states.layer_map} must give one teacher layer for each of "
                           f"the {model.config.num_hidden_layers} student layers")
        model.distill_projections = torch.nn.ModuleList(
            torch.nn.Linear(model.config.hidden_size, states.width) for _ in states.layer_map)
        return states.layer_map
    if teacher_model is None:
        raise LabError(f"{name}: hidden/attention distillation needs the teacher model in the loop")
    s_layers, t_layers = model.config.num_hidden_layers, teacher_model.config.num_hidden_layers
    layer_map = distill.layer_map or uniform_layer_map(s_layers, t_layers)
    if len(layer_map) != s_layers or max(layer_map) > t_layers:
        raise LabError(f"{name}: distill.layer_map {layer_map} must give one teacher layer (1..{t_layers}) for "
                       f"each of the {s_layers} student layers")
    if distill.hidden_weight > 0 and model.config.hidden_size != teacher_model.config.hidden_size:
        model.distill_projections = torch.nn.ModuleList(
            torch.nn.Linear(model.config.hidden_size, teacher_model.config.hidden_size) for _ in layer_map)
    if distill.attention_weight > 0:  # fused attention kernels return no attention maps
        for m in (model, teacher_model):
            m.set_attn_implementation("eager")
    return layer_map


def train(model, tokenizer, dataset, cfg: TrainConfig, output_dir: str | Path, seed: int, name: str,
          distill: DistillConfig | None = None, teacher_model=None, progress: Progress | None = None,
          states: CachedStates | CachedTokenStates | None = None):
    """Train ``model`` on ``dataset['train']``, pick the best checkpoint on ``dataset['validation']``, return it.

    ``dataset`` comes from :func:`tokenize`; with a ``teacher_logits`` column and ``distill`` it is distilled, and
    with ``states`` (and a ``row`` column) it also matches the teacher's cached states. With ``cfg.ema_decay`` the
    averaged weights are validated, chosen and returned (:mod:`~compression.training.averaging`).
    """
    layer_map = (_intermediate_setup(model, teacher_model, distill, name, states)
                 if distill and distill.intermediate else None)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_step = cfg.batch_size * cfg.gradient_accumulation_steps * world
    steps_per_epoch = max(1, math.ceil(len(dataset["train"]) / per_step))
    total = cfg.max_steps or math.ceil(steps_per_epoch * cfg.epochs)
    eval_every = max(1, min(total, math.ceil(steps_per_epoch / cfg.evals_per_epoch)))
    use_cpu = not torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size, gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        num_train_epochs=cfg.epochs, max_steps=cfg.max_steps or -1, learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_ratio, eval_strategy="steps", eval_steps=eval_every,
        # Full checkpoints (optimizer, scheduler, RNG) at every validation: a killed build resumes from the last one.
        save_strategy="steps", save_steps=eval_every, save_total_limit=1,
        load_best_model_at_end=True, metric_for_best_model=SELECTION[cfg.select_by], greater_is_better=True,
        logging_steps=max(1, eval_every // 4), report_to="none", seed=seed, data_seed=seed,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        bf16=bf16_enabled(cfg.bf16), use_cpu=use_cpu, remove_unused_columns=False, label_names=["labels"],
        disable_tqdm=progress is not None,  # our callback reports instead: one progress display, not two
        ddp_backend="gloo" if use_cpu and world > 1 else None,
        ddp_find_unused_parameters=False)
    trainer = DistillationTrainer(
        model=model, args=args, train_dataset=dataset["train"], eval_dataset=dataset["validation"],
        processing_class=tokenizer, data_collator=Collator(tokenizer), compute_metrics=_accuracy,
        distill=distill, teacher_model=teacher_model, layer_map=layer_map, states=states,
        ema=EMACallback(cfg.ema_decay) if cfg.ema_decay > 0 else None, select_int8=cfg.select_by == "int8",
        callbacks=[ProgressCallback(progress, name)] if progress else None)
    if progress is not None:
        trainer.remove_callback(PrinterCallback)  # it would print every log dict
    resume = _resumable_checkpoint(Path(output_dir), {"world_size": world, "cuda": not use_cpu,
                                                      "bf16": bool(args.bf16)})
    if resume is not None and progress is not None:
        progress(0.0, f"{name}: resuming from {Path(resume).name} (an earlier build stopped part-way)")
    trainer.train(resume_from_checkpoint=resume)
    key = f"eval_{SELECTION[cfg.select_by]}"
    curve = [(h["step"], h[key]) for h in trainer.state.log_history if key in h]
    advice = curve_advice(name, curve, trainer.state.max_steps)
    if advice and progress is not None:
        progress(1.0, advice)
    # Accelerate patches forward() with autocast for mixed precision; the saved model must not keep that patch.
    best = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    if trainer.ema is not None:  # the kept checkpoint was chosen by its average: that is the model
        load_average(best, trainer.state.best_model_checkpoint)
    if hasattr(best, "distill_projections"):
        del best.distill_projections
    if distill is not None and distill.attention_weight > 0:
        best.set_attn_implementation("sdpa")
    return best.to("cpu").eval()  # bundles are written and probed on the CPU
