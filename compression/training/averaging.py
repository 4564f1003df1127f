"""Exponential moving average (EMA) of a model's weights during training.

Averaged weights of compact models generalise like stronger distillation methods do (arXiv 2212.05956) at the cost
of one fused multiply-add per weight and step. With ``train.ema_decay`` the averaged weights are what validation
scores, what the kept checkpoint is chosen by and what is saved as the variant; the raw weights keep training.
Each checkpoint carries its average (``ema.safetensors``), so a resumed run continues the same average.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from transformers import TrainerCallback

FILE = "ema.safetensors"


def _unwrapped(model):
    return model.module if hasattr(model, "module") else model


class EMACallback(TrainerCallback):
    """Keeps ``shadow = d * shadow + (1 - d) * weights`` after every optimizer step, with TensorFlow's warm-up
    ``d = min(decay, (1 + step) / (10 + step))`` so the first steps do not drag the start weights along."""

    def __init__(self, decay: float):
        self.decay, self.shadow = decay, None

    def _trained(self, model) -> dict[str, torch.Tensor]:
        return {n: p for n, p in _unwrapped(model).named_parameters() if p.requires_grad}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        from safetensors.torch import load_file

        self.shadow = {n: p.detach().float().clone() for n, p in self._trained(model).items()}
        saved = Path(args.output_dir) / f"checkpoint-{state.global_step}" / FILE
        if state.global_step > 0 and saved.is_file():  # resuming: the average goes on where it stopped
            self.shadow.update(load_file(saved))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        d = min(self.decay, (1 + state.global_step) / (10 + state.global_step))
        with torch.no_grad():
            for name, param in self._trained(model).items():
                self.shadow[name].mul_(d).add_(param.detach().float(), alpha=1 - d)

    def on_save(self, args, state, control, **kwargs):
        from safetensors.torch import save_file

        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            save_file({n: t.contiguous() for n, t in self.shadow.items()}, str(folder / FILE))

    @contextlib.contextmanager
    def applied(self, model):
        """The averaged weights in ``model`` for the duration (validation); its own weights back afterwards."""
        params = self._trained(model)
        kept = {n: p.detach().clone() for n, p in params.items()}
        load_into(params, self.shadow)
        try:
            yield
        finally:
            load_into(params, kept)


def load_into(params: dict[str, torch.Tensor], values: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(values[name].to(param.dtype))


def load_average(model, checkpoint: str | Path) -> bool:
    """Put the average saved with ``checkpoint`` into ``model``; False when it has none."""
    from safetensors.torch import load_file

    saved = Path(checkpoint) / FILE
    if not saved.is_file():
        return False
    params = {n: p for n, p in _unwrapped(model).named_parameters() if p.requires_grad}
    load_into(params, load_file(saved))
    return True
