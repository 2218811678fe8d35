"""Non-parametric dimension alignment of KDEP (He et al., "Knowledge
Distillation as Efficient Pre-training", CVPR 2022)."""
from typing import Optional, Tuple

import torch

from kdep_mm.registry import MODELS
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
class SVDAligner(BaseAligner):
    """Project teacher features onto their top-k principal directions.

    With teacher features F (N x C_t), mean mu and centred F_c = F - mu, the
    basis V_k (C_t x k) holds the first k right-singular vectors of F_c (the
    top-k eigenvectors of F_c^T F_c, sorted by variance; no whitening),
    k = C_s. Then

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
        self.register_buffer('mean', torch.zeros(teacher_channels))
        self.register_buffer('basis',
                             torch.zeros(teacher_channels, student_channels))
        # full eigen-spectrum of the teacher covariance, descending
        self.register_buffer('eigenvalues', torch.zeros(teacher_channels))
        self.register_buffer('num_fit_samples', torch.zeros((),
                                                            dtype=torch.long))

    @property
    def is_fitted(self) -> bool:
        return bool(self.num_fit_samples.item() > 0)

    @staticmethod
    def moments(features: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor, int]:
        """float64 (sum f, sum f f^T, N) of features (N, C): additive, so
        moments of shards (or ranks) can be summed before fitting."""
        f = features.detach().to(torch.float64)
        return f.sum(0), f.T @ f, f.shape[0]

    @torch.no_grad()
    def fit_from_moments(self, feat_sum: torch.Tensor,
                         feat_outer: torch.Tensor, count: int) -> None:
        """Fit mu and V_k from float64 moments of N teacher features.

        Covariance C = (sum f f^T - N mu mu^T); V_k = its top-k
        eigenvectors, each column's sign fixed so that its entry of largest
        magnitude is positive (deterministic across runs and ranks).

        Raises:
            ValueError: N <= k (the centred matrix has rank <= N - 1, so k
                directions are not determined).
        """
        count = int(count)
        k = self.student_channels
        if count <= k:
            raise ValueError(
                f'the aligner fit saw {count} teacher features but needs more '
                f'than aligner.student_channels = {k} of them (the centred '
                f'feature matrix has rank <= N - 1); raise the fit hook\'s '
                f'num_samples or use more data')
        feat_sum = feat_sum.to(torch.float64)
        mean = feat_sum / count
        cov = feat_outer.to(torch.float64) - count * torch.outer(mean, mean)
        cov = (cov + cov.T) / 2
        evals, evecs = torch.linalg.eigh(cov.cpu())
        order = torch.argsort(evals, descending=True)
        evals, evecs = evals[order], evecs[:, order]
        basis = evecs[:, :k]
        idx = basis.abs().argmax(0)
        signs = torch.sign(basis[idx, torch.arange(k)])
        signs[signs == 0] = 1
        basis = basis * signs
        self.mean.copy_(mean.to(self.mean))
        self.basis.copy_(basis.to(self.basis))
        self.eigenvalues.copy_(evals.clamp_min(0).to(self.eigenvalues))
        self.num_fit_samples.fill_(count)

    def fit(self, features: torch.Tensor) -> None:
        """Fit from a feature matrix (N, C_t) held in memory."""
        self.fit_from_moments(*self.moments(features))

    def project(self, teacher: torch.Tensor) -> torch.Tensor:
        """z = (f_t - mu) @ V_k, shape (N, k)."""
        return (teacher - self.mean) @ self.basis

    def forward(self, student: torch.Tensor,
                teacher: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if not self.is_fitted:
            raise RuntimeError(
                'SVDAligner is not fitted: add FitAlignerHook to custom_hooks '
                '(or load a checkpoint or basis file that holds the basis)')
        self.check_shapes(student, teacher)
        with torch.no_grad():
            target = self.project(teacher.to(self.basis.dtype))
            if self.power is not None:
                target = power_temperature_scaling(target, self.temperature,
                                                   self.power)
        return student, target.to(student.dtype)
