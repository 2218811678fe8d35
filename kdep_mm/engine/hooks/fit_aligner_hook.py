"""Fit a distiller's principal basis (KDEP's SVD aligner, TCS's coordinate
system) once, before training: the one fitting routine (online teacher
pass or teacher store, both through ``fit_principal_basis``) and KDEP's
hook."""
import math
import os.path as osp
import time
from typing import Optional

import numpy as np
import torch
from mmengine import dist
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.utils import ProgressBar

from kdep_mm.models.utils.principal_basis import (BASIS_KEYS, PrincipalBasis,
                                                  fit_principal_basis)
from kdep_mm.registry import HOOKS
from kdep_mm.utils.checkpoint import atomic_save, safe_torch_load


def unwrap_model(model):
    return model.module if is_model_wrapper(model) else model


def _teacher_feature_batches(model, dataloader):
    for batch in dataloader:
        data = model.data_preprocessor(batch, False)
        yield model.teacher_features(data['inputs'])


@torch.no_grad()
def fit_basis_online(model, basis: PrincipalBasis, dataloader,
                     num_samples: Optional[int] = None,
                     show_progress: bool = True) -> int:
    """Fit ``basis`` from the teacher features of ``dataloader``.

    Each rank runs ``model.teacher_features`` (eval, no grad) on its shard
    of the data through ``model.data_preprocessor``; the float64 moments are
    summed over ranks and rank 0's basis is broadcast
    (:func:`fit_principal_basis`).

    Args:
        model: a distiller with ``teacher_features`` and
            ``data_preprocessor``.
        basis: the :class:`PrincipalBasis` to fit (KDEP's ``aligner``,
            TCS's ``coords``).
        dataloader: yields batches as the training loop does.
        num_samples (int, optional): images over all ranks
            (``ceil(num_samples / world)`` per rank); None = one pass.

    Returns:
        int: the number of teacher features fitted on.
    """
    model = unwrap_model(model)
    world = dist.get_world_size()
    per_rank = None if num_samples is None else math.ceil(num_samples / world)
    bar = None
    if show_progress and dist.is_main_process():
        total = len(dataloader.dataset) if per_rank is None else \
            per_rank * world
        bar = ProgressBar(total) if total else None

    def advance(n):
        for _ in range(n * world):
            bar.update()

    count = fit_principal_basis(basis,
                                _teacher_feature_batches(model, dataloader),
                                limit=per_rank,
                                on_batch=advance if bar else None)
    if bar is not None:
        print()
    return count


@torch.no_grad()
def fit_basis_from_store(basis: PrincipalBasis, store, field: str = 'feat',
                         chunk: int = 4096) -> int:
    """Fit ``basis`` from every view of every sample of a teacher store's
    ``field`` (a ``TeacherStore``), streaming its memory-mapped shards in
    float64 chunks; every rank reads the whole store, so nothing is
    exchanged between ranks. Returns the number of features fitted on."""

    def batches():
        for shard in range(store.num_shards):
            arr = store.shard_arrays(shard)[field]
            flat = arr.reshape(-1, *arr.shape[2:])
            for start in range(0, flat.shape[0], chunk):
                yield torch.from_numpy(
                    np.asarray(flat[start:start + chunk], dtype=np.float64))

    try:
        return fit_principal_basis(basis, batches(), across_ranks=False)
    except ValueError as e:
        if store.num_samples == 0:
            raise ValueError(f'teacher store {store.root} is empty') from e
        raise


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
        model = unwrap_model(runner.model)
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
        t0 = time.time()
        n = fit_basis_online(model, aligner, runner.train_dataloader,
                             self.num_samples)
        runner.logger.info(
            f'aligner fitted on {n} teacher features in '
            f'{time.time() - t0:.1f}s: {aligner.student_channels} of '
            f'{aligner.teacher_channels} directions keep '
            f'{aligner.explained_variance():.1%} of the variance')
        if path is not None and dist.is_main_process():
            save_basis(aligner, path, meta)
            runner.logger.info(f'aligner basis written to {path}')
