import math

import pytest
import torch

from compression.training.losses import attention_kl, hidden_mse, kd_loss, soft_kl, uniform_layer_map


def test_kd_loss_matches_hand_computation():
    s, t, alpha, T = [1.0, 2.0], [2.0, 0.0], 0.3, 2.0
    softmax = lambda z: [math.exp(v) / sum(math.exp(u) for u in z) for v in z]  # noqa: E731
    p_t, p_s = softmax([v / T for v in t]), softmax([v / T for v in s])
    kl = sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))
    ce = -math.log(softmax(s)[0])
    expected = alpha * ce + (1 - alpha) * T * T * kl
    got = kd_loss(torch.tensor([s]), torch.tensor([t]), torch.tensor([0]), alpha, T)
    assert got.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 5.0, 20.0])
def test_soft_loss_is_zero_when_student_equals_teacher(temperature):
    logits = torch.randn(8, 4) * 3
    assert soft_kl(logits, logits.clone(), temperature).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(logits, logits.clone(), None, 0.5, temperature).item() == pytest.approx(0.0, abs=1e-6)


def test_no_gradient_reaches_the_teacher():
    student = torch.randn(4, 3, requires_grad=True)
    teacher = torch.randn(4, 3, requires_grad=True)
    kd_loss(student, teacher, torch.tensor([0, 1, 2, 0]), 0.5, 2.0).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


@pytest.mark.parametrize("alpha, temperature", [(-0.1, 2.0), (1.1, 2.0), (0.5, 0.0), (0.5, -1.0)])
def test_bad_hyperparameters(alpha, temperature):
    with pytest.raises(ValueError):
        kd_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([0]), alpha, temperature)


def test_alpha_one_is_plain_cross_entropy():
    s, t, y = torch.randn(5, 3), torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    assert kd_loss(s, t, y, 1.0, 3.0).item() == pytest.approx(torch.nn.functional.cross_entropy(s, y).item())


def test_hidden_mse_ignores_padding_and_projects():
    student, teacher = torch.zeros(1, 3, 4), torch.zeros(1, 3, 4)
    student[0, 2] = 100.0  # a padded position: must not count
    mask = torch.tensor([[1, 1, 0]])
    assert hidden_mse(student, teacher, mask).item() == 0.0
    projection = torch.nn.Linear(4, 6)
    assert hidden_mse(torch.randn(2, 3, 4), torch.randn(2, 3, 6), torch.ones(2, 3), projection).item() > 0
    with pytest.raises(ValueError, match="give a projection"):
        hidden_mse(torch.randn(2, 3, 4), torch.randn(2, 3, 6), torch.ones(2, 3))


def test_attention_kl_zero_for_equal_head_averages():
    attn = torch.softmax(torch.randn(2, 4, 5, 5), dim=-1)
    averaged = attn.mean(dim=1, keepdim=True).expand(2, 2, 5, 5)  # fewer heads, same average
    assert attention_kl(averaged, attn, torch.ones(2, 5)).item() == pytest.approx(0.0, abs=1e-6)


def test_uniform_layer_map():
    assert uniform_layer_map(3, 12) == [4, 8, 12]
    assert uniform_layer_map(6, 12) == [2, 4, 6, 8, 10, 12]
    assert uniform_layer_map(2, 2) == [1, 2]
    with pytest.raises(ValueError):
        uniform_layer_map(4, 2)


def test_hidden_mse_at_equal_widths_is_the_mean_over_real_tokens():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    expected = ((student - teacher) ** 2)[mask.bool()].mean()
    assert hidden_mse(student, teacher, mask).item() == pytest.approx(expected.item(), rel=1e-6)


def test_hidden_mse_projection_learns_across_widths():
    """Student states 4 wide, teacher states 6 wide: only a learned projection compares them. It receives the
    gradient (the student too, the teacher never) and, trained, drives the loss towards zero."""
    torch.manual_seed(0)
    student = torch.randn(4, 5, 4, requires_grad=True)
    teacher = (student.detach() @ torch.randn(4, 6)).requires_grad_()  # a linear map of the student: learnable
    mask = torch.ones(4, 5)
    mask[0, 3:] = 0
    projection = torch.nn.Linear(4, 6)
    optimizer = torch.optim.Adam(projection.parameters(), lr=0.05)
    losses = []
    for _ in range(300):
        optimizer.zero_grad()
        loss = hidden_mse(student, teacher, mask, projection)
        loss.backward()
        if not losses:
            assert projection.weight.grad.abs().sum() > 0 and projection.bias.grad.abs().sum() > 0
            assert student.grad.abs().sum() > 0 and teacher.grad is None
        losses.append(loss.item())
        optimizer.step()
    assert losses[-1] < 0.01 * losses[0], (losses[0], losses[-1])
