"""Knowledge-distillation losses as pure functions. Shapes: B batch, C classes, L tokens, H hidden, A heads.

Nothing here holds state or touches a model: callers pass tensors, get a scalar loss back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(t/T) || softmax(s/T))``, averaged over the batch.

    student_logits, teacher_logits: (B, C). The T^2 factor keeps gradient size independent of T (Hinton et al. 2015).
    Zero exactly when the two logit vectors are equal, at any T.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature ** 2


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None,
            alpha: float, temperature: float) -> torch.Tensor:
    """``alpha * CE(student, gold) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))``.

    student_logits, teacher_logits: (B, C); labels: (B,) int64 gold ids, or None for unlabelled text (alpha ignored).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    soft = soft_kl(student_logits, teacher_logits, temperature)
    if labels is None:
        return soft
    return alpha * F.cross_entropy(student_logits, labels) + (1.0 - alpha) * soft


def hidden_mse(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, attention_mask: torch.Tensor,
               projection: torch.nn.Module | None = None) -> torch.Tensor:
    """Mean squared error between token states, over real (unpadded) tokens only.

    student_hidden: (B, L, Hs); teacher_hidden: (B, L, Ht); attention_mask: (B, L) of 0/1.
    ``projection`` maps Hs -> Ht when the widths differ (a learned Linear, trained with the student).
    """
    if projection is not None:
        student_hidden = projection(student_hidden)
    if student_hidden.shape != teacher_hidden.shape:
        raise ValueError(f"hidden shapes differ: student {tuple(student_hidden.shape)} vs teacher "
                         f"{tuple(teacher_hidden.shape)}; give a projection")
    mask = attention_mask.unsqueeze(-1).to(student_hidden.dtype)
    squared = (student_hidden - teacher_hidden.detach()) ** 2 * mask
    return squared.sum() / (mask.sum() * student_hidden.shape[-1]).clamp_min(1.0)


def attention_kl(student_attention: torch.Tensor, teacher_attention: torch.Tensor,
                 attention_mask: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) between head-averaged attention distributions, over real query tokens.

    student_attention: (B, As, L, L); teacher_attention: (B, At, L, L) — head counts may differ, so both are
    averaged over heads first. attention_mask: (B, L).
    """
    eps = 1e-8
    s = student_attention.mean(dim=1).clamp_min(eps)
    t = teacher_attention.detach().mean(dim=1).clamp_min(eps)
    kl = (t * (t.log() - s.log())).sum(-1)  # (B, L) per query token
    mask = attention_mask.to(kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp_min(1.0)


def uniform_layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layer (1-based hidden-state index) for each student layer: evenly spaced, last maps to last.

    E.g. 3 student layers, 12 teacher layers -> [4, 8, 12] (TinyBERT's uniform strategy).
    """
    if student_layers < 1 or teacher_layers < student_layers:
        raise ValueError(f"cannot map {student_layers} student layers onto {teacher_layers} teacher layers")
    return [round((i + 1) * teacher_layers / student_layers) for i in range(student_layers)]
