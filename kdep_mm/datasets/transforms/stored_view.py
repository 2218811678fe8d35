"""Apply a stored view: the training side of one or many teacher stores.

The caching side (``kdep_mm.apis``) draws views, crops them with
:func:`~kdep_mm.datasets.store.crop_view` and runs the teacher;
:class:`ApplyStoredView` calls the same ``crop_view`` on the decoded
original image, so the student sees pixel for pixel the image the teacher
saw, and attaches the teacher outputs of that view: one store's fields
(``store=``), or the outputs of every teacher of an ensemble, one store per
teacher cached on the same views (``stores=``; the others cached with
``tools/cache_teacher.py ... --views-from FIRST_STORE``).
"""
from typing import Dict, Optional, Sequence, Union

import numpy as np
from mmcv.transforms import BaseTransform

from kdep_mm.registry import TRANSFORMS
from kdep_mm.utils.store_keys import (TEACHER_OUTPUTS, VIEW_INDEX,
                                      field_key)
from ..store import TeacherStore, check_same_views, crop_view, size_hw


def _open(cfg, where: Optional[str] = None) -> TeacherStore:
    """A store from a store, a root or the kwargs of a ``TeacherStore``;
    an error of a named store (``where``) is prefixed with its key."""
    if isinstance(cfg, TeacherStore):
        return cfg
    if isinstance(cfg, str):
        cfg = dict(root=cfg)
    if where is None:
        return TeacherStore(**cfg)
    try:
        return TeacherStore(**cfg)
    except ValueError as e:
        raise ValueError(f'{where}: {e}') from e


