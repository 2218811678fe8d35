"""A procedurally drawn image-classification dataset ("synthetic shapes").

:func:`generate_shapes_dataset` writes an ImageNet-style folder::

    root/train/<class>/<index>.png
    root/val/<class>/<index>.png
    root/meta.json                  (written last: the folder is complete)

that mmpretrain's ``CustomDataset`` reads with ``data_prefix='train'`` /
``'val'``. It needs no download, which makes it the default data of the
offline demo (``tools/kdep_demo.py``).

Each class is a *shape* crossed with a *texture* (10 classes by default:
circle / square / triangle / star / cross, each solid or striped). Every
image draws its shape with a random colour, position, scale and rotation
over a cluttered background (a smooth random colour field, random lines and
dots, pixel noise), so the task is learnable but not trivial: a classifier
must be invariant to colour, pose and clutter and tell the shape outline and
its fill apart.

The images are a pure function of ``(seed, split, class, index)`` (each
image has its own seeded generator), so the same arguments give
byte-identical files on every machine. The folder is written to a temporary
sibling and renamed into place, so an interrupted run never leaves a
half-written ``root``; a complete ``root`` with the same parameters is
reused as is.
"""
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Dict, List, Optional, Tuple

import numpy as np

SHAPES = ('circle', 'square', 'triangle', 'star', 'cross', 'hexagon')
TEXTURES = ('solid', 'striped', 'outline')
GENERATOR_VERSION = 1
META_FILE = 'meta.json'
_SPLITS = ('train', 'val')
_SUPERSAMPLE = 4  # draw at 4x and downsample with area averaging (antialias)


def shape_classes(num_classes: int = 10) -> List[Tuple[str, str, str]]:
    """``(folder name, shape, texture)`` of each class, in label order.

    Up to ``2 * len(SHAPES)`` classes use the textures solid / striped
    (class ``k`` is shape ``k // 2``); more classes (up to
    ``3 * len(SHAPES)``) add the outline texture. Folder names start with
    the zero-padded label, so sorting them (as ``CustomDataset`` does) gives
    the label order.
    """
    max_classes = len(SHAPES) * len(TEXTURES)
    if not isinstance(num_classes, int) or not 2 <= num_classes <= max_classes:
        raise ValueError(f'num_classes must be an int in [2, {max_classes}], '
                         f'got {num_classes!r}')
    n_tex = 2 if num_classes <= 2 * len(SHAPES) else 3
    classes = []
    for k in range(num_classes):
        shape, texture = SHAPES[k // n_tex], TEXTURES[k % n_tex]
        classes.append((f'{k:02d}_{shape}_{texture}', shape, texture))
    return classes


# --------------------------------------------------------------- drawing
def _shape_polygon(shape: str, cx: float, cy: float, r: float,
                   angle: float) -> Optional[np.ndarray]:
    """Vertices (K, 2) of a polygonal shape, or None for a circle."""
    if shape == 'circle':
        return None
    if shape == 'square':
        t = np.arange(4) * np.pi / 2 + np.pi / 4
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r
    elif shape == 'triangle':
        t = np.arange(3) * 2 * np.pi / 3 - np.pi / 2
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r * 1.15
    elif shape == 'hexagon':
        t = np.arange(6) * np.pi / 3
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r
    elif shape == 'star':
        t = np.arange(10) * np.pi / 5 - np.pi / 2
        rad = np.where(np.arange(10) % 2 == 0, r * 1.15, r * 0.45)
        pts = np.stack([np.cos(t) * rad, np.sin(t) * rad], 1)
    elif shape == 'cross':
        a, b = r, r * 0.36
        pts = np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b],
                        [b, a], [-b, a], [-b, b], [-a, b], [-a, -b],
                        [-b, -b]], dtype=np.float64)
    else:
        raise ValueError(f'unknown shape {shape!r}')
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return pts @ rot.T + np.array([cx, cy])


def _random_colour(rng: np.random.Generator,
                   avoid: Optional[np.ndarray] = None,
                   min_dist: float = 120.) -> np.ndarray:
    """A random 8-bit colour at least ``min_dist`` (L2) away from ``avoid``."""
    for _ in range(100):
        colour = rng.integers(0, 256, size=3).astype(np.float64)
        if avoid is None or np.linalg.norm(colour - avoid) >= min_dist:
            return colour
    return 255. - avoid  # practically unreachable


