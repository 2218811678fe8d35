from .distill_loss_metric import DistillLossMetric

__all__ = ['DistillLossMetric']
