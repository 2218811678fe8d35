from typing import Dict, List, Sequence

import torch
from mmengine.evaluator import BaseMetric

from kdep_mm.registry import METRICS


@METRICS.register_module()
class DistillLossMetric(BaseMetric):
    """Mean per-sample distillation loss on held-out data.

    Reads ``distill_loss`` from each prediction of a distiller's ``predict``
    and reports its mean as ``distill/loss`` (lower is better): how well the
    student reproduces the teacher's (aligned) features on images it was not
    trained on.
    """

    default_prefix = 'distill'

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if 'distill_loss' not in sample:
                raise KeyError('DistillLossMetric needs predictions with a '
                               "'distill_loss' field (a distiller's predict)")
            self.results.append(float(sample['distill_loss']))

    def compute_metrics(self, results: List[float]) -> Dict[str, float]:
        return dict(loss=float(torch.tensor(results).mean()))
