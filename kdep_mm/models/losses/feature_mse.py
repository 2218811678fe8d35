import torch
import torch.nn as nn

from kdep_mm.registry import MODELS


@MODELS.register_module()
class FeatureMSELoss(nn.Module):
    """KDEP's feature loss: loss_weight * mean((f_s - target) ** 2).

    Mean over batch and channels; no normalisation, no projector.

    Args:
        loss_weight (float): 20 for a supervised ResNet-50 teacher in KDEP
            (3 for the Microsoft Vision ResNet-50). Defaults to 1.
    """

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, student: torch.Tensor,
                target: torch.Tensor) -> torch.Tensor:
        if student.shape != target.shape:
            raise ValueError(f'FeatureMSELoss: student {tuple(student.shape)}'
                             f' and target {tuple(target.shape)} differ')
        return self.loss_weight * (student - target).pow(2).mean()
