import torch
import torch.nn as nn
import torch.nn.functional as F

from kdep_mm.registry import MODELS


@MODELS.register_module()
class KDLoss(nn.Module):
    """Hinton logit distillation ("Distilling the Knowledge in a Neural
    Network", 2015):

        loss = loss_weight * T^2 * mean_i KL(softmax(t_i / T) || softmax(s_i / T))

    KL summed over classes, averaged over the batch ("batchmean").

    Args:
        temperature (float): T. Defaults to 4.
        loss_weight (float): Defaults to 1.
    """

    def __init__(self, temperature: float = 4.0, loss_weight: float = 1.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'distill_loss.temperature must be > 0, got '
                             f'{temperature}')
        self.temperature = temperature
        self.loss_weight = loss_weight

    def forward(self, student_logits: torch.Tensor,
                teacher_logits: torch.Tensor) -> torch.Tensor:
        if student_logits.shape != teacher_logits.shape:
            raise ValueError(
                f'KDLoss: student logits {tuple(student_logits.shape)} and '
                f'teacher logits {tuple(teacher_logits.shape)} differ')
        t = self.temperature
        log_p_s = F.log_softmax(student_logits / t, dim=1)
        log_p_t = F.log_softmax(teacher_logits.detach() / t, dim=1)
        kl = F.kl_div(log_p_s, log_p_t, reduction='batchmean',
                      log_target=True)
        return self.loss_weight * t * t * kl