def _background(rng: np.random.Generator, big: int,
                base: np.ndarray) -> np.ndarray:
    """A smooth random colour field around ``base`` plus clutter."""
    import cv2
    coarse = rng.normal(0, 20, size=(3, 3, 3))
    field = cv2.resize(coarse, (big, big), interpolation=cv2.INTER_CUBIC)
    img = np.clip(base[None, None, :] + field, 0, 255)
    # clutter: thin random lines and small dots of random colours
    for _ in range(int(rng.integers(0, 3))):
        p1 = tuple(int(v) for v in rng.integers(0, big, size=2))
        p2 = tuple(int(v) for v in rng.integers(0, big, size=2))
        colour = tuple(float(v) for v in rng.integers(0, 256, size=3))
        cv2.line(img, p1, p2, colour, _SUPERSAMPLE, cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 3))):
        p = tuple(int(v) for v in rng.integers(0, big, size=2))
        colour = tuple(float(v) for v in rng.integers(0, 256, size=3))
        cv2.circle(img, p, int(rng.integers(1, 3)) * _SUPERSAMPLE, colour, -1,
                   cv2.LINE_AA)
    return img


def _shape_mask(shape: str, big: int, cx: float, cy: float, r: float,
                angle: float, thickness: int = -1) -> np.ndarray:
    import cv2
    mask = np.zeros((big, big), np.float64)
    poly = _shape_polygon(shape, cx, cy, r, angle)
    if poly is None:
        cv2.circle(mask, (int(round(cx)), int(round(cy))), int(round(r)), 1.,
                   thickness, cv2.LINE_AA)
    elif thickness < 0:
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1., cv2.LINE_AA)
    else:
        cv2.polylines(mask, [np.round(poly).astype(np.int32)], True, 1.,
                      thickness, cv2.LINE_AA)
    return mask


