"""Hooks that drive TCS (Zhou, Zhu, Wu, "All You Need in Knowledge
Distillation Is a Tailored Coordinate System", AAAI 2025): fit the
coordinate system once, then advance the tailoring schedule."""
import os.path as osp
from typing import List, Optional, Tuple

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from kdep_mm.registry import HOOKS


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


HOOK_KEY = 'custom_hooks: FitTCSCoordinatesHook'


def _same_path(a: str, b: str) -> bool:
    return osp.realpath(osp.abspath(a)) == osp.realpath(osp.abspath(b))


def _stored_view_stores(dataset) -> List[Tuple[int, object]]:
    """``(pipeline index, TeacherStore)`` of every ``ApplyStoredView`` in
    the dataset's pipeline."""
    from kdep_mm.datasets.transforms.stored_view import ApplyStoredView
    pipeline = getattr(dataset, 'pipeline', None)
    transforms = getattr(pipeline, 'transforms', None) or []
    return [(i, t.store) for i, t in enumerate(transforms)
            if isinstance(t, ApplyStoredView)]


@HOOKS.register_module()
class FitTCSCoordinatesHook(Hook):
    """Fit a :class:`TCSDistiller`'s coordinate system before training,
    unless it is already fitted (loaded or resumed checkpoint): from
    ``store`` (a teacher store root) if given, else by an online teacher
    pass over the training dataloader (``num_samples`` images, None = all).

    Before that, on every run (resumed ones too), the teacher stores in use
    (``store`` and the ``ApplyStoredView`` stores of the training pipeline)
    are checked against the run; a mismatch raises ``ValueError`` naming
    the config key:

    * ``store`` and every ``ApplyStoredView``'s ``store.root`` are the same
      directory (``train_dataloader.dataset.pipeline[i].store.root``);
    * the store was cached from the training dataset: same length and, when
      the manifest has it, the same image paths
      (``train_dataloader.dataset``);
    * ``num_views`` (if given) is the store's view count;
    * the teacher: ``teacher_fingerprint`` (if given) is the manifest's; the
      file name of ``teacher_checkpoint`` (if given) is the manifest's; an
      online teacher's fingerprint is the manifest's (``model.teacher_ckpt``);
    * the ``field`` is ``(model.teacher_channels,)``.

    Args:
        store (str, optional): teacher store root; None = online fit.
        field (str): store field holding the pooled teacher features.
        num_samples (int, optional): images of the online fit; must exceed
            ``model.num_coords``.
        num_views (int, optional): the view count the store must have.
        teacher_checkpoint (str, optional): the teacher weights the store
            must have been cached with (compared by file name, since the
            manifest records the path as given to the caching tool).
        teacher_fingerprint (str, optional): the sha256 the store's teacher
            must have (printed by ``tools/cache_teacher.py``).
    """

    priority = 'VERY_HIGH'

    def __init__(self, store: Optional[str] = None, field: str = 'feat',
                 num_samples: Optional[int] = None,
                 num_views: Optional[int] = None,
                 teacher_checkpoint: Optional[str] = None,
                 teacher_fingerprint: Optional[str] = None):
        self.store, self.field, self.num_samples = store, field, num_samples
        self.num_views = num_views
        self.teacher_checkpoint = teacher_checkpoint
        self.teacher_fingerprint = teacher_fingerprint

    # ------------------------------------------------------------ checks
    def check_stores(self, runner, model) -> None:
        """The store checks listed in the class doc (``ValueError``)."""
        from kdep_mm.datasets.teacher_store import (TeacherStore,
                                                    dataset_identity)
        dataset = runner.train_dataloader.dataset
        in_pipeline = _stored_view_stores(dataset)
        stores = []
        if self.store is not None:
            if not osp.isdir(self.store):
                raise ValueError(f'{HOOK_KEY}.store: teacher store '
                                 f'{self.store} not found')
            stores.append((f'{HOOK_KEY}.store',
                           TeacherStore(self.store, verify=False)))
        for i, st in in_pipeline:
            key = f'train_dataloader.dataset.pipeline[{i}].store.root'
            if self.store is not None and not _same_path(st.root,
                                                         self.store):
                raise ValueError(
                    f'{key} is {st.root} but {HOOK_KEY}.store is '
                    f'{osp.abspath(self.store)}: the coordinate system '
                    'would be fitted on one store and trained on another; '
                    'point both at the same store (one config variable)')
            stores.append((key, st))
        if not stores:
            return
        ident = None
        for key, st in stores:
            man = st.manifest
            if st.num_samples != len(dataset):
                raise ValueError(
                    f'{key}: teacher store {st.root} holds {st.num_samples} '
                    f'samples but train_dataloader.dataset has '
                    f'{len(dataset)} (ann_file='
                    f'{getattr(dataset, "ann_file", None)!r}): the store '
                    'must be cached from exactly the training dataset, whose'
                    ' index keys it (tools/cache_teacher.py with the same '
                    'train_dataloader.dataset)')
            stored_paths = (man.get('dataset') or {}).get('paths_sha256')
            if stored_paths is not None:
                if ident is None:
                    ident = dataset_identity(dataset)
                if ident.get('paths_sha256') not in (None, stored_paths):
                    raise ValueError(
                        f'{key}: teacher store {st.root} was cached from '
                        'other images than train_dataloader.dataset (same '
                        'length, different image paths: manifest key '
                        "'dataset.paths_sha256' differs); cache the store "
                        'from this dataset')
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
            if self.teacher_checkpoint is not None:
                got = man.get('teacher_checkpoint')
                if got is None or osp.basename(str(got)) != osp.basename(
                        str(self.teacher_checkpoint)):
                    raise ValueError(
                        f'{HOOK_KEY}.teacher_checkpoint is '
                        f'{self.teacher_checkpoint} but teacher store '
                        f'{st.root} ({key}) was cached from the teacher '
                        f'checkpoint {got!r}: a store from another teacher')
            if model.teacher is not None and fp is not None and \
                    fp != model.teacher_fingerprint():
                raise ValueError(
                    f'{key}: teacher store {st.root} was cached with teacher '
                    f'{fp}, the online teacher (model.teacher_ckpt='
                    f'{model.teacher_ckpt!r}) is '
                    f'{model.teacher_fingerprint()}: a store from another '
                    'teacher')
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
        model = _unwrap(runner.model)
        self.check_stores(runner, model)
        if model.is_fitted:
            runner.logger.info(
                'TCS coordinate system restored from the checkpoint (not '
                f'refitted; {int(model.coords.num_fit_samples)} teacher '
                f'features, k = {model.num_coords}, '
                f'{model.num_active} active)')
            return
        if self.store is not None:
            from kdep_mm.models.algorithms.tcs import \
                fit_coordinates_from_store
            n = fit_coordinates_from_store(model, self.store, self.field)
        else:
            if self.num_samples is not None and \
                    int(self.num_samples) <= model.num_coords:
                raise ValueError(
                    f'{HOOK_KEY}.num_samples = {self.num_samples}: the PCA '
                    'coordinate system needs more teacher features than '
                    f'model.num_coords = {model.num_coords}')
            n = model.fit_coordinates_online(runner.train_dataloader,
                                             self.num_samples)
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
        model = _unwrap(runner.model)
        model.after_train_iter()
        runner.message_hub.update_scalar('train/active_coords',
                                         model.num_active)
