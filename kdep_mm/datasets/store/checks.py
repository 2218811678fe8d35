"""Checks of a teacher store against the run that reads it: the dataset it
was cached from (identity, index order), the image decoding, the views of
the stores of an ensemble. Each refusal is a ``ValueError`` naming the
config key."""
import hashlib
import json
import os.path as osp
from typing import TYPE_CHECKING, Optional

import numpy as np
from mmcv.transforms import LoadImageFromFile

from .format import RECACHE, jsonable, shard_file

if TYPE_CHECKING:
    from .reader import TeacherStore

# the LoadImageFromFile settings that change the decoded pixels
DECODER_KEYS = ('imdecode_backend', 'color_type', 'to_float32')


def _relative(path: str, data_root: str) -> str:
    if data_root and path.startswith(data_root):
        return osp.relpath(path, data_root)
    return path


def dataset_identity(dataset) -> dict:
    """What identifies a dataset in the manifest.

    ``class``, ``data_root``, ``ann_file`` (relative to ``data_root`` when
    under it), ``length`` and, when the samples have an ``img_path``:

    * ``paths_sha256``: sha256 of the paths **in index order** (relative to
      ``data_root`` when under it, so a moved dataset matches), joined by
      newlines. The store is keyed by sample index, so the same images in
      another order are another dataset;
    * ``paths_sorted_sha256``: the same of the sorted paths (to tell "the
      same images reordered" from "other images" in a refusal).
    """
    data_root = str(getattr(dataset, 'data_root', None) or '')
    ident = dict(
        **{'class': type(dataset).__name__},
        data_root=data_root,
        ann_file=_relative(str(getattr(dataset, 'ann_file', '') or ''),
                           data_root),
        length=len(dataset))
    get_info = getattr(dataset, 'get_data_info', None)
    if get_info is not None:
        paths = []
        for i in range(len(dataset)):
            path = get_info(i).get('img_path')
            if path is None:
                paths = None
                break
            paths.append(_relative(str(path), data_root))
        if paths is not None:
            ident['paths_sha256'] = hashlib.sha256(
                '\n'.join(paths).encode()).hexdigest()
            ident['paths_sorted_sha256'] = hashlib.sha256(
                '\n'.join(sorted(paths)).encode()).hexdigest()
    return ident


def check_store_dataset(store: 'TeacherStore', dataset, key: str,
                        ident: Optional[dict] = None,
                        dataset_key: str = 'train_dataloader.dataset'
                        ) -> dict:
    """Refuse a store that was not cached from ``dataset`` (``ValueError``
    naming ``key``, the store's config key, and ``dataset_key``).

    Checked: the length; ``ann_file`` (relative to ``data_root``); the image
    paths in index order (``dataset.paths_sha256``), with a message of its
    own when the same images are in another order. Returns the dataset's
    :func:`dataset_identity` (computed once if ``ident`` is None).
    """
    stored = store.manifest.get('dataset') or {}
    if store.num_samples != len(dataset):
        raise ValueError(
            f'{key}: teacher store {store.root} holds {store.num_samples} '
            f'samples but {dataset_key} has {len(dataset)} (ann_file='
            f'{getattr(dataset, "ann_file", None)!r}): the store must be '
            'cached from exactly the training dataset, whose index keys it '
            f'(tools/cache_teacher.py with the same {dataset_key})')
    if ident is None:
        ident = dataset_identity(dataset)
    if 'ann_file' in stored and stored['ann_file'] != ident['ann_file']:
        raise ValueError(
            f'{key}: teacher store {store.root} was cached from '
            f'{dataset_key}.ann_file={stored["ann_file"]!r} (relative to '
            f'data_root), the training dataset has ann_file='
            f'{ident["ann_file"]!r}: the store is keyed by the index of the '
            f'caching dataset; cache the store from this {dataset_key}')
    want, have = stored.get('paths_sha256'), ident.get('paths_sha256')
    if want is not None and have is not None and want != have:
        if stored.get('paths_sorted_sha256') == \
                ident.get('paths_sorted_sha256'):
            raise ValueError(
                f'{key}: teacher store {store.root} holds the same images as '
                f'{dataset_key} in ANOTHER ORDER (manifest key '
                "'dataset.paths_sha256' differs, the sorted paths agree; "
                'e.g. a reordered ann_file): the store is keyed by sample '
                "index, so every image would get another image's teacher "
                f'outputs; cache the store from this {dataset_key} (same '
                'ann_file, same order)')
        raise ValueError(
            f'{key}: teacher store {store.root} was cached from other images '
            f'than {dataset_key} (same length, different image paths: '
            "manifest key 'dataset.paths_sha256' differs); cache the store "
            'from this dataset')
    return ident


