"""Fit a distiller's aligner (KDEP's SVD basis) once, before training."""
import math
import os.path as osp
import time
from typing import Optional

import torch
from mmengine import dist
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.utils import ProgressBar

from kdep_mm.registry import HOOKS
from kdep_mm.utils.checkpoint import atomic_save, safe_torch_load

BASIS_KEYS = ('mean', 'basis', 'eigenvalues', 'num_fit_samples')


@torch.no_grad()
def fit_aligner(model, dataloader, num_samples: Optional[int] = None,
                logger=None, show_progress: bool = True) -> int:
    """Fit ``model.aligner`` from teacher features over ``dataloader``.

    Each rank runs the teacher (eval, no grad) on its shard of the data
    through ``model.data_preprocessor`` and accumulates float64 moments
    (sum f, sum f f^T, N); the moments are summed over ranks, every rank
    fits the same basis, and rank 0's copy is broadcast so that the buffers
    are bit-identical everywhere.

    Args:
        model: a distiller with ``aligner``, ``teacher_features`` and
            ``data_preprocessor``.
        dataloader: yields batches as the training loop does.
        num_samples (int, optional): images to use over all ranks; None =
            one pass over the dataloader.

    Returns:
        int: the number of teacher features the basis was fitted on.
    """
    aligner = model.aligner
    world = dist.get_world_size()
    per_rank = None if num_samples is None else math.ceil(num_samples / world)
    total = len(dataloader.dataset) if per_rank is None else per_rank * world
    bar = ProgressBar(total) if (show_progress and dist.is_main_process()
                                 and total) else None
    feat_sum = feat_outer = None
    count = 0
    t0 = time.time()
    for batch in dataloader:
        data = model.data_preprocessor(batch, False)
        feats = model.teacher_features(data['inputs'])
        if per_rank is not None:
            feats = feats[:per_rank - count]
        s, o, n = aligner.moments(feats)
        feat_sum = s if feat_sum is None else feat_sum + s
        feat_outer = o if feat_outer is None else feat_outer + o
        count += n
        if bar is not None:
            for _ in range(n * world):
                bar.update()
        if per_rank is not None and count >= per_rank:
            break
    if feat_sum is None:
        raise ValueError('the aligner fit got no data: the dataloader is '
                         'empty')
    count_t = torch.tensor([float(count)], dtype=torch.float64,
                           device=feat_sum.device)
    dist.all_reduce(feat_sum, op='sum')
    dist.all_reduce(feat_outer, op='sum')
    dist.all_reduce(count_t, op='sum')
    aligner.fit_from_moments(feat_sum, feat_outer, int(count_t.item()))
    for key in BASIS_KEYS:
        dist.broadcast(getattr(aligner, key), src=0)
    if bar is not None:
        print()
    if logger is not None:
        ev = aligner.eigenvalues.double()
        kept = (ev[:aligner.student_channels].sum() / ev.sum().clamp_min(
            1e-12)).item()
        logger.info(
            f'aligner fitted on {int(count_t.item())} teacher features in '
            f'{time.time() - t0:.1f}s: {aligner.student_channels} of '
            f'{aligner.teacher_channels} directions keep {kept:.1%} of the '
            'variance')
    return int(count_t.item())


def save_basis(aligner, path: str, meta: dict) -> None:
    """Write the fitted basis to ``path`` atomically."""
    atomic_save({
        'basis': {k: getattr(aligner, k).cpu()
                  for k in BASIS_KEYS},
        'meta': meta
    }, path)


def load_basis(aligner, path: str, meta: dict) -> None:
    """Load a basis written by :func:`save_basis`, refusing a mismatch.

    Raises:
        ValueError: the file's teacher fingerprint, feature layer or shapes
            differ from the current model's.
    """
    obj = safe_torch_load(path)
    if not isinstance(obj, dict) or 'basis' not in obj or 'meta' not in obj:
        raise ValueError(f'basis_file: {path} is not a kdep_mm basis file')
    for key in ('teacher_fingerprint', 'teacher_feature', 'teacher_channels',
                'student_channels'):
        if obj['meta'].get(key) != meta.get(key):
            raise ValueError(
                f'basis_file: {path} was fitted for {key}='
                f'{obj["meta"].get(key)!r}, the current model has '
                f'{meta.get(key)!r}; delete the file to refit')
    for key in BASIS_KEYS:
        buf = getattr(aligner, key)
        value = obj['basis'][key]
        if tuple(value.shape) != tuple(buf.shape):
            raise ValueError(f'basis_file: {path} holds {key} of shape '
                             f'{tuple(value.shape)}, expected '
                             f'{tuple(buf.shape)}')
        buf.copy_(value.to(buf))


