from .distill_loss_metric import DistillLossMetric
from .explained_variance import ExplainedVarianceMetric

__all__ = ['DistillLossMetric', 'ExplainedVarianceMetric']
