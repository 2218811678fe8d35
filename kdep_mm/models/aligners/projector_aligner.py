"""Parametric alignment baselines: FitNets-style projector and identity."""
from typing import Optional, Tuple

import torch
import torch.nn as nn

from kdep_mm.registry import MODELS
from .base_aligner import BaseAligner
from .svd_aligner import checked_pts_args, power_temperature_scaling


@MODELS.register_module()
class ProjectorAligner(BaseAligner):
    """Learned student-side projection (FitNets, Romero et al., ICLR 2015).

        student_aligned = W f_s + b   (W: C_t x C_s),   target = f_t,

    or, with ``power`` set (KDEP's ablation "a learned projector in place of
    the SVD", PTS kept), target = PTS(f_t) = sign(f_t) |f_t / T|^(1/n).

    On pooled features this is the 1x1-conv regressor of FitNets. It is
    trained with the student and thrown away at export: the baseline KDEP's
    non-parametric alignment replaces.

    Args:
        student_channels (int): C_s.
        teacher_channels (int): C_t.
        bias (bool): a bias in the projection. Defaults to True.
        temperature (float): T of PTS on the target. Defaults to 0.1.
        power (float, optional): n of PTS on the target; None (default)
            leaves the target raw (FitNets).
    """

    def __init__(self, student_channels: int, teacher_channels: int,
                 bias: bool = True, temperature: float = 0.1,
                 power: Optional[float] = None, init_cfg=None):
        super().__init__(student_channels, teacher_channels, init_cfg)
        self.temperature, self.power = checked_pts_args(temperature, power)
        self.proj = nn.Linear(student_channels, teacher_channels, bias=bias)

    def forward(self, student: torch.Tensor,
                teacher: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        self.check_shapes(student, teacher)
        target = teacher.detach()
        if self.power is not None:
            target = power_temperature_scaling(target, self.temperature,
                                               self.power)
        return self.proj(student), target


@MODELS.register_module()
class IdentityAligner(BaseAligner):
    """No alignment: target = f_t, for students whose dim equals the
    teacher's (C_s == C_t)."""

    def __init__(self, student_channels: int, teacher_channels: int,
                 init_cfg=None):
        super().__init__(student_channels, teacher_channels, init_cfg)
        if student_channels != teacher_channels:
            raise ValueError(
                f'IdentityAligner needs aligner.student_channels == '
                f'aligner.teacher_channels, got {student_channels} and '
                f'{teacher_channels}; use SVDAligner or ProjectorAligner')

    def forward(self, student: torch.Tensor,
                teacher: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        self.check_shapes(student, teacher)
        return student, teacher.detach()
