"""Apply a stored view: the training side of a teacher store.

The caching side (``kdep_mm.apis``) draws views, crops them with
:func:`~kdep_mm.datasets.store.crop_view` and runs the teacher;
:class:`ApplyStoredView` calls the same ``crop_view`` on the decoded
original image, so the student sees pixel for pixel the image the teacher
saw, and attaches the teacher outputs of that view.
"""
from typing import Dict, Optional, Sequence, Union

import numpy as np
from mmcv.transforms import BaseTransform

from kdep_mm.registry import TRANSFORMS
from ..store import TeacherStore, crop_view, size_hw


@TRANSFORMS.register_module()
class ApplyStoredView(BaseTransform):
    """Crop and flip the original image as one of its stored views, and
    attach the teacher outputs of that view.

    Put it right after image loading, in place of ``RandomResizedCrop`` +
    ``RandomFlip``: ``results['img']`` must be the original decoded image
    (the one the store was cached from).

    Required keys: ``img``, ``sample_idx`` (set by mmengine's
    ``BaseDataset``; the dataset index, which must be the store's index).

    Added / modified keys: ``img``, ``img_shape``, ``view_index``,
    ``view_box`` (float32 (4,)), ``flip``, ``flip_direction`` and, for every
    store field ``f``, ``keys[f]`` (default ``'teacher_' + f``). To carry the
    teacher outputs into the data samples, list them in mmpretrain's
    ``PackInputs(algorithm_keys=[...])``.

    The checks that need the training dataset and the pipeline around
    this transform (dataset identity and order, decoder, teacher checkpoint)
    are done before training by ``FitTCSCoordinatesHook`` or
    ``CheckTeacherStoresHook``.

    Args:
        store: a :class:`~kdep_mm.datasets.store.TeacherStore` or the
            kwargs of one (``dict(root=..., expected=..., verify=...)``),
            opened (and verified) here, once, when the pipeline is built;
            DataLoader workers get the opened store (a pickled store drops
            its memory maps; each worker maps the files on first use).
        scale (int | tuple): output size, int or ``(h, w)`` (as
            ``RandomResizedCrop``). Must be the caching side's size: a
            store whose manifest ``out_size`` differs is refused
            (``ValueError`` naming ``ApplyStoredView.scale``).
        view_index (int, optional): always use this view (e.g. 0 in the
            ``V = 1`` mode or for evaluation); None draws one uniformly with
            numpy's global RNG (seeded per worker by mmengine).
        keys (dict, optional): store field -> results key.
        interpolation (str): cv2 interpolation. Defaults to 'bilinear'.
    """

    def __init__(self,
                 store,
                 scale: Union[int, Sequence[int]],
                 view_index: Optional[int] = None,
                 keys: Optional[Dict[str, str]] = None,
                 interpolation: str = 'bilinear'):
        if isinstance(store, dict):
            store = TeacherStore(**store)
        self.store = store
        self.scale = size_hw(scale)
        out = store.manifest.get('out_size')
        if out is not None and tuple(int(x) for x in out) != self.scale:
            raise ValueError(
                f'ApplyStoredView.scale is {self.scale} (h, w) but teacher '
                f'store {store.root} was cached at out_size {tuple(out)} '
                "(manifest key 'out_size'): the stored teacher outputs are "
                'those of crops of another size than the student would see; '
                'use the caching --out-size as scale or re-cache the store')
        self.view_index = view_index
        self.keys = dict(keys or {})
        self.interpolation = interpolation

    def transform(self, results: dict) -> dict:
        store = self.store
        index = results['sample_idx']
        if self.view_index is None:
            view = int(np.random.randint(store.num_views))
        else:
            view = int(self.view_index)
            if not 0 <= view < store.num_views:
                raise ValueError(f'view_index {view} but the store has '
                                 f'{store.num_views} views')
        entry = store.get(index, view)
        box, flip = entry.pop('box'), entry.pop('flip')
        img = crop_view(results['img'], box, flip, self.scale,
                        self.interpolation)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['view_index'] = view
        results['view_box'] = box
        results['flip'] = flip
        results['flip_direction'] = 'horizontal' if flip else None
        for name, value in entry.items():
            results[self.keys.get(name, 'teacher_' + name)] = value
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(store={self.store.root!r}, '
                f'scale={self.scale}, view_index={self.view_index}, '
                f'interpolation={self.interpolation!r})')
