"""Class predictions as mmpretrain ``DataSample`` s (what mmpretrain's
``Accuracy`` scores): ``pred_score = softmax(logits)``, ``pred_label =
argmax``."""
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample


def classification_samples(logits: torch.Tensor,
                           data_samples: Optional[List] = None) -> List:
    """Set ``pred_score`` (N, C) and ``pred_label`` on ``data_samples``
    (new ``DataSample`` s when None) from ``logits`` (N, C)."""
    scores = F.softmax(logits.detach(), dim=1)
    labels = scores.argmax(dim=1, keepdim=True)
    if data_samples is None:
        data_samples = [DataSample() for _ in range(len(scores))]
    for sample, score, label in zip(data_samples, scores, labels):
        sample.set_pred_score(score).set_pred_label(label)
    return data_samples
