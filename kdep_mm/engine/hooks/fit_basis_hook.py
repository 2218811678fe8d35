"""Fit a distiller's principal basis (KDEP's SVD aligner, TCS's coordinate
system) once, before training: the one fitting routine (online teacher
pass or teacher store, both through ``fit_principal_basis``) and the one
hook that drives it, :class:`FitBasisHook`."""
import math
import os.path as osp
import time
from typing import Optional

import numpy as np
import torch
from mmengine import dist
from mmengine.dataset import DefaultSampler, InfiniteSampler
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.utils import ProgressBar
from torch.utils.data import DataLoader

from kdep_mm.datasets.store import TeacherStore
from kdep_mm.models.utils.principal_basis import (BASIS_KEYS, BasisFit,
                                                  PrincipalBasis,
                                                  fit_principal_basis)
from kdep_mm.registry import HOOKS
from kdep_mm.utils.checkpoint import atomic_save, safe_torch_load

from .check_stores_hook import (PIPELINE_KEY, check_online_teacher,
                                check_store_against_run,
                                check_teacher_checkpoint, pipeline_transforms,
                                stored_view_stores)

HOOK_KEY = 'custom_hooks: FitBasisHook'


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
            (``ceil(num_samples / world)`` per rank); None = one pass,
            ``len(dataloader.dataset)`` images over all ranks (also for an
            endless loader: ``InfiniteSampler`` of an iteration-based
            schedule).

    Returns:
        int: the number of teacher features fitted on.
    """
    model = unwrap_model(model)
    world = dist.get_world_size()
    if num_samples is None:  # one pass, even from an endless sampler
        num_samples = len(dataloader.dataset)
    per_rank = math.ceil(num_samples / world)
    bar = None
    if show_progress and dist.is_main_process():
        bar = ProgressBar(per_rank * world) if per_rank else None

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


def one_pass_loader(dataloader):
    """The loader the online fit iterates: ``dataloader`` itself, or, when
    its sampler is an endless ``InfiniteSampler`` (iteration-based
    schedules), a one-pass loader over the same dataset, batch size, collate
    function and workers with a ``DefaultSampler`` of the same shuffle and
    seed. (Iterating the training loader itself would close the
    InfiniteSampler's shared index generator when the fit's iterator is
    dropped, and the training loop's next batch would raise
    StopIteration.)"""
    sampler = getattr(dataloader, 'sampler', None)
    if not isinstance(sampler, InfiniteSampler):
        return dataloader
    return DataLoader(
        dataloader.dataset, batch_size=dataloader.batch_size,
        sampler=DefaultSampler(dataloader.dataset, shuffle=sampler.shuffle,
                               seed=sampler.seed),
        num_workers=dataloader.num_workers,
        collate_fn=dataloader.collate_fn, pin_memory=dataloader.pin_memory,
        worker_init_fn=dataloader.worker_init_fn)


@torch.no_grad()
def fit_basis_from_store(fit: BasisFit, store, field: str = 'feat',
                         source: Optional[str] = None,
                         chunk: int = 4096) -> int:
    """Fit the declared basis ``fit`` (a distiller's ``basis_fit()``) from
    every view of every sample of a teacher store's ``field``, streaming its
    memory-mapped shards in float64 chunks; every rank reads the whole
    store, so nothing is exchanged between ranks.

    ``store``: a ``TeacherStore`` or its root (then opened with
    verification). A missing field, features of another width than
    ``fit.teacher_channels`` or a store of no more than k features
    (samples x views) are refused before any shard is read; ``source``
    (the config key) prefixes the errors. Returns the number of features.
    """
    if isinstance(store, str):
        store = TeacherStore(store)
    if field not in store.fields:
        raise ValueError(f'teacher store {store.root} has no field {field!r}'
                         f' (fields: {sorted(store.fields)})')
    where = f'teacher store {store.root} field {field!r}'
    if source is not None:
        where = f'{source}: {where}'
    fit.check_count(store.num_samples * store.num_views,
                    f'{where} ({store.num_samples} samples x '
                    f'{store.num_views} views)')
    spec = store.fields[field]
    if list(spec['shape']) != [fit.teacher_channels]:
        raise ValueError(f'{where}: features of shape {spec["shape"]}, '
                         f'{fit.channels_key} is {fit.teacher_channels}')

    def batches():
        for shard in range(store.num_shards):
            arr = store.shard_arrays(shard)[field]
            flat = arr.reshape(-1, *arr.shape[2:])
            for start in range(0, flat.shape[0], chunk):
                yield torch.from_numpy(
                    np.asarray(flat[start:start + chunk], dtype=np.float64))

    return fit_principal_basis(fit.basis, batches(), across_ranks=False)


def save_basis(basis: PrincipalBasis, path: str, meta: dict) -> None:
    """Write the fitted basis and its identity ``meta`` to ``path``
    atomically."""
    atomic_save({
        'basis': {k: getattr(basis, k).cpu()
                  for k in BASIS_KEYS},
        'meta': meta
    }, path)


def load_basis(basis: PrincipalBasis, path: str, meta: dict) -> None:
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
        buf = getattr(basis, key)
        value = obj['basis'][key]
        if tuple(value.shape) != tuple(buf.shape):
            raise ValueError(f'basis_file: {path} holds {key} of shape '
                             f'{tuple(value.shape)}, expected '
                             f'{tuple(buf.shape)}')
        buf.copy_(value.to(buf))


def _same_path(a: str, b: str) -> bool:
    return osp.realpath(osp.abspath(a)) == osp.realpath(osp.abspath(b))


@HOOKS.register_module()
class FitBasisHook(Hook):
    """Fit the principal basis the model declares (``model.basis_fit()``, a
    :class:`BasisFit`: KDEP's SVD aligner, TCS's coordinate system) once,
    before the first training step; a model that declares none (e.g. KDEP
    with a ``ProjectorAligner``) is left alone.

    Order in ``before_train``:

    1. on every run (resumed ones too), the teacher stores in use are
       checked against the run (below), and a warning is logged when the
       model needs a hook that the run lacks (``BasisFit.driven_by``: TCS's
       ``TCSTailoringHook``);
    2. the basis is already fitted (a resumed or ``load_from`` checkpoint
       holds its buffers): nothing to do, it is never refitted;
    3. ``basis_file`` exists: load it (refused if it belongs to another
       teacher, feature layer or dimension: ``BasisFit.identity``);
    4. otherwise fit it from ``store`` (a teacher store root, for a basis
       with ``BasisFit.from_store``), or online on ``num_samples`` images of
       the training dataloader (training pipeline, teacher in eval mode,
       float64 moments all-reduced over ranks, rank 0's basis broadcast),
       and write ``basis_file`` (rank 0, atomically) if given.

    A fit that cannot succeed is refused before any work (before the
    teacher runs on any image, before any shard is read): the PCA needs
    more than k (``BasisFit.basis.components_key``) teacher features; an
    online fit gets at most ``len(train_dataloader.dataset)`` of them (and
    ``num_samples`` rounded up to a multiple of the world size), a store
    ``num_samples x num_views``. The ``ValueError`` names
    ``FitBasisHook.num_samples`` (or ``.store``), the dataset length and k.

    The store checks (``ValueError`` naming the config key; the stores are
    opened with verification: each shard's sha256 once, then its verified
    marker): ``store`` and every one-store ``ApplyStoredView``'s
    ``store.root`` (``train_dataloader.dataset.pipeline[i].store.root``)
    are the same directory; each store was cached from the training dataset
    (same length, ``ann_file`` and image paths in index order); the image
    loading right before each ``ApplyStoredView`` decodes as the caching
    side did (manifest ``decoder``); ``num_views`` (if given) is the store's
    view count; the teacher: ``teacher_fingerprint`` (if given) is the
    manifest's weights fingerprint, the sha256 of the file
    ``teacher_checkpoint`` (if given; or ``teacher_checkpoint_sha256``) is
    the manifest's ``teacher_checkpoint_sha256``, an online teacher's
    fingerprint is the manifest's (``model.teacher_ckpt``); the ``field``
    holds ``(BasisFit.teacher_channels,)`` features.

    Args:
        num_samples (int, optional): images of the online fit, over all
            ranks; None = one full pass over the training data.
        basis_file (str, optional): where to reuse / save the basis (a basis
            with ``BasisFit.identity``). Relative paths are taken under the
            work dir.
        store (str, optional): teacher store root to fit from; None =
            online fit.
        field (str): store field holding the pooled teacher features.
        num_views (int, optional): the view count the stores must have.
        teacher_checkpoint (str, optional): the teacher weights (path or
            URL) the stores must have been cached with, compared by the
            file's sha256 (the teacher is not built).
        teacher_fingerprint (str, optional): the sha256 of the weights the
            stores' teacher must have (printed by ``tools/cache_teacher.py``).
        teacher_checkpoint_sha256 (str, optional): the sha256 of the
            checkpoint file, instead of ``teacher_checkpoint`` (when the file
            is not on the training machine).
    """

    priority = 'VERY_HIGH'

    def __init__(self, num_samples: Optional[int] = None,
                 basis_file: Optional[str] = None,
                 store: Optional[str] = None, field: str = 'feat',
                 num_views: Optional[int] = None,
                 teacher_checkpoint: Optional[str] = None,
                 teacher_fingerprint: Optional[str] = None,
                 teacher_checkpoint_sha256: Optional[str] = None):
        if num_samples is not None and (not isinstance(num_samples, int)
                                        or num_samples <= 0):
            raise ValueError(f'{HOOK_KEY}.num_samples must be a positive '
                             f'int or None, got {num_samples!r}')
        self.num_samples = num_samples
        self.basis_file = basis_file
        self.store, self.field, self.num_views = store, field, num_views
        self.teacher_checkpoint = teacher_checkpoint
        self.teacher_fingerprint = teacher_fingerprint
        self.teacher_checkpoint_sha256 = teacher_checkpoint_sha256

    # ------------------------------------------------------------ checks
    def check_options(self, model, fit: BasisFit) -> None:
        """Refuse options the declared basis does not take."""
        owner = f"{type(model).__name__}'s {fit.name}"
        if self.store is not None and not fit.from_store:
            raise ValueError(f'{HOOK_KEY}.store: {owner} is fitted online on '
                             'the training data, not from a teacher store; '
                             'remove store')
        if self.basis_file is not None and fit.identity is None:
            raise ValueError(f'{HOOK_KEY}.basis_file: {owner} is not saved '
                             'to basis files (its checkpoints hold it); '
                             'remove basis_file')

    def check_stores(self, runner, model, fit: BasisFit) -> Optional[object]:
        """The store checks of the class doc (``ValueError``); returns the
        opened ``store`` (None without one)."""
        dataset = runner.train_dataloader.dataset
        transforms = pipeline_transforms(dataset)
        stores = []
        if self.store is not None:
            if not osp.isdir(self.store):
                raise ValueError(f'{HOOK_KEY}.store: teacher store '
                                 f'{self.store} not found')
            stores.append((f'{HOOK_KEY}.store', TeacherStore(self.store),
                           None))
        for i, st in stored_view_stores(dataset):
            key = f'{PIPELINE_KEY}[{i}].store.root'
            if self.store is not None and not _same_path(st.root,
                                                         self.store):
                raise ValueError(
                    f'{key} is {st.root} but {HOOK_KEY}.store is '
                    f'{osp.abspath(self.store)}: the {fit.name} would be '
                    'fitted on one store and trained on another; point both '
                    'at the same store (one config variable)')
            stores.append((key, st, i))
        ident = None
        self._store_fingerprint = stores[0][1].manifest.get(
            'teacher_fingerprint') if stores else None
        for key, st, index in stores:
            ident = check_store_against_run(st, key, dataset, transforms,
                                             index, ident)
            if self.num_views is not None and \
                    st.num_views != int(self.num_views):
                raise ValueError(
                    f'{HOOK_KEY}.num_views is {self.num_views} but teacher '
                    f'store {st.root} ({key}) has {st.num_views} views per '
                    'image: cache it with --views '
                    f'{self.num_views} or change num_views')
            fp = st.manifest.get('teacher_fingerprint')
            if self.teacher_fingerprint is not None and \
                    fp != self.teacher_fingerprint:
                raise ValueError(
                    f'{HOOK_KEY}.teacher_fingerprint is '
                    f'{self.teacher_fingerprint} but teacher store '
                    f'{st.root} ({key}) was cached with teacher {fp}: a '
                    'store from another teacher')
            check_teacher_checkpoint(
                st, f'{HOOK_KEY}.teacher_checkpoint', key,
                self.teacher_checkpoint, self.teacher_checkpoint_sha256)
            teacher = getattr(model, 'teacher', None)
            if teacher is not None:
                check_online_teacher(st, key, teacher, model.teacher_ckpt)
            spec = st.fields.get(self.field)
            if spec is None:
                raise ValueError(
                    f'{HOOK_KEY}.field: teacher store {st.root} ({key}) has '
                    f'no field {self.field!r} (fields: {sorted(st.fields)})')
            if list(spec['shape']) != [fit.teacher_channels]:
                raise ValueError(
                    f'teacher store {st.root} ({key}): field {self.field!r} '
                    f'has shape {spec["shape"]}, {fit.channels_key} is '
                    f'{fit.teacher_channels}')
        return stores[0][1] if self.store is not None else None

    def check_fit_size(self, runner, fit: BasisFit) -> None:
        """Refuse (``ValueError``) an online fit that would see no more than
        k features (see the class doc)."""
        k = fit.num_components
        length = len(runner.train_dataloader.dataset)
        most = length
        if self.num_samples is not None:
            world = dist.get_world_size()
            most = min(most, math.ceil(self.num_samples / world) * world)
        if most <= k:
            raise ValueError(
                f'{HOOK_KEY}.num_samples = {self.num_samples}: the '
                f'{fit.name} fit would see at most {most} teacher features '
                f'(train_dataloader.dataset has {length} images) but needs '
                f'more than {fit.basis.components_key} = {k} ({fit.about_k})'
                f'; use a larger dataset (or num_samples) or {fit.remedy} '
                '(refused before the teacher pass)')

    def warn_undriven(self, runner, fit: BasisFit) -> None:
        """Warn when the hook the model needs (``fit.driven_by``) is not
        among the run's hooks."""
        if fit.driven_by is None:
            return
        hook, why = fit.driven_by
        if not any(type(h).__name__ == hook
                   for h in getattr(runner, 'hooks', None) or ()):
            runner.logger.warning(
                f'no {hook} drives {why}: add '
                f"dict(type='kdep_mm.{hook}') to custom_hooks")

    def identity(self, fit: BasisFit) -> dict:
        """``fit.identity()``; a model without a teacher (store mode)
        records the teacher fingerprint of its store's manifest."""
        meta = fit.identity()
        if meta.get('teacher_fingerprint', 0) is None:
            fp = getattr(self, '_store_fingerprint', None)
            if fp is None:
                raise ValueError(
                    f'{HOOK_KEY}.basis_file: the model has no teacher (store'
                    ' mode) and no teacher store names one; give '
                    f'{HOOK_KEY}.store or an ApplyStoredView')
            meta['teacher_fingerprint'] = fp
        return meta

    # --------------------------------------------------------------- fit
    def before_train(self, runner) -> None:
        model = unwrap_model(runner.model)
        fit = model.basis_fit() if hasattr(model, 'basis_fit') else None
        if fit is None:
            return
        self.check_options(model, fit)
        store = self.check_stores(runner, model, fit)
        self.warn_undriven(runner, fit)
        basis = fit.basis
        if basis.is_fitted:
            runner.logger.info(
                f'{fit.name} restored from the checkpoint (not refitted; '
                f'{int(basis.num_fit_samples)} teacher features, k = '
                f'{fit.num_components})')
            return
        path = self.basis_file
        if path is not None and not osp.isabs(path):
            path = osp.join(runner.work_dir, path)
        if path is not None and osp.isfile(path):
            load_basis(basis, path, self.identity(fit))
            runner.logger.info(f'{fit.name} loaded from {path}')
            return
        t0 = time.time()
        if store is not None:
            runner.logger.info(f'fitting the {fit.name} on teacher store '
                               f'{store.root}')
            n = fit_basis_from_store(fit, store, self.field,
                                     source=f'{HOOK_KEY}.store')
        else:
            if getattr(model, 'teacher', None) is None:
                raise ValueError(
                    f'{HOOK_KEY}.store: the model has no teacher (store '
                    f'mode), so the {fit.name} cannot be fitted online; give '
                    'the teacher store root')
            self.check_fit_size(runner, fit)
            runner.logger.info(
                f'fitting the {fit.name} on teacher features of '
                f'{self.num_samples or "all"} training images')
            n = fit_basis_online(model, basis,
                                 one_pass_loader(runner.train_dataloader),
                                 self.num_samples)
        runner.logger.info(
            f'{fit.name} fitted on {n} teacher features in '
            f'{time.time() - t0:.1f}s: {fit.num_components} of '
            f'{fit.teacher_channels} directions keep '
            f'{basis.explained_variance():.1%} of the variance')
        if path is not None and dist.is_main_process():
            save_basis(basis, path, self.identity(fit))
            runner.logger.info(f'{fit.name} written to {path}')
