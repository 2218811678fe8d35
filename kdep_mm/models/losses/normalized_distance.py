import torch
import torch.nn as nn
import torch.nn.functional as F

from kdep_mm.registry import MODELS


@MODELS.register_module()
class NormalizedDistanceLoss(nn.Module):
    """DMAE's feature distance on per-token L2-normalised features:

        n(x) = x / ||x||_2 (last dim)
        loss = loss_weight * mean |n(s) - n(t)|        ('l1')
        loss = loss_weight * mean (n(s) - n(t))^2      ('l2')

    the mean over every element of the (B, L, C) tokens.

    Args:
        distance (str): ``'l1'`` (default) or ``'l2'``.
        loss_weight (float): Defaults to 1.
    """

    def __init__(self, distance: str = 'l1', loss_weight: float = 1.0):
        super().__init__()
        if distance not in ('l1', 'l2'):
            raise ValueError("model.distill_distance must be 'l1' or 'l2', "
                             f'got {distance!r}')
        self.distance = distance
        self.loss_weight = loss_weight

    def forward(self, student: torch.Tensor,
                target: torch.Tensor) -> torch.Tensor:
        # float32 under autocast: the loss is where bfloat16 would round
        f32 = torch.promote_types(student.dtype, torch.float32)
        student = F.normalize(student.to(f32), dim=-1)
        target = F.normalize(target.to(f32), dim=-1)
        if self.distance == 'l1':
            return self.loss_weight * F.l1_loss(student, target)
        return self.loss_weight * F.mse_loss(student, target)
