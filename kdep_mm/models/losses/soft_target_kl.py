import torch
import torch.nn as nn
import torch.nn.functional as F

from kdep_mm.registry import MODELS


@MODELS.register_module()
class SoftTargetKLLoss(nn.Module):
    """KL divergence to a given soft target (the ensemble's distillation):

        loss = loss_weight * T^2 * mean_n sum_c p_nc (log p_nc - log q_nc),
        q = softmax(s / T),

    for student logits s (N, C) and target probabilities p (N, C), already
    tempered; zero-probability classes contribute nothing (``xlogy``).

    Args:
        temperature (float): T. Defaults to 1.
        loss_weight (float): Defaults to 1.
    """

    def __init__(self, temperature: float = 1.0, loss_weight: float = 1.0):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f'model.temperature must be > 0, got '
                             f'{temperature}')
        self.temperature = float(temperature)
        self.loss_weight = loss_weight

    def forward(self, student_logits: torch.Tensor,
                target_probs: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        # float32 under autocast: the loss is where bfloat16 would round
        student_logits = student_logits.to(torch.promote_types(
            student_logits.dtype, torch.float32))
        p = target_probs.detach().to(student_logits.dtype)
        log_q = F.log_softmax(student_logits / t, dim=1)
        kl = (torch.xlogy(p, p) - p * log_q).sum(1).mean()
        return self.loss_weight * kl * t * t
