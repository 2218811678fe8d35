"""Views of an image whose teacher outputs are in a teacher store.

A *view* is a crop box in normalised coordinates of the original image,
``(x0, y0, x1, y1)`` in ``[0, 1]``, plus a horizontal flip. The caching side
draws views with :func:`sample_view` (or :func:`center_view`), crops them
with :func:`crop_view` and runs the teacher; the training side applies a
stored view with ``kdep_mm.ApplyStoredView``, which calls the same
:func:`crop_view`, so the student sees pixel for pixel the image the teacher
saw (given the same decoded original image).

Pixel coordinates of a box: ``px = floor(v * size + 0.5)`` (round half up)
for each coordinate, ``size`` being W for x and H for y; the crop is
``img[y0:y1, x0:x1]`` (end exclusive), clipped to the image and at least one
pixel wide and high. Boxes made by :func:`sample_view` / :func:`center_view`
are integer pixel boxes divided by W or H, so this rounding recovers them
exactly (float32 storage is exact enough for sides below 2**16).

The views of one sample are a pure function of the seed, the sample index
and the image size (:func:`draw_views`), so reruns and ranks agree:

>>> boxes, flips = draw_views(32, 48, index=5, num_views=2, seed=0)
>>> boxes.shape, flips.shape
((2, 4), (2,))
>>> bool((boxes == draw_views(32, 48, 5, 2, 0)[0]).all())
True
>>> box_to_pixels(center_view(32, 48)[0], 32, 48)
(8, 0, 40, 32)
"""
import math
from typing import Optional, Sequence, Tuple, Union

import mmcv
import numpy as np

VIEW_MODES = ('random', 'center')


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


def pixels_to_box(pixels: Sequence[int], h: int, w: int) -> np.ndarray:
    """Normalised float32 box of an integer pixel box (end exclusive)."""
    x0, y0, x1, y1 = pixels
    return np.array([x0 / w, y0 / h, x1 / w, y1 / h], dtype=np.float32)


def size_hw(scale: Union[int, Sequence[int]]) -> Tuple[int, int]:
    """``(h, w)`` of an output size given as an int or ``(h, w)``."""
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
    out_h, out_w = size_hw(out_size)
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


def center_view(h: int, w: int, crop_frac: float = 1.0
                ) -> Tuple[np.ndarray, bool]:
    """The fixed view of the cheap ``V = 1`` mode: the centred square of
    side ``round(crop_frac * min(h, w))``, not flipped. (Cropping then
    resizing is not pixel-equal to mmpretrain's ``ResizeEdge`` +
    ``CenterCrop``, which resize first; use ``ApplyStoredView`` in the
    training pipeline as well.)"""
    side = max(1, min(h, w, int(round(crop_frac * min(h, w)))))
    x0, y0 = (w - side) // 2, (h - side) // 2
    return pixels_to_box((x0, y0, x0 + side, y0 + side), h, w), False


def draw_views(h: int, w: int, index: int, num_views: int, seed: int,
               view_mode: str = 'random',
               view_kwargs: Optional[dict] = None
               ) -> Tuple[np.ndarray, np.ndarray]:
    """The ``num_views`` views of sample ``index`` (an ``h`` x ``w`` image):
    ``(boxes float32 (V, 4), flips uint8 (V,))``.

    ``'random'``: :func:`sample_view` with ``np.random.default_rng([seed,
    index])``, so a view depends on nothing but the seed, the index and the
    image size. ``'center'``: :func:`center_view` for every view.
    """
    view_kwargs = dict(view_kwargs or {})
    boxes = np.zeros((num_views, 4), np.float32)
    flips = np.zeros((num_views, ), np.uint8)
    if view_mode == 'random':
        rng = np.random.default_rng([int(seed), int(index)])
        for v in range(num_views):
            boxes[v], flips[v] = sample_view(h, w, rng, **view_kwargs)
    elif view_mode == 'center':
        for v in range(num_views):
            boxes[v], flips[v] = center_view(h, w, **view_kwargs)
    else:
        raise ValueError(f'view_mode must be one of {VIEW_MODES}, got '
                         f'{view_mode!r}')
    return boxes, flips