@TRANSFORMS.register_module()
class ApplyStoredView(BaseTransform):
    """Crop and flip the original image as one of its stored views, and
    attach the teacher outputs of that view, from one store or from the
    stores of an ensemble's teachers.

    Put it right after image loading, in place of ``RandomResizedCrop`` +
    ``RandomFlip``: ``results['img']`` must be the original decoded image
    (the one the stores were cached from).

    Required keys: ``img``, ``sample_idx`` (set by mmengine's
    ``BaseDataset``; the dataset index, which must be the stores' index).

    Added / modified keys: ``img``, ``img_shape``, ``view_index``,
    ``view_box`` (float32 (4,)), ``flip``, ``flip_direction`` and

    * one store (``store``): for every store field ``f``, ``keys[f]``
      (default ``'teacher_' + f``, :func:`kdep_mm.utils.store_keys.
      field_key`);
    * many stores (``stores``): ``teacher_outputs``, ``{teacher name:
      {store field: array}}`` (e.g. ``{'cnn': {'logits': ...},
      'involution': {'logits_topk_prob': ..., 'logits_topk_idx': ...}}``),
      read by ``kdep_mm.EnsembleDistiller``.

    To carry them into the data samples, list them in mmpretrain's
    ``PackInputs(algorithm_keys=[...])``.

    Checked when the pipeline is built (each refusal names the argument):
    every store's ``out_size`` is ``scale``; ``num_views`` (if given) is
    every store's view count, and ``view_index`` (if given) one of its
    views. Many stores: ``teacher_names`` (if given) is exactly the set of
    ``stores``; all stores hold the same number of views, the same sample
    count and dataset identity, and the same views (boxes and flips); no
    two hold the same teacher (equal fingerprints). Each store is opened
    with verification (every shard's sha256, once; see ``TeacherStore``).
    The checks that need the training dataset, the pipeline around this
    transform and the configured teachers (dataset identity and order,
    decoder, teacher checkpoint) are done before training, on start and on
    resume, by ``FitBasisHook`` or ``CheckTeacherStoresHook``.

    Args:
        store: one store: a :class:`~kdep_mm.datasets.store.TeacherStore`
            or the kwargs of one (``dict(root=..., expected=...,
            verify=...)``), opened (and verified) here, once, when the
            pipeline is built; DataLoader workers get the opened store (a
            pickled store drops its memory maps; each worker maps the files
            on first use).
        scale (int | tuple): output size, int or ``(h, w)`` (as
            ``RandomResizedCrop``). Must be the caching side's size: a
            store whose manifest ``out_size`` differs is refused
            (``ValueError`` naming ``ApplyStoredView.scale``).
        view_index (int, optional): always use this view (e.g. 0 in the
            ``V = 1`` mode or for evaluation); None draws one uniformly with
            numpy's global RNG (seeded per worker by mmengine).
        keys (dict, optional): one store: store field -> results key.
        interpolation (str): cv2 interpolation. Defaults to 'bilinear'.
        stores (dict, optional): instead of ``store``: teacher name -> a
            store root, the kwargs of a ``TeacherStore`` or a store. The
            first one's views are applied.
        teacher_names (sequence, optional): many stores: the teachers the
            model expects (``model.teacher_names``).
        num_views (int, optional): the expected V.
    """

    def __init__(self,
                 store=None,
                 scale: Union[int, Sequence[int], None] = None,
                 view_index: Optional[int] = None,
                 keys: Optional[Dict[str, str]] = None,
                 interpolation: str = 'bilinear',
                 stores: Optional[Dict[str, Union[str, dict]]] = None,
                 teacher_names: Optional[Sequence[str]] = None,
                 num_views: Optional[int] = None):
        if (store is None) == (stores is None):
            raise ValueError('ApplyStoredView: give either store (one '
                             'teacher store) or stores (teacher name -> '
                             'store, an ensemble)')
        if scale is None:
            raise ValueError('ApplyStoredView.scale is required (the '
                             "stores' out_size)")
        self.single = store is not None
        if self.single:
            if teacher_names is not None:
                raise ValueError('ApplyStoredView.teacher_names names the '
                                 'teachers of stores=, not of one store')
            self.stores = {'store': _open(store)}
        else:
            if not isinstance(stores, dict) or not stores:
                raise ValueError('stores must be a non-empty dict teacher '
                                 'name -> store')
            if keys:
                raise ValueError('ApplyStoredView.keys renames the fields of '
                                 'one store; stores= puts them under '
                                 f'{TEACHER_OUTPUTS!r}')
            if teacher_names is not None:
                want, have = list(teacher_names), list(stores)
                if sorted(want) != sorted(have) or \
                        len(set(want)) != len(want):
                    raise ValueError(
                        f'teacher_names {want} (model.teacher_names) and '
                        f'the stores {have} differ: missing stores '
                        f'{sorted(set(want) - set(have))}, stores of no '
                        f'teacher {sorted(set(have) - set(want))}')
            self.stores = {n: _open(c, f'stores.{n}')
                           for n, c in stores.items()}
        self.scale = size_hw(scale)
        self.view_index = view_index
        self.keys = dict(keys or {})
        self.interpolation = interpolation
        self._check_stores(num_views)

    @property
    def store(self) -> TeacherStore:
        """The store (one-store mode); the first one of ``stores``."""
        return next(iter(self.stores.values()))

    @property
    def teacher_names(self) -> list:
        """The teachers of ``stores=`` (its keys, in order)."""
        return list(self.stores)

    def _where(self, name: str) -> str:
        return 'store' if self.single else f'stores.{name}'

    def _check_stores(self, num_views: Optional[int]) -> None:
        """The checks of the class doc."""
        ref_name, ref = next(iter(self.stores.items()))
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
            out = s.manifest.get('out_size')
            if out is not None and tuple(int(x) for x in out) != self.scale:
                raise ValueError(
                    f'ApplyStoredView.scale is {self.scale} (h, w) but '
                    f'teacher store {s.root} ({self._where(n)}) was cached '
                    f"at out_size {tuple(out)} (manifest key 'out_size'): "
                    'the stored teacher outputs are those of crops of '
                    'another size than the student would see; use the '
                    'caching --out-size as scale or re-cache the store')
            if self.single:
                continue
            fp = s.manifest.get('teacher_fingerprint')
            if fp in fps:
                raise ValueError(
                    f'stores.{n} and stores.{fps[fp]} hold the same teacher '
                    f'(fingerprint {fp}): the ensemble needs different '
                    'teachers')
            fps[fp] = n
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
        if self.view_index is not None and \
                not 0 <= self.view_index < self.num_views:
            raise ValueError(f'view_index {self.view_index} but the store '
                             f'has {self.num_views} views')

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
        results[VIEW_INDEX] = view
        results['view_box'] = box
        results['flip'] = flip
        results['flip_direction'] = 'horizontal' if flip else None
        if self.single:
            for name, value in outputs['store'].items():
                results[self.keys.get(name, field_key(name))] = value
        else:
            results[TEACHER_OUTPUTS] = outputs
        return results

    def __repr__(self) -> str:
        roots = {n: s.root for n, s in self.stores.items()}
        source = f'store={roots["store"]!r}' if self.single else \
            f'stores={roots}'
        return (f'{self.__class__.__name__}({source}, '
                f'scale={self.scale}, view_index={self.view_index}, '
                f'interpolation={self.interpolation!r})')
