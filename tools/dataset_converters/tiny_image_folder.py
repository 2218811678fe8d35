"""Write a tiny deterministic ImageNet-style image folder.

The data of the tiny configs (``configs/tiny/``) and of the tests::

    python tools/dataset_converters/tiny_image_folder.py data/tiny_synthetic

:func:`make_image_folder` writes an ImageNet-style folder (one sub-folder per
class) that mmpretrain's ``CustomDataset`` reads without an annotation file.
The images are pure functions of ``seed``, so two calls with the same
arguments write byte-identical files. The tests import it from here
(``tests/conftest.py`` puts this folder on ``sys.path``).
"""
import argparse
import os
import os.path as osp
from typing import List

import numpy as np
from PIL import Image


def _class_pattern(cls: int, size: int) -> np.ndarray:
    """A per-class base pattern (stripes of a class-specific orientation and
    colour), so that a classifier has something learnable."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = 4 + 2 * cls
    if cls % 2 == 0:
        wave = np.sin(2 * np.pi * xx / period)
    else:
        wave = np.sin(2 * np.pi * (xx + yy) / period)
    wave = (wave + 1.0) * 0.5  # [0, 1]
    colour = np.array([(37 * (cls + 1)) % 256, (91 * (cls + 2)) % 256,
                       (151 * (cls + 3)) % 256], dtype=np.float32)
    return wave[..., None] * colour[None, None, :]


def make_image_folder(root: str,
                      num_classes: int = 2,
                      per_class: int = 8,
                      size: int = 32,
                      seed: int = 0,
                      ext: str = '.png') -> List[str]:
    """Write a deterministic ImageNet-style image folder.

    Layout: ``root/class_{c}/img_{i:03d}{ext}`` for ``c < num_classes`` and
    ``i < per_class``. Each image is a class-specific stripe pattern plus
    seeded noise, ``size x size`` RGB, 8 bit.

    Args:
        root (str): the folder to write into (created if missing). Existing
            files with the same names are overwritten.
        num_classes (int): number of class folders. Defaults to 2.
        per_class (int): images per class. Defaults to 8.
        size (int): height and width in pixels. Defaults to 32.
        seed (int): seed of the noise. Defaults to 0.
        ext (str): ``'.png'`` (lossless, default) or ``'.jpg'``.

    Returns:
        list[str]: the class names, sorted (``CustomDataset`` sorts them the
        same way, so index ``c`` is label ``c``).
    """
    if num_classes < 1 or per_class < 1 or size < 1:
        raise ValueError('num_classes, per_class and size must be positive, '
                         f'got {num_classes}, {per_class}, {size}')
    ext = ext if ext.startswith('.') else '.' + ext
    if ext.lower() not in ('.png', '.jpg', '.jpeg'):
        raise ValueError(f'unsupported image extension {ext!r}')
    rng = np.random.default_rng(seed)
    classes = [f'class_{c}' for c in range(num_classes)]
    for c, name in enumerate(classes):
        folder = osp.join(root, name)
        os.makedirs(folder, exist_ok=True)
        base = _class_pattern(c, size)
        for i in range(per_class):
            noise = rng.normal(0.0, 40.0, size=(size, size, 3))
            img = np.clip(base + noise, 0, 255).astype(np.uint8)
            path = osp.join(folder, f'img_{i:03d}{ext}')
            if ext.lower() == '.png':
                Image.fromarray(img).save(path, format='PNG')
            else:
                Image.fromarray(img).save(path, format='JPEG', quality=95)
    return classes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description='Write a tiny deterministic ImageNet-style image folder.')
    parser.add_argument('root')
    parser.add_argument('--num-classes', type=int, default=2)
    parser.add_argument('--per-class', type=int, default=8)
    parser.add_argument('--size', type=int, default=32)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--ext', default='.png')
    args = parser.parse_args(argv)
    classes = make_image_folder(args.root, args.num_classes, args.per_class,
                                args.size, args.seed, args.ext)
    print(f'wrote {len(classes) * args.per_class} images in '
          f'{len(classes)} classes to {args.root}')


if __name__ == '__main__':
    main()
