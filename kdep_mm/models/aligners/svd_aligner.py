"""Non-parametric dimension alignment of KDEP (He et al., "Knowledge
Distillation as Efficient Pre-training", CVPR 2022)."""
from typing import Optional, Tuple

import torch

from kdep_mm.registry import MODELS
from ..utils.principal_basis import PrincipalBasis
from .base_aligner import BaseAligner


def power_temperature_scaling(z: torch.Tensor, temperature: float = 0.1,
                              power: float = 3.) -> torch.Tensor:
    """PTS(z) = sign(z) * |z / T| ** (1 / n)  (elementwise, KDEP Eq. 4).

    Shrinks the large-variance leading PCA coordinates and spreads small ones,
    so that every kept direction contributes to the MSE.
    """
    return torch.sign(z) * (z / temperature).abs().pow(1. / power)


def checked_pts_args(temperature: float, power: Optional[float]):
    """(T, n) of PTS as floats (n None: PTS off); a ValueError naming
    ``aligner.temperature`` / ``aligner.power`` unless both are > 0."""
    if temperature <= 0:
        raise ValueError(f'aligner.temperature must be > 0, got '
                         f'{temperature}')
    if power is not None and power <= 0:
        raise ValueError(f'aligner.power must be > 0, got {power}')
    return float(temperature), None if power is None else float(power)


@MODELS.register_module()
class SVDAligner(BaseAligner, PrincipalBasis):
    """Project teacher features onto their top-k principal directions.

    With mu and V_k the :class:`PrincipalBasis` of the teacher features
    (C_t x k, k = C_s, sorted by variance; no whitening):

        target = PTS((f_t - mu) @ V_k),    student side unchanged.

    mu and V_k are fitted once before training (:meth:`fit_from_moments`, from
    float64 sums that can be all-reduced across ranks) and stay fixed: they
    are buffers, saved in checkpoints, never learned.

    Teacher dim smaller than student dim (C_t < C_s): PCA yields at most C_t
    directions, and KDEP gives no rule. We refuse it with an error that
    suggests ``ProjectorAligner`` rather than silently padding with zeros.

    Args:
        student_channels (int): C_s = k, the number of directions kept.
        teacher_channels (int): C_t.
        temperature (float): T of PTS. Defaults to 0.1.
        power (float): n of PTS. Defaults to 3. ``power=None`` disables PTS.
    """

    needs_fit = True

    def __init__(self,
                 student_channels: int,
                 teacher_channels: int,
                 temperature: float = 0.1,
                 power: Optional[float] = 3.,
                 init_cfg=None):
        super().__init__(student_channels, teacher_channels, init_cfg)
        if teacher_channels < student_channels:
            raise ValueError(
                f'aligner.teacher_channels ({teacher_channels}) is smaller '
                f'than aligner.student_channels ({student_channels}): the '
                'SVD basis of teacher features has at most teacher_channels '
                "directions. Use aligner=dict(type='ProjectorAligner', ...) "
                '(a learned student-side projection) for such pairs.')
        self.temperature, self.power = checked_pts_args(temperature, power)
        self.register_basis(teacher_channels, student_channels,
                            'aligner.student_channels')

    def forward(self, student: torch.Tensor,
                teacher: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if not self.is_fitted:
            raise RuntimeError(
                'SVDAligner is not fitted: add FitBasisHook to custom_hooks '
                '(or load a checkpoint or basis file that holds the basis)')
        self.check_shapes(student, teacher)
        with torch.no_grad():
            target = self.project(teacher.to(self.basis.dtype))
            if self.power is not None:
                target = power_temperature_scaling(target, self.temperature,
                                                   self.power)
        return student, target.to(student.dtype)
