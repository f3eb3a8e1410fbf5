"""Logit distillation losses: classic KD (KL x T^2), decoupled KD and logit standardisation.

All take student and teacher logits ``(N, C)`` and return the batch mean, in float32:

- :func:`kl_kd`: ``T^2 * KL(softmax(t / T) || softmax(s / T))`` (Hinton et al. 2015).
- :func:`dkd`: decoupled KD (Zhao et al., CVPR 2022, https://arxiv.org/abs/2203.08679; the
  definition of mdistiller's ``dkd_loss``). ``TCKD`` is the KL between the binary distributions
  ``[p_target, 1 - p_target]`` of teacher and student; ``NCKD`` the KL between their
  distributions over the non-target classes only (renormalised); the loss is
  ``T^2 * (alpha * TCKD + beta * NCKD)``. Classic KD is ``TCKD + (1 - p_target^teacher) * NCKD``
  per sample, so DKD frees the non-target part from a confident teacher's small weight.
- :func:`standardize`: logit standardisation (Sun et al., CVPR 2024,
  https://arxiv.org/abs/2403.01427): each row z-scored, ``(x - mean) / (std + 1e-7)`` with
  the unbiased standard deviation, before the softened softmax; either loss above takes
  ``standardize=True`` and applies it to student and teacher alike. The student then matches
  the teacher's logit *relations*, not their scale (a label-smoothed teacher's small logit
  range no longer flattens its soft targets).

Computed from log-softmaxes with the non-target columns selected (not masked with a large
constant), so nothing overflows or turns into NaN, and gradients reach only the student.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

STD_EPS = 1e-7


def standardize(logits: Tensor) -> Tensor:
    """Each row z-scored: ``(x - mean) / (std + 1e-7)``, ``std`` unbiased (as the paper's code)."""
    mean = logits.mean(dim=-1, keepdim=True)
    std = logits.std(dim=-1, keepdim=True)
    return (logits - mean) / (std + STD_EPS)


def _prepare(
    student: Tensor, teacher: Tensor, temperature: float, stand: bool
) -> tuple[Tensor, Tensor]:
    s, t = student.float(), teacher.float().detach()
    if stand:
        s, t = standardize(s), standardize(t)
    return s / temperature, t / temperature


def kl_kd(
    student: Tensor, teacher: Tensor, temperature: float, *, standardize: bool = False
) -> Tensor:
    """``T^2 * KL(softmax(t/T) || softmax(s/T))``, mean over the batch."""
    s, t = _prepare(student, teacher, temperature, standardize)
    log_p_s = F.log_softmax(s, dim=1)
    log_p_t = F.log_softmax(t, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature**2


def dkd_parts(
    student: Tensor,
    teacher: Tensor,
    targets: Tensor,
    temperature: float,
    *,
    standardize: bool = False,
) -> tuple[Tensor, Tensor]:
    """``(TCKD, NCKD)`` per sample (shape ``(N,)``), without the ``T^2`` factor."""
    if targets.ndim != 1:
        raise ValueError(
            "decoupled KD needs hard class targets (N,), not soft/mixed ones: turn off "
            "mixup/cutmix or use kd_loss 'kl'"
        )
    s, t = _prepare(student, teacher, temperature, standardize)
    n, c = s.shape
    target = F.one_hot(targets, c).bool()
    log_p_s, log_p_t = F.log_softmax(s, dim=1), F.log_softmax(t, dim=1)
    # Binary [target, rest] distributions, in log space.
    gt_s, gt_t = log_p_s[target], log_p_t[target]
    rest_s = torch.logsumexp(log_p_s[~target].view(n, c - 1), dim=1)
    rest_t = torch.logsumexp(log_p_t[~target].view(n, c - 1), dim=1)
    tckd = gt_t.exp() * (gt_t - gt_s) + rest_t.exp() * (rest_t - rest_s)
    # Non-target classes only, renormalised.
    nt_s = F.log_softmax(s[~target].view(n, c - 1), dim=1)
    nt_t = F.log_softmax(t[~target].view(n, c - 1), dim=1)
    nckd = (nt_t.exp() * (nt_t - nt_s)).sum(dim=1)
    return tckd, nckd


def dkd(
    student: Tensor,
    teacher: Tensor,
    targets: Tensor,
    temperature: float,
    *,
    alpha: float = 1.0,
    beta: float = 8.0,
    standardize: bool = False,
) -> Tensor:
    """``T^2 * (alpha * TCKD + beta * NCKD)``, mean over the batch (see the module docstring;
    mdistiller's CIFAR defaults are ``alpha=1, beta=8, T=4``)."""
    tckd, nckd = dkd_parts(student, teacher, targets, temperature, standardize=standardize)
    return (alpha * tckd + beta * nckd).mean() * temperature**2
