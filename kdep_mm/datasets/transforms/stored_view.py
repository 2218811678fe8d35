"""Views of an image whose teacher outputs are in a teacher store.

A *view* is a crop box in normalised coordinates of the original image,
``(x0, y0, x1, y1)`` in ``[0, 1]``, plus a horizontal flip. The caching side
draws views with :func:`sample_view` (or :func:`center_view`), crops them
with :func:`crop_view` and runs the teacher; the training side applies a
stored view with :class:`ApplyStoredView`, which calls the same
:func:`crop_view`, so the student sees pixel for pixel the image the teacher
saw (given the same decoded original image).

Pixel coordinates of a box: ``px = floor(v * size + 0.5)`` (round half up)
for each coordinate, ``size`` being W for x and H for y; the crop is
``img[y0:y1, x0:x1]`` (end exclusive), clipped to the image and at least one
pixel wide and high. Boxes made by :func:`sample_view` / :func:`center_view`
are integer pixel boxes divided by W or H, so this rounding recovers them
exactly (float32 storage is exact enough for sides below 2**16).
"""
import math
from typing import Dict, Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform

from kdep_mm.registry import TRANSFORMS


def box_to_pixels(box: Sequence[float], h: int, w: int
                  ) -> Tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` integer pixel box (end exclusive) of a
    normalised ``box`` in an ``h`` x ``w`` image (see the module doc)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    px0 = min(max(int(math.floor(x0 * w + 0.5)), 0), w - 1)
    py0 = min(max(int(math.floor(y0 * h + 0.5)), 0), h - 1)
    px1 = min(max(int(math.floor(x1 * w + 0.5)), px0 + 1), w)
    py1 = min(max(int(math.floor(y1 * h + 0.5)), py0 + 1), h)
    return px0, py0, px1, py1


def _hw(scale: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(scale, int):
        return scale, scale
    h, w = scale
    return int(h), int(w)


def crop_view(img: np.ndarray, box: Sequence[float], flip: bool,
              out_size: Union[int, Sequence[int]],
              interpolation: str = 'bilinear') -> np.ndarray:
    """Crop normalised ``box`` out of ``img`` (H, W[, C]), resize it to
    ``out_size`` (int or ``(h, w)``, as mmpretrain's ``RandomResizedCrop``
    ``scale``) with cv2 ``interpolation``, and flip it horizontally if
    ``flip``. The one crop used by the caching and the training side."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = box_to_pixels(box, h, w)
    out_h, out_w = _hw(out_size)
    crop = img[y0:y1, x0:x1]
    out = mmcv.imresize(crop, (out_w, out_h), interpolation=interpolation,
                        backend='cv2')
    if flip:
        out = mmcv.imflip(out, direction='horizontal')
    return np.ascontiguousarray(out)


def _uniform(rng, low, high):
    return float(rng.uniform(low, high))


def _randint(rng, low, high_inclusive):
    if hasattr(rng, 'integers'):  # np.random.Generator
        return int(rng.integers(low, high_inclusive + 1))
    return int(rng.randint(low, high_inclusive + 1))  # RandomState


def sample_view(h: int, w: int, rng,
                scale: Tuple[float, float] = (0.08, 1.0),
                ratio: Tuple[float, float] = (3. / 4., 4. / 3.),
                flip_prob: float = 0.5,
                max_attempts: int = 10) -> Tuple[np.ndarray, bool]:
    """A RandomResizedCrop-style view of an ``h`` x ``w`` image.

    The crop area is a uniform fraction in ``scale`` of the image area, the
    aspect ratio (w / h) log-uniform in ``ratio``; after ``max_attempts``
    boxes that do not fit, the largest centred box with an aspect ratio in
    ``ratio`` is used. The flip is drawn with probability ``flip_prob``.

    Args:
        rng: ``np.random.Generator`` or ``np.random.RandomState``.

    Returns:
        ``(box, flip)``: float32 ``(4,)`` normalised ``x0, y0, x1, y1`` (an
        integer pixel box divided by W / H) and a bool.
    """
    area = h * w
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    box = None
    for _ in range(max_attempts):
        target_area = _uniform(rng, *scale) * area
        aspect = math.exp(_uniform(rng, log_lo, log_hi))
        cw = int(round(math.sqrt(target_area * aspect)))
        ch = int(round(math.sqrt(target_area / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            y0 = _randint(rng, 0, h - ch)
            x0 = _randint(rng, 0, w - cw)
            box = (x0, y0, x0 + cw, y0 + ch)
            break
    if box is None:
        in_ratio = w / h
        if in_ratio < min(ratio):
            cw, ch = w, max(1, min(h, int(round(w / min(ratio)))))
        elif in_ratio > max(ratio):
            cw, ch = max(1, min(w, int(round(h * max(ratio))))), h
        else:
            cw, ch = w, h
        x0, y0 = (w - cw) // 2, (h - ch) // 2
        box = (x0, y0, x0 + cw, y0 + ch)
    flip = bool(_uniform(rng, 0.0, 1.0) < flip_prob)
    return pixels_to_box(box, h, w), flip


def pixels_to_box(pixels: Sequence[int], h: int, w: int) -> np.ndarray:
    """Normalised float32 box of an integer pixel box (end exclusive)."""
    x0, y0, x1, y1 = pixels
    return np.array([x0 / w, y0 / h, x1 / w, y1 / h], dtype=np.float32)


def center_view(h: int, w: int, crop_frac: float = 1.0
                ) -> Tuple[np.ndarray, bool]:
    """The fixed view of the cheap ``V = 1`` mode: the centred square of
    side ``round(crop_frac * min(h, w))``, not flipped. (Cropping then
    resizing is not pixel-equal to mmpretrain's ``ResizeEdge`` +
    ``CenterCrop``, which resize first; use :class:`ApplyStoredView` in the
    training pipeline as well.)"""
    side = max(1, min(h, w, int(round(crop_frac * min(h, w)))))
    x0, y0 = (w - side) // 2, (h - side) // 2
    return pixels_to_box((x0, y0, x0 + side, y0 + side), h, w), False


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
        store: a :class:`~kdep_mm.datasets.teacher_store.TeacherStore` or the
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
            from kdep_mm.datasets.teacher_store import TeacherStore
            store = TeacherStore(**store)
        self.store = store
        self.scale = _hw(scale)
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
