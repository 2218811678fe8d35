"""The in-run collapse signal of feature distillation: how much of the
aligned target's variance the student explains on held-out data."""
import math
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from kdep_mm.registry import METRICS


def _as_vector(value) -> np.ndarray:
    """A tensor or array as a flat float64 numpy vector."""
    return torch.as_tensor(value).detach().cpu().double().numpy().reshape(-1)


@METRICS.register_module()
class ExplainedVarianceMetric(BaseMetric):
    """Fraction of the aligned target's variance that the student explains.

    Reads ``aligned_student`` (s_i) and ``aligned_target`` (t_i), the C-d
    vectors that :meth:`KDEPDistiller.predict` attaches to each prediction
    (the student feature after the aligner and the aligned teacher target,
    e.g. ``PTS((f_t - mu) @ V_k)``), and reports over the N validation
    samples::

        t_bar         = 1/N sum_i t_i                     (mean target)
        mse_student   = 1/(N C) sum_i ||s_i - t_i||^2
        mse_mean      = 1/(N C) sum_i ||t_bar - t_i||^2   (the best constant
                                                           predictor)
        explained_var = 1 - mse_student / mse_mean

    as ``distill/explained_var``, ``distill/mse_student`` and
    ``distill/mse_mean`` (plain MSEs, without the loss weight). 1 is a
    perfect student, 0 a student that does no better than always predicting
    the mean target, i.e. a *collapsed* one, negative is worse than that.
    The statistics are exact: per-sample values are gathered from all ranks
    (the sampler's padding removed) and reduced in float64 on rank 0.

    **Collapse warning.** When ``explained_var < warn_below`` (or is not
    finite: a constant target) at ``patience`` validations in a row, a
    WARNING naming both settings is logged at each such validation. The
    count lives in the metric, so it restarts with each process (a resumed
    run counts from its first validation).

    Args:
        warn_below (float): threshold of the warning. Defaults to 0.1: a
            student that explains less than 10% of the target's variance is
            barely past predicting the mean.
        patience (int): validations in a row below ``warn_below`` before the
            warning. Defaults to 2 (one low validation early in training is
            normal).
        collect_device (str): ``'cpu'`` or ``'gpu'``, for gathering results
            across ranks. Defaults to ``'cpu'``.
        prefix (str, optional): prefix of the metric names. Defaults to
            ``'distill'``.
    """

    default_prefix = 'distill'
    STUDENT_KEY = 'aligned_student'
    TARGET_KEY = 'aligned_target'

    def __init__(self,
                 warn_below: float = 0.1,
                 patience: int = 2,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix,
                         collect_dir=collect_dir)
        if not isinstance(warn_below, (int, float)) or not math.isfinite(
                warn_below):
            raise ValueError('val_evaluator (ExplainedVarianceMetric): '
                             f'warn_below must be a finite number, got '
                             f'{warn_below!r}')
        if not isinstance(patience, int) or isinstance(patience, bool) \
                or patience < 1:
            raise ValueError('val_evaluator (ExplainedVarianceMetric): '
                             f'patience must be an int >= 1, got '
                             f'{patience!r}')
        self.warn_below = float(warn_below)
        self.patience = patience
        self.low_streak = 0

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            missing = [k for k in (self.STUDENT_KEY, self.TARGET_KEY)
                       if k not in sample]
            if missing:
                raise KeyError(
                    'val_evaluator: ExplainedVarianceMetric needs predictions '
                    f'with {missing} (the aligned student output and target '
                    "that kdep_mm.KDEPDistiller's predict attaches); the "
                    'model in this config does not provide them (a logit-KD '
                    'model has no aligned target: use DistillLossMetric '
                    'alone)')
            s = _as_vector(sample[self.STUDENT_KEY])
            t = _as_vector(sample[self.TARGET_KEY])
            if s.shape != t.shape:
                raise ValueError(
                    'ExplainedVarianceMetric: aligned student and target '
                    f'differ in shape ({s.shape} vs {t.shape})')
            self.results.append(
                (float(np.square(s - t).sum()), t.astype(np.float32)))

    @staticmethod
    def explained_variance(sq_err: Sequence[float],
                           targets: np.ndarray) -> Dict[str, float]:
        """``explained_var``, ``mse_student``, ``mse_mean`` of the formula
        above from per-sample squared errors ``||s_i - t_i||^2`` (N,) and
        the targets (N, C)."""
        t = np.asarray(targets, np.float64)
        n, c = t.shape
        mse_student = float(np.sum(sq_err, dtype=np.float64)) / (n * c)
        mse_mean = float(np.square(t - t.mean(0)).sum()) / (n * c)
        ev = 1. - mse_student / mse_mean if mse_mean > 0 else float('nan')
        return dict(explained_var=ev, mse_student=mse_student,
                    mse_mean=mse_mean)

    def compute_metrics(self, results: List) -> Dict[str, float]:
        if not results:
            raise ValueError('ExplainedVarianceMetric: no validation '
                             'samples (check val_dataloader)')
        metrics = self.explained_variance([r[0] for r in results],
                                          np.stack([r[1] for r in results]))
        ev = metrics['explained_var']
        low = not math.isfinite(ev) or ev < self.warn_below
        self.low_streak = self.low_streak + 1 if low else 0
        if self.low_streak >= self.patience:
            print_log(
                f'COLLAPSE WARNING: the student explains {ev:.1%} of the '
                "aligned target's variance on the validation set "
                f'(mse {metrics["mse_student"]:.4g} vs '
                f'{metrics["mse_mean"]:.4g} for always predicting the mean '
                f'target), below warn_below={self.warn_below:g} for '
                f'{self.low_streak} validations in a row (patience='
                f'{self.patience}): it is close to predicting a constant. '
                'Check the learning rate and model.distill_loss.loss_weight '
                '(too high collapses small students), the augmentation '
                '(e.g. black padding) and model.teacher_ckpt. Tune this '
                "warning with val_evaluator's warn_below / patience.",
                logger='current', level=30)
        return metrics
