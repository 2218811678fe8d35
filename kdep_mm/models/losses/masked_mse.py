import torch
import torch.nn as nn

from kdep_mm.registry import MODELS


@MODELS.register_module()
class MaskedMSELoss(nn.Module):
    """TCS's coordinate loss, the squared error over the active coordinates:

        loss = loss_weight * sum_{n, j} m_j (s_nj - t_nj)^2 / (N * max(sum m, 1))

    for student / target coordinates (N, k) and a 0/1 mask m (k,); masked
    coordinates contribute nothing.

    Args:
        loss_weight (float): Defaults to 1.
    """

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, student: torch.Tensor, target: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        # float32 under autocast: the loss is where bfloat16 would round
        f32 = torch.promote_types(student.dtype, torch.float32)
        student, target = student.to(f32), target.to(f32)
        m = mask.to(student.dtype)
        diff = (student - target.to(student.dtype)) * m
        active = m.sum().clamp_min(1)
        return self.loss_weight * diff.pow(2).sum() / (student.shape[0] *
                                                       active)