def render_image(shape: str, texture: str, size: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Draw one ``size x size`` BGR uint8 image of ``shape`` x ``texture``."""
    import cv2
    big = size * _SUPERSAMPLE
    bg_colour = rng.integers(0, 256, size=3).astype(np.float64)
    img = _background(rng, big, bg_colour)
    fg = _random_colour(rng, bg_colour)

    r = rng.uniform(0.27, 0.38) * big
    cx, cy = big / 2 + rng.uniform(-0.15, 0.15, size=2) * big
    angle = rng.uniform(0, 2 * np.pi)
    if texture == 'outline':
        thick = int(rng.integers(2, 4)) * _SUPERSAMPLE
        mask = _shape_mask(shape, big, cx, cy, r, angle, thick)
        paint = np.broadcast_to(fg, img.shape)
    else:
        mask = _shape_mask(shape, big, cx, cy, r, angle)
        if texture == 'solid':
            paint = np.broadcast_to(fg, img.shape)
        elif texture == 'striped':
            fg2 = _random_colour(rng, fg)
            period = rng.uniform(3.0, 5.0) * _SUPERSAMPLE
            theta = rng.uniform(0, np.pi)
            yy, xx = np.mgrid[0:big, 0:big].astype(np.float64)
            phase = (xx * np.cos(theta) + yy * np.sin(theta)) / period
            stripe = (np.floor(phase + rng.uniform()) % 2)[..., None]
            paint = stripe * fg + (1 - stripe) * fg2
        else:
            raise ValueError(f'unknown texture {texture!r}')
    img = img * (1 - mask[..., None]) + paint * mask[..., None]
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    img = img + rng.normal(0, 5, size=img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


# --------------------------------------------------------------- dataset
def _params(num_classes: int, train_per_class: int, val_per_class: int,
            size: int, seed: int) -> Dict:
    return dict(
        generator='kdep_mm.datasets.synthetic_shapes',
        version=GENERATOR_VERSION,
        num_classes=num_classes,
        train_per_class=train_per_class,
        val_per_class=val_per_class,
        size=size,
        seed=seed)


def _read_meta(root: str) -> Optional[Dict]:
    path = osp.join(root, META_FILE)
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _check_complete(root: str, params: Dict) -> bool:
    """True if ``root`` is a complete dataset written with ``params``.

    Raises:
        FileExistsError: ``root`` exists but is not such a dataset.
    """
    if not osp.exists(root):
        return False
    meta = _read_meta(root)
    if meta is None:
        raise FileExistsError(
            f'{root} exists but is not a complete synthetic-shapes dataset '
            f'(no {META_FILE}); delete it or choose another folder')
    got = {k: meta.get(k) for k in params}
    if got != params:
        diff = {k: (got[k], params[k]) for k in params if got[k] != params[k]}
        raise FileExistsError(
            f'{root} holds a synthetic-shapes dataset written with other '
            f'parameters (found vs wanted: {diff}); delete it or choose '
            'another folder')
    return True


def generate_shapes_dataset(root: str,
                            num_classes: int = 10,
                            train_per_class: int = 300,
                            val_per_class: int = 50,
                            size: int = 32,
                            seed: int = 0) -> Dict:
    """Write (or reuse) the synthetic-shapes dataset under ``root``.

    Args:
        root (str): the dataset folder; holds ``train/``, ``val/`` and
            ``meta.json`` when done.
        num_classes (int): 2 to 18 classes (see :func:`shape_classes`).
            Defaults to 10.
        train_per_class (int): training images per class. Defaults to 300.
        val_per_class (int): validation images per class. Defaults to 50.
        size (int): image height and width in pixels (>= 16). Defaults
            to 32.
        seed (int): the dataset is a pure function of the seed and the
            other arguments. Defaults to 0.

    Returns:
        dict: the contents of ``meta.json``: the parameters, ``classes``
        (folder names in label order), ``counts`` per split and
        ``reused`` (True when a complete folder was found).

    Raises:
        FileExistsError: ``root`` exists but is not a complete dataset with
            these parameters (it is never overwritten).
    """
    for name, value in (('train_per_class', train_per_class),
                        ('val_per_class', val_per_class)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f'{name} must be a positive int, got {value!r}')
    if not isinstance(size, int) or size < 16:
        raise ValueError(f'size must be an int >= 16, got {size!r}')
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f'seed must be a non-negative int, got {seed!r}')
    classes = shape_classes(num_classes)
    params = _params(num_classes, train_per_class, val_per_class, size, seed)
    root = osp.abspath(root)
    if _check_complete(root, params):
        meta = _read_meta(root)
        meta['reused'] = True
        return meta

    import cv2
    parent = osp.dirname(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f'.{osp.basename(root)}.tmp-')
    try:
        counts = {}
        for split_id, (split, per_class) in enumerate(
                zip(_SPLITS, (train_per_class, val_per_class))):
            for label, (folder, shape, texture) in enumerate(classes):
                out_dir = osp.join(tmp, split, folder)
                os.makedirs(out_dir)
                for i in range(per_class):
                    rng = np.random.default_rng([seed, split_id, label, i])
                    img = render_image(shape, texture, size, rng)
                    ok, buf = cv2.imencode('.png', img)
                    if not ok:
                        raise RuntimeError('PNG encoding failed')
                    with open(osp.join(out_dir, f'{i:05d}.png'), 'wb') as f:
                        f.write(buf.tobytes())
            counts[split] = per_class * num_classes
        meta = dict(params, classes=[c[0] for c in classes], counts=counts)
        with open(osp.join(tmp, META_FILE), 'w') as f:
            json.dump(meta, f, indent=2, sort_keys=True)
            f.write('\n')
            f.flush()
            os.fsync(f.fileno())
        try:
            os.rename(tmp, root)
        except OSError:
            # another process finished the same dataset first
            if not _check_complete(root, params):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    meta = _read_meta(root)
    meta['reused'] = False
    return meta


def main(argv=None) -> None:
    import argparse
    parser = argparse.ArgumentParser(
        description='Write the synthetic-shapes dataset (ImageNet-style '
        'train/ and val/ folders of procedurally drawn PNGs).')
    parser.add_argument('root')
    parser.add_argument('--num-classes', type=int, default=10)
    parser.add_argument('--train-per-class', type=int, default=300)
    parser.add_argument('--val-per-class', type=int, default=50)
    parser.add_argument('--size', type=int, default=32)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    meta = generate_shapes_dataset(args.root, args.num_classes,
                                   args.train_per_class, args.val_per_class,
                                   args.size, args.seed)
    state = 'reused' if meta['reused'] else 'written'
    print(f'{args.root}: {state}, {meta["counts"]} images, classes '
          f'{meta["classes"]}')


if __name__ == '__main__':
    main()
