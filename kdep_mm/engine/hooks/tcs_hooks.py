"""Hooks that check teacher stores against a training run, and hooks that
drive TCS (Zhou, Zhu, Wu, "All You Need in Knowledge Distillation Is a
Tailored Coordinate System", AAAI 2025): fit the coordinate system once,
then advance the tailoring schedule."""
import os.path as osp
from typing import Optional

from mmengine.hooks import Hook

from kdep_mm.datasets.store import TeacherStore
from kdep_mm.registry import HOOKS

from .check_stores_hook import (PIPELINE_KEY, check_online_teacher,
                                check_store_against_run,
                                check_teacher_checkpoint, pipeline_transforms,
                                stored_view_stores)
from .fit_aligner_hook import (unwrap_model, fit_basis_from_store,
                               fit_basis_online)

HOOK_KEY = 'custom_hooks: FitTCSCoordinatesHook'


def fit_coordinates_from_store(model, store, field: str = 'feat',
                               source: Optional[str] = None) -> int:
    """Fit a :class:`TCSDistiller`'s coordinate system from every view of
    every sample of a teacher store (``fit_basis_from_store``). ``store``:
    a ``TeacherStore`` or its root (then opened with verification). A store
    of no more than ``model.num_coords`` features (samples x views) is
    refused before any shard is read. Returns the number of features."""
    if isinstance(store, str):
        store = TeacherStore(store)
    model = unwrap_model(model)
    if field not in store.fields:
        raise ValueError(f'teacher store {store.root} has no field {field!r}'
                         f' (fields: {sorted(store.fields)})')
    where = f'teacher store {store.root} field {field!r}'
    if source is not None:
        where = f'{source}: {where}'
    model.check_fit_count(store.num_samples * store.num_views,
                          f'{where} ({store.num_samples} samples x '
                          f'{store.num_views} views)')
    spec = store.fields[field]
    if list(spec['shape']) != [model.teacher_channels]:
        raise ValueError(f'{where}: features of shape {spec["shape"]}, '
                         f'model.teacher_channels is '
                         f'{model.teacher_channels}')
    return fit_basis_from_store(model.coords, store, field)


def _same_path(a: str, b: str) -> bool:
    return osp.realpath(osp.abspath(a)) == osp.realpath(osp.abspath(b))


