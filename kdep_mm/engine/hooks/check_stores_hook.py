"""Check every teacher store a training run reads against that run: the
dataset it was cached from (identity and order), the decoder, the teacher
(checkpoint file sha256, online weights fingerprint)."""
from typing import Dict, List, Optional, Tuple, Union

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from kdep_mm.datasets.store import check_store_dataset, check_store_decoder
from kdep_mm.datasets.transforms.stored_view import ApplyStoredView
from kdep_mm.models.teachers import teacher_fingerprint
from kdep_mm.registry import HOOKS
from kdep_mm.utils.checkpoint import checkpoint_sha256

CHECK_KEY = 'custom_hooks: CheckTeacherStoresHook'
PIPELINE_KEY = 'train_dataloader.dataset.pipeline'


def pipeline_transforms(dataset) -> list:
    """The transforms of ``dataset``'s pipeline (empty without one)."""
    pipeline = getattr(dataset, 'pipeline', None)
    return list(getattr(pipeline, 'transforms', None) or [])


def stored_view_stores(dataset) -> List[Tuple[int, object]]:
    """``(pipeline index, TeacherStore)`` of every one-store
    ``ApplyStoredView`` (``store=``) in the dataset's pipeline."""
    return [(i, t.store)
            for i, t in enumerate(pipeline_transforms(dataset))
            if isinstance(t, ApplyStoredView) and t.single]


def check_teacher_checkpoint(store, key: str, where: str,
                             checkpoint: Optional[str] = None,
                             sha256: Optional[str] = None) -> None:
    """Refuse a store not cached from the teacher checkpoint ``checkpoint``
    (a path or URL, hashed here; or its ``sha256`` given directly): the
    manifest's ``teacher_checkpoint_sha256`` (recorded by
    ``tools/cache_teacher.py``) must be the file's sha256. The teacher is
    never built. ``key`` names the config key, ``where`` the store's."""
    if checkpoint is None and sha256 is None:
        return
    if sha256 is None:
        try:
            sha256 = checkpoint_sha256(checkpoint)
        except (OSError, ValueError) as e:
            raise FileNotFoundError(
                f'{key} is {checkpoint!r}, whose sha256 the teacher store '
                f'{store.root} ({where}) must have been cached from, but '
                f'the file cannot be read here ({e}); give the sha256 '
                "printed by tools/cache_teacher.py instead ('"
                f"{key}_sha256' / teacher_checkpoint_sha256)") from e
    got = store.manifest.get('teacher_checkpoint_sha256')
    if got != sha256:
        raise ValueError(
            f'{key} is {checkpoint if checkpoint is not None else "given"} '
            f'(file sha256 {sha256}) but teacher store {store.root} ({where}) '
            'was cached from the teacher checkpoint '
            f'{store.manifest.get("teacher_checkpoint")!r} with file sha256 '
            f'{got} (manifest key \'teacher_checkpoint_sha256\'): a store '
            'from another teacher (a file name says nothing: another '
            'epoch_100.pth is another teacher); re-cache it with this '
            'checkpoint or point the config at the right store')


def check_online_teacher(store, where: str, teacher, teacher_ckpt,
                         key: str = 'model.teacher_ckpt') -> None:
    """Refuse stored outputs of another teacher than the online one (by
    weights fingerprint)."""
    fp = store.manifest.get('teacher_fingerprint')
    have = teacher_fingerprint(teacher)
    if fp is not None and fp != have:
        raise ValueError(
            f'{where}: teacher store {store.root} was cached with teacher '
            f'{fp}, the online teacher ({key}={teacher_ckpt!r}) is {have}: '
            'a store from another teacher')


def check_store_against_run(store, where: str, dataset, transforms,
                            index: Optional[int], ident: Optional[dict]
                            ) -> dict:
    """Dataset identity (and order) and, for a pipeline store, the decoder.
    Returns the dataset identity (computed once)."""
    ident = check_store_dataset(store, dataset, where, ident)
    if index is not None:
        check_store_decoder(store, transforms, index, PIPELINE_KEY)
    return ident


