"""One stored view, the outputs of several teachers on it.

An ensemble of teachers is cached as **one teacher store per teacher**, all
on the *same* views (the same crop boxes and flips for every sample index):
cache the first teacher as usual, the others with
``tools/cache_teacher.py ... --views-from FIRST_STORE`` (which copies the
first store's views and shard size; caching with the same ``--seed``,
``--views`` and ``--view-mode`` draws the same views too).
:class:`ApplyStoredEnsembleView` crops the view once and attaches every
teacher's outputs of that view.
"""
from typing import Dict, Optional, Sequence, Union

import numpy as np
from mmcv.transforms import BaseTransform

from kdep_mm.registry import TRANSFORMS
from ..store import TeacherStore, check_same_views, crop_view, size_hw

KEY = 'teacher_outputs'


def _open(name: str, cfg):
    if isinstance(cfg, TeacherStore):
        return cfg
    if isinstance(cfg, str):
        cfg = dict(root=cfg)
    try:
        return TeacherStore(**cfg)
    except ValueError as e:
        raise ValueError(f'stores.{name}: {e}') from e


@TRANSFORMS.register_module()
class ApplyStoredEnsembleView(BaseTransform):
    """Crop and flip the original image as one stored view and attach the
    outputs of every teacher of an ensemble on that view.

    Use it like :class:`ApplyStoredView` (right after image loading, in
    place of ``RandomResizedCrop`` + ``RandomFlip``) and pack its output
    with ``mmpretrain.PackInputs(algorithm_keys=('teacher_outputs', ))``.

    Added / modified keys: ``img``, ``img_shape``, ``view_index``,
    ``view_box``, ``flip``, ``flip_direction`` and ``teacher_outputs``:
    ``{teacher name: {store field: array}}`` (e.g. ``{'cnn': {'logits':
    ...}, 'involution': {'logits_topk_prob': ..., 'logits_topk_idx':
    ...}}``), read by :class:`kdep_mm.EnsembleDistiller`.

    Checked when the pipeline is built (each refusal names the argument):

    * ``teacher_names`` (if given) is exactly the set of ``stores``;
    * every store has ``num_views`` views (if given) and all stores the same
      number, the same sample count and dataset identity, ``out_size`` equal
      to ``scale``, and the same views (boxes and flips);
    * no two stores hold the same teacher (equal fingerprints).

    Each store is opened with verification (every shard's sha256, once;
    see ``TeacherStore``). The checks that need the training dataset, the
    pipeline and the configured teachers (dataset identity and order,
    decoder, each teacher's checkpoint sha256) are done before training,
    on start and on resume, by ``kdep_mm.CheckTeacherStoresHook``
    (``custom_hooks``, in every store-mode ensemble config).

    Args:
        stores (dict): teacher name -> a store root, the kwargs of a
            :class:`~kdep_mm.datasets.store.TeacherStore` (``root``,
            ``expected``, ``verify``) or a store. The first one's views are
            applied.
        scale (int | tuple): output size (the stores' ``out_size``).
        teacher_names (sequence, optional): the teachers the model expects
            (``model.teacher_names``).
        num_views (int, optional): the expected V.
        view_index (int, optional): always this view; None draws one
            uniformly (numpy's global RNG, seeded per worker by mmengine).
        interpolation (str): cv2 interpolation. Defaults to 'bilinear'.
    """

    def __init__(self,
                 stores: Dict[str, Union[str, dict]],
                 scale: Union[int, Sequence[int]],
                 teacher_names: Optional[Sequence[str]] = None,
                 num_views: Optional[int] = None,
                 view_index: Optional[int] = None,
                 interpolation: str = 'bilinear'):
        if not isinstance(stores, dict) or not stores:
            raise ValueError('stores must be a non-empty dict teacher name '
                             '-> store')
        if teacher_names is not None:
            want, have = list(teacher_names), list(stores)
            if sorted(want) != sorted(have) or len(set(want)) != len(want):
                raise ValueError(
                    f'teacher_names {want} (model.teacher_names) and the '
                    f'stores {have} differ: missing stores '
                    f'{sorted(set(want) - set(have))}, stores of no teacher '
                    f'{sorted(set(have) - set(want))}')
        self.stores = {n: _open(n, c) for n, c in stores.items()}
        self.scale = size_hw(scale)
        self.view_index = view_index
        self.interpolation = interpolation
        names = list(self.stores)
        ref_name, ref = names[0], self.stores[names[0]]
        views = {n: s.num_views for n, s in self.stores.items()}
        if num_views is not None and any(v != num_views
                                         for v in views.values()):
            raise ValueError(f'num_views is {num_views} but the stores hold '
                             f'{views} views')
        if len(set(views.values())) != 1:
            raise ValueError(f'the stores hold different numbers of views '
                             f'{views}: cache every teacher with the same '
                             f'--views (use --views-from {ref.root})')
        fps = {}
        for n, s in self.stores.items():
            fp = s.manifest.get('teacher_fingerprint')
            if fp in fps:
                raise ValueError(
                    f'stores.{n} and stores.{fps[fp]} hold the same teacher '
                    f'(fingerprint {fp}): the ensemble needs different '
                    'teachers')
            fps[fp] = n
            out = s.manifest.get('out_size')
            if out is not None and tuple(out) != tuple(self.scale):
                raise ValueError(f'scale is {self.scale} but stores.{n} was '
                                 f'cached at out_size {tuple(out)}')
            if n == ref_name:
                continue
            if s.num_samples != ref.num_samples or s.manifest.get(
                    'dataset') != ref.manifest.get('dataset'):
                raise ValueError(
                    f'stores.{n} and stores.{ref_name} were cached from '
                    f'different datasets: {s.manifest.get("dataset")} vs '
                    f'{ref.manifest.get("dataset")}')
            check_same_views(ref_name, ref, n, s)
        self.num_views = ref.num_views
        if view_index is not None and not 0 <= view_index < self.num_views:
            raise ValueError(f'view_index {view_index} but the stores have '
                             f'{self.num_views} views')

    @property
    def teacher_names(self):
        return list(self.stores)

    def transform(self, results: dict) -> dict:
        index = results['sample_idx']
        if self.view_index is None:
            view = int(np.random.randint(self.num_views))
        else:
            view = int(self.view_index)
        outputs = {}
        box = flip = None
        for name, store in self.stores.items():
            entry = store.get(index, view)
            b, f = entry.pop('box'), entry.pop('flip')
            if box is None:
                box, flip = b, f
            elif not (np.array_equal(b, box) and f == flip):
                raise ValueError(f'stores.{name}: sample {index} view {view} '
                                 'has another crop than the first store')
            outputs[name] = entry
        img = crop_view(results['img'], box, flip, self.scale,
                        self.interpolation)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['view_index'] = view
        results['view_box'] = box
        results['flip'] = flip
        results['flip_direction'] = 'horizontal' if flip else None
        results[KEY] = outputs
        return results

    def __repr__(self) -> str:
        roots = {n: s.root for n, s in self.stores.items()}
        return (f'{self.__class__.__name__}(stores={roots}, '
                f'scale={self.scale}, view_index={self.view_index}, '
                f'interpolation={self.interpolation!r})')