def decoder_settings(transform) -> Optional[dict]:
    """The decoding settings of an image-loading transform (mmcv's
    ``LoadImageFromFile`` or a subclass such as ``kdep_mm.LoadImageOrSkip``)
    that change the decoded pixels (:data:`DECODER_KEYS`), as recorded in a
    manifest's ``decoder``; None for any other transform."""
    if not isinstance(transform, LoadImageFromFile):
        return None
    return jsonable(dict(type='LoadImageFromFile',
                          **{k: getattr(transform, k) for k in DECODER_KEYS}))


def pipeline_decoder(dataset) -> Optional[dict]:
    """:func:`decoder_settings` of the first image-loading transform of
    ``dataset.pipeline`` (None if it has none)."""
    transforms = getattr(getattr(dataset, 'pipeline', None), 'transforms',
                         None) or []
    for t in transforms:
        settings = decoder_settings(t)
        if settings is not None:
            return settings
    return None


def check_store_decoder(store: 'TeacherStore', transforms: list,
                        index: int, key: str) -> None:
    """Refuse a training pipeline whose image decoding is not the caching
    side's. ``transforms[index]`` is the transform applying ``store``'s
    views; ``key`` names the pipeline (e.g.
    ``train_dataloader.dataset.pipeline``).

    The transform right before it must be an image-loading transform
    (``LoadImageFromFile`` or a subclass; anything in between would change
    the pixels the stored crop boxes apply to) whose
    :data:`DECODER_KEYS` equal the manifest's ``decoder``.
    """
    prev = transforms[index - 1] if index > 0 else None
    got = decoder_settings(prev) if prev is not None else None
    if got is None:
        raise ValueError(
            f'{key}[{index}] ({type(transforms[index]).__name__}) must come '
            f'right after the image loading (LoadImageFromFile): the store '
            f'{store.root} holds the teacher outputs of crops of the decoded '
            'original image, but ' + (
                f'{key}[{index - 1}] is {type(prev).__name__}'
                if prev is not None else 'it is the first transform'))
    want = store.manifest.get('decoder')
    if not isinstance(want, dict):
        raise ValueError(
            f'teacher store {store.root}: the manifest records no decoder '
            "(manifest key 'decoder'), so the training pipeline's decoding "
            f'({key}[{index - 1}]) cannot be checked; {RECACHE} from a '
            'dataset whose pipeline decodes with LoadImageFromFile')
    for k in DECODER_KEYS:
        if want.get(k) != got.get(k):
            raise ValueError(
                f'{key}[{index - 1}].{k} is {got.get(k)!r} but teacher store '
                f'{store.root} was cached from images decoded with {k}='
                f'{want.get(k)!r} (manifest key \'decoder.{k}\'): another '
                'decoder gives other pixels, and the stored teacher outputs '
                'would not be those of the image the student sees; decode '
                'as the caching side did or re-cache with this decoder')


def _marker_files(store: 'TeacherStore', shard: int) -> dict:
    with open(shard_file(store.root, shard, 'done.json')) as f:
        return json.load(f)['files']


def check_same_views(ref_name: str, ref: 'TeacherStore', name: str,
                     other: 'TeacherStore') -> None:
    """Raise ``ValueError`` unless the two stores hold the same views
    (boxes and flips) for every sample (``stores.<name>`` names the store's
    config key). With equal shard sizes this compares the checksums in the
    shard markers (no data read); otherwise the view arrays themselves."""
    if ref.shard_size == other.shard_size:
        for shard in range(ref.num_shards):
            a, b = _marker_files(ref, shard), _marker_files(other, shard)
            for f in ('boxes', 'flips'):
                if a[f]['sha256'] != b[f]['sha256']:
                    raise ValueError(
                        f'stores.{name}: {other.root} holds other views '
                        f'({f} of shard {shard} differ) than '
                        f'stores.{ref_name} ({ref.root}); cache it with '
                        f'tools/cache_teacher.py --views-from {ref.root}')
        return
    for i in range(ref.num_samples):
        ba, fa = ref.views(i)
        bb, fb = other.views(i)
        if not (np.array_equal(ba, bb) and np.array_equal(fa, fb)):
            raise ValueError(
                f'stores.{name}: {other.root} holds other views than '
                f'stores.{ref_name} ({ref.root}) for sample {i}; cache it '
                f'with tools/cache_teacher.py --views-from {ref.root}')