@HOOKS.register_module()
class FitTCSCoordinatesHook(Hook):
    """Fit a :class:`TCSDistiller`'s coordinate system before training,
    unless it is already fitted (loaded or resumed checkpoint): from
    ``store`` (a teacher store root) if given, else by an online teacher
    pass over the training dataloader (``num_samples`` images, None = all).

    Before that, on every run (resumed ones too), the teacher stores in use
    (``store`` and the ``ApplyStoredView`` stores of the training pipeline,
    opened with verification: each shard's sha256 once, then its verified
    marker) are checked against the run; a mismatch raises ``ValueError``
    naming the config key:

    * ``store`` and every ``ApplyStoredView``'s ``store.root`` are the same
      directory (``train_dataloader.dataset.pipeline[i].store.root``);
    * the store was cached from the training dataset: same length,
      ``ann_file`` and image paths in index order
      (``train_dataloader.dataset``; a reordered dataset is refused);
    * the image loading right before each ``ApplyStoredView`` decodes as the
      caching side did (manifest ``decoder``);
    * ``num_views`` (if given) is the store's view count;
    * the teacher: ``teacher_fingerprint`` (if given) is the manifest's
      weights fingerprint; the sha256 of the file ``teacher_checkpoint`` (if
      given; or ``teacher_checkpoint_sha256``) is the manifest's
      ``teacher_checkpoint_sha256``; an online teacher's fingerprint is the
      manifest's (``model.teacher_ckpt``);
    * the ``field`` is ``(model.teacher_channels,)``.

    The fit is refused before any work when it cannot succeed: the PCA
    needs more than ``model.num_coords`` features, and a store holds
    ``num_samples x num_views``, an online pass at most the dataset length.

    Args:
        store (str, optional): teacher store root; None = online fit.
        field (str): store field holding the pooled teacher features.
        num_samples (int, optional): images of the online fit; must exceed
            ``model.num_coords``.
        num_views (int, optional): the view count the store must have.
        teacher_checkpoint (str, optional): the teacher weights (path or
            URL) the store must have been cached with, compared by the
            file's sha256 (the teacher is not built).
        teacher_fingerprint (str, optional): the sha256 of the weights the
            store's teacher must have (printed by ``tools/cache_teacher.py``).
        teacher_checkpoint_sha256 (str, optional): the sha256 of the
            checkpoint file, instead of ``teacher_checkpoint`` (when the file
            is not on the training machine).
    """

    priority = 'VERY_HIGH'

    def __init__(self, store: Optional[str] = None, field: str = 'feat',
                 num_samples: Optional[int] = None,
                 num_views: Optional[int] = None,
                 teacher_checkpoint: Optional[str] = None,
                 teacher_fingerprint: Optional[str] = None,
                 teacher_checkpoint_sha256: Optional[str] = None):
        self.store, self.field, self.num_samples = store, field, num_samples
        self.num_views = num_views
        self.teacher_checkpoint = teacher_checkpoint
        self.teacher_fingerprint = teacher_fingerprint
        self.teacher_checkpoint_sha256 = teacher_checkpoint_sha256

    # ------------------------------------------------------------ checks
    def check_stores(self, runner, model) -> None:
        """The store checks listed in the class doc (``ValueError``)."""
        dataset = runner.train_dataloader.dataset
        transforms = pipeline_transforms(dataset)
        in_pipeline = stored_view_stores(dataset)
        stores = []
        if self.store is not None:
            if not osp.isdir(self.store):
                raise ValueError(f'{HOOK_KEY}.store: teacher store '
                                 f'{self.store} not found')
            stores.append((f'{HOOK_KEY}.store', TeacherStore(self.store),
                           None))
        for i, st in in_pipeline:
            key = f'{PIPELINE_KEY}[{i}].store.root'
            if self.store is not None and not _same_path(st.root,
                                                         self.store):
                raise ValueError(
                    f'{key} is {st.root} but {HOOK_KEY}.store is '
                    f'{osp.abspath(self.store)}: the coordinate system '
                    'would be fitted on one store and trained on another; '
                    'point both at the same store (one config variable)')
            stores.append((key, st, i))
        if not stores:
            return
        ident = None
        for key, st, index in stores:
            man = st.manifest
            ident = check_store_against_run(st, key, dataset, transforms,
                                             index, ident)
            if self.num_views is not None and \
                    st.num_views != int(self.num_views):
                raise ValueError(
                    f'{HOOK_KEY}.num_views is {self.num_views} but teacher '
                    f'store {st.root} ({key}) has {st.num_views} views per '
                    'image: cache it with --views '
                    f'{self.num_views} or change num_views')
            fp = man.get('teacher_fingerprint')
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
            if model.teacher is not None:
                check_online_teacher(st, key, model.teacher,
                                     model.teacher_ckpt)
            spec = st.fields.get(self.field)
            if spec is None:
                raise ValueError(
                    f'{HOOK_KEY}.field: teacher store {st.root} ({key}) has '
                    f'no field {self.field!r} (fields: {sorted(st.fields)})')
            if list(spec['shape']) != [model.teacher_channels]:
                raise ValueError(
                    f'teacher store {st.root} ({key}): field {self.field!r} '
                    f'has shape {spec["shape"]}, model.teacher_channels is '
                    f'{model.teacher_channels}')

    def before_train(self, runner) -> None:
        model = unwrap_model(runner.model)
        self.check_stores(runner, model)
        if model.prune_interval > 0 and not any(
                isinstance(h, TCSTailoringHook)
                for h in getattr(runner, 'hooks', None) or ()):
            runner.logger.warning(
                f'model.prune_interval is {model.prune_interval} but no '
                'TCSTailoringHook drives the tailoring schedule: add '
                "dict(type='kdep_mm.TCSTailoringHook') to custom_hooks")
        if model.is_fitted:
            runner.logger.info(
                'TCS coordinate system restored from the checkpoint (not '
                f'refitted; {int(model.coords.num_fit_samples)} teacher '
                f'features, k = {model.num_coords}, '
                f'{model.num_active} active)')
            return
        if self.store is not None:
            n = fit_coordinates_from_store(model, self.store, self.field,
                                           source=f'{HOOK_KEY}.store')
        else:
            if self.num_samples is not None and \
                    int(self.num_samples) <= model.num_coords:
                raise ValueError(
                    f'{HOOK_KEY}.num_samples = {self.num_samples}: the PCA '
                    'coordinate system needs more teacher features than '
                    f'model.num_coords = {model.num_coords}')
            length = len(runner.train_dataloader.dataset)
            if length <= model.num_coords:
                raise ValueError(
                    f'{HOOK_KEY}.num_samples = {self.num_samples}: '
                    f'train_dataloader.dataset has {length} images, so the '
                    f'online fit gets at most {length} teacher features, but '
                    'the PCA coordinate system needs more than '
                    f'model.num_coords = {model.num_coords} (model.'
                    f'student_channels = {model.student_channels}); use more '
                    'data or lower model.num_coords (refused before the '
                    'teacher pass)')
            n = fit_basis_online(model, model.coords,
                                 runner.train_dataloader, self.num_samples,
                                 show_progress=False)
        runner.logger.info(f'TCS coordinate system fitted on {n} teacher '
                           f'features (k = {model.num_coords})')


@HOOKS.register_module()
class TCSTailoringHook(Hook):
    """Drives the tailoring schedule: after every training iteration,
    :meth:`TCSDistiller.after_train_iter` (counter + prune step when due),
    and logs ``active_coords``. A hook rather than ``train_step``, because
    mmengine's DDP wrapper runs its own ``train_step``."""

    priority = 'NORMAL'

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        model = unwrap_model(runner.model)
        model.after_train_iter()
        runner.message_hub.update_scalar('train/active_coords',
                                         model.num_active)