@HOOKS.register_module()
class CheckTeacherStoresHook(Hook):
    """Check every teacher store the training pipeline reads against the
    run, before training (on every run, resumed ones too); a mismatch
    raises ``ValueError`` (``FileNotFoundError`` for an unreadable
    checkpoint) naming the config key, before any iteration.

    The stores are those of every ``ApplyStoredView`` (``store`` or
    ``stores.<name>``) in ``train_dataloader.dataset.pipeline``. For each:

    * it was cached from ``train_dataloader.dataset``: same length,
      ``ann_file`` and image paths **in index order** (a reordered
      annotation file is refused);
    * the transform right before the store's transform is the image loading
      and decodes as the caching side did (manifest ``decoder``:
      ``imdecode_backend``, ``color_type``, ``to_float32``);
    * the teacher: the sha256 of ``teacher_checkpoints`` (of
      ``teacher_checkpoints[name]`` for an ensemble) is the manifest's
      ``teacher_checkpoint_sha256``; a model with online teachers
      (``model.teacher`` / ``model.teachers``) has the manifest's weights
      fingerprint;
    * an ensemble: the stores are one per ``model.teacher_names``.

    (The crop size, the view count and the fields are checked when the
    transforms open their stores; TCS's fit hook, ``FitBasisHook``,
    does these checks itself.) A pipeline without stores is not checked.

    Args:
        teacher_checkpoints (str | dict, optional): the teacher checkpoint
            (path or URL) of an ``ApplyStoredView`` ``store``, or a dict
            teacher name -> checkpoint for an ensemble's ``stores`` (e.g. the config's
            ``teacher_ckpts``). Every store-mode config of kdep_mm sets it.
        teacher_checkpoint_sha256 (str | dict, optional): the same as file
            sha256 (printed by ``tools/cache_teacher.py``), when the
            checkpoint file is not on the training machine; takes
            precedence over ``teacher_checkpoints``.
    """

    priority = 'VERY_HIGH'

    def __init__(self,
                 teacher_checkpoints: Union[str, Dict[str, str],
                                            None] = None,
                 teacher_checkpoint_sha256: Union[str, Dict[str, str],
                                                  None] = None):
        self.teacher_checkpoints = teacher_checkpoints
        self.teacher_checkpoint_sha256 = teacher_checkpoint_sha256

    def _per_teacher(self, value, names: List[str], arg: str) -> dict:
        if value is None:
            return {n: None for n in names}
        if not isinstance(value, dict):
            raise ValueError(
                f'{CHECK_KEY}.{arg} must be a dict teacher name -> value for '
                f'the ensemble stores {names}, got {value!r}')
        if sorted(value) != sorted(names):
            raise ValueError(
                f'{CHECK_KEY}.{arg} names the teachers {sorted(value)}, the '
                f'pipeline\'s stores are {sorted(names)}')
        return dict(value)

    def check(self, runner) -> None:
        """The checks of the class doc."""
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        dataset = runner.train_dataloader.dataset
        transforms = pipeline_transforms(dataset)
        ident = None
        for i, t in enumerate(transforms):
            if not isinstance(t, ApplyStoredView):
                continue
            if t.single:
                if isinstance(self.teacher_checkpoints, dict) or isinstance(
                        self.teacher_checkpoint_sha256, dict):
                    raise ValueError(
                        f'{CHECK_KEY}.teacher_checkpoints: {PIPELINE_KEY}[{i}]'
                        ' is an ApplyStoredView of one store (one '
                        'teacher): give one checkpoint, not a dict')
                where = f'{PIPELINE_KEY}[{i}].store'
                ident = check_store_against_run(t.store, where, dataset,
                                                 transforms, i, ident)
                check_teacher_checkpoint(
                    t.store, f'{CHECK_KEY}.teacher_checkpoints', where,
                    self.teacher_checkpoints, self.teacher_checkpoint_sha256)
                teacher = getattr(model, 'teacher', None)
                if teacher is not None:
                    check_online_teacher(t.store, where, teacher,
                                         getattr(model, 'teacher_ckpt', None))
            else:
                names = list(t.stores)
                want = getattr(model, 'teacher_names', None)
                if want is not None and sorted(want) != sorted(names):
                    raise ValueError(
                        f'{PIPELINE_KEY}[{i}].stores holds the teachers '
                        f'{sorted(names)}, model.teacher_names is '
                        f'{list(want)}: one store per teacher is needed')
                ckpts = self._per_teacher(self.teacher_checkpoints, names,
                                          'teacher_checkpoints')
                shas = self._per_teacher(self.teacher_checkpoint_sha256,
                                         names, 'teacher_checkpoint_sha256')
                online = dict(getattr(model, 'teachers', None) or {})
                for name, store in t.stores.items():
                    where = f'{PIPELINE_KEY}[{i}].stores.{name}'
                    ident = check_store_against_run(store, where, dataset,
                                                     transforms, i, ident)
                    check_teacher_checkpoint(
                        store, f'{CHECK_KEY}.teacher_checkpoints.{name}',
                        where, ckpts[name], shas[name])
                    if name in online:
                        check_online_teacher(
                            store, where, online[name],
                            (getattr(model, 'teacher_ckpts', None)
                             or {}).get(name),
                            key=f'model.teacher_ckpts.{name}')

    def before_train(self, runner) -> None:
        self.check(runner)
