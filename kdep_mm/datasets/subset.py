"""Class-balanced subsets of ImageNet-style folders (KDEP's 10% data)."""
import os
import os.path as osp
import random
import tempfile
from typing import List, Optional, Tuple

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                  '.tiff', '.webp')


def scan_image_folder(root: str,
                      extensions=IMG_EXTENSIONS) -> Tuple[List[str], dict]:
    """Classes (sorted folder names, as mmpretrain's CustomDataset orders
    them) and ``{class: sorted relative image paths}`` of ``root/<class>/``."""
    if not osp.isdir(root):
        raise FileNotFoundError(f'image folder not found: {root}')
    classes = sorted(d for d in os.listdir(root)
                     if osp.isdir(osp.join(root, d)))
    if not classes:
        raise ValueError(f'{root} has no class sub-folders')
    files = {}
    for cls in classes:
        names = []
        for dirpath, _, fnames in os.walk(osp.join(root, cls)):
            for f in fnames:
                if f.lower().endswith(extensions):
                    names.append(
                        osp.relpath(osp.join(dirpath, f), root).replace(
                            os.sep, '/'))
        files[cls] = sorted(names)
    return classes, files


def class_balanced_subset(root: str,
                          per_class: Optional[int] = None,
                          fraction: Optional[float] = None,
                          seed: int = 0) -> List[Tuple[str, int]]:
    """Draw ``per_class`` images (or ``fraction`` of each class) per class.

    The draw depends only on ``seed`` and the sorted file lists, so the same
    seed gives the same subset on every machine. Returns ``(relative path,
    label)`` pairs sorted by label then path.
    """
    if (per_class is None) == (fraction is None):
        raise ValueError('give exactly one of per_class and fraction')
    if per_class is not None and per_class <= 0:
        raise ValueError(f'per_class must be > 0, got {per_class}')
    if fraction is not None and not 0 < fraction <= 1:
        raise ValueError(f'fraction must be in (0, 1], got {fraction}')
    classes, files = scan_image_folder(root)
    rng = random.Random(seed)
    subset = []
    for label, cls in enumerate(classes):
        names = files[cls]
        n = per_class if per_class is not None else max(
            1, round(fraction * len(names)))
        if n > len(names):
            raise ValueError(f'class {cls!r} has {len(names)} images, fewer '
                             f'than per_class={n}')
        subset += [(name, label) for name in sorted(rng.sample(names, n))]
    return subset


def write_ann_file(pairs: List[Tuple[str, int]], path: str) -> None:
    """Write ``path label`` lines (mmpretrain's ann_file format) atomically."""
    dirname = osp.dirname(osp.abspath(path))
    os.makedirs(dirname, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dirname, suffix='.tmp')
    with os.fdopen(fd, 'w') as f:
        for name, label in pairs:
            f.write(f'{name} {label}\n')
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