@HOOKS.register_module()
class FitAlignerHook(Hook):
    """Fit the distiller's aligner once, before the first training step.

    Order of precedence in ``before_train``:
    1. the aligner is already fitted (a resumed or ``load_from`` checkpoint
       holds its buffers): nothing to do, the basis is never refitted;
    2. ``basis_file`` exists: load it (refused if it belongs to another
       teacher, feature layer or dimension);
    3. otherwise fit on ``num_samples`` images of the training dataloader
       (training pipeline, teacher in eval mode) with a progress bar, and
       write ``basis_file`` (rank 0, atomically) if given.

    Before the fit (3.), a fit that cannot succeed is refused at once,
    before the teacher runs on any image: the SVD needs more than
    ``aligner.student_channels`` (k, the student width) teacher features,
    and the fit gets at most ``len(train_dataloader.dataset)`` of them (and
    ``num_samples`` rounded up to a multiple of the world size); the
    ``ValueError`` names ``FitAlignerHook.num_samples``, the dataset length
    and the student width.

    Args:
        num_samples (int, optional): images used for the fit, over all
            ranks; None = one full pass over the training data.
        basis_file (str, optional): where to reuse / save the basis.
            Relative paths are taken under the work dir.
    """

    priority = 'VERY_HIGH'

    def __init__(self, num_samples: Optional[int] = None,
                 basis_file: Optional[str] = None):
        if num_samples is not None and (not isinstance(num_samples, int)
                                        or num_samples <= 0):
            raise ValueError('FitAlignerHook.num_samples must be a positive '
                             f'int or None, got {num_samples!r}')
        self.num_samples = num_samples
        self.basis_file = basis_file

    @staticmethod
    def basis_meta(model) -> dict:
        return dict(
            teacher_fingerprint=model.teacher_fingerprint(),
            teacher_ckpt=model.teacher_ckpt,
            teacher_feature=model.teacher_feature,
            teacher_channels=model.aligner.teacher_channels,
            student_channels=model.aligner.student_channels)

    def check_fit_size(self, runner, aligner) -> None:
        """Refuse (``ValueError``) a fit that would see no more than
        ``aligner.student_channels`` features (see the class doc)."""
        k = int(aligner.student_channels)
        length = len(runner.train_dataloader.dataset)
        most = length
        if self.num_samples is not None:
            world = dist.get_world_size()
            most = min(most, math.ceil(self.num_samples / world) * world)
        if most <= k:
            raise ValueError(
                f'FitAlignerHook.num_samples = {self.num_samples}: the SVD '
                f'fit would see at most {most} teacher features '
                f'(train_dataloader.dataset has {length} images) but needs '
                f'more than aligner.student_channels = {k} (the student '
                'width, k); use a larger dataset (or num_samples) or a '
                'narrower student (refused before the teacher pass)')

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        aligner = getattr(model, 'aligner', None)
        if aligner is None or not getattr(aligner, 'needs_fit', False):
            return
        if aligner.is_fitted:
            runner.logger.info(
                'aligner basis restored from the checkpoint (fitted on '
                f'{int(aligner.num_fit_samples)} features); not refitting')
            return
        path = self.basis_file
        if path is not None and not osp.isabs(path):
            path = osp.join(runner.work_dir, path)
        meta = self.basis_meta(model)
        if path is not None and osp.isfile(path):
            load_basis(aligner, path, meta)
            runner.logger.info(f'aligner basis loaded from {path}')
            return
        self.check_fit_size(runner, aligner)
        runner.logger.info(
            'fitting the aligner on teacher features of '
            f'{self.num_samples or "all"} training images')
        fit_aligner(model, runner.train_dataloader, self.num_samples,
                    logger=runner.logger)
        if path is not None and dist.is_main_process():
            save_basis(aligner, path, meta)
            runner.logger.info(f'aligner basis written to {path}')
