"""The on-disk format of a teacher store: layout, manifest, field specs.

Layout under ``root``::

    manifest.json                      format, teacher, dataset, decoder, V,
                                       fields, and its own sha256
    shards/00000.<field>.npy           (n, V, *shape), n <= shard_size
    shards/00000.boxes.npy             float32 (n, V, 4) normalised boxes
    shards/00000.flips.npy             uint8 (n, V), 1 = horizontal flip
    shards/00000.done.json             sha256 and size of each file above,
                                       and the manifest's sha256
    shards/00000.verified.json         written by a reader once the files'
                                       sha256 passed: their size, mtime and
                                       ctime at that moment

JSON files are canonical (:func:`json_bytes`: sorted keys, indent 2, a final
newline); the manifest's ``manifest_sha256`` is the sha256 of its canonical
JSON without that key (:func:`manifest_checksum`).

>>> manifest_checksum({'a': 1}) == manifest_checksum(
...     {'a': 1, 'manifest_sha256': 'x'})
True
>>> normalize_fields({'logits': ((10,), 'float16')})
{'logits': {'shape': [10], 'dtype': 'float16'}}
>>> osp.basename(shard_file('/s', 3, 'feat.npy'))
'00003.feat.npy'
"""
import hashlib
import io
import json
import os.path as osp
import re
from typing import Any, Dict, Optional

import numpy as np

# 2: dataset identity in index order (paths_sha256) with the sorted paths
#    beside it, manifest checksum, decoder settings, teacher checkpoint
#    sha256, done-markers bound to the manifest
FORMAT_VERSION = 2
FORMAT = 'kdep_mm.teacher_store'
MANIFEST = 'manifest.json'
SHARD_DIR = 'shards'
VIEW_FILES = ('boxes', 'flips')
VIEW_FORMAT = dict(boxes='float32 (n, V, 4) x0, y0, x1, y1 in [0, 1] of the '
                   'original image',
                   flips='uint8 (n, V), 1 = horizontal flip')
# keys the writer owns in the manifest (a user manifest must not set them)
RESERVED_KEYS = ('format', 'format_version', 'num_samples', 'num_views',
                 'fields', 'shard_size', 'num_shards', 'view_format',
                 'manifest_sha256')
_FIELD_NAME = re.compile(r'^[A-Za-z][A-Za-z0-9_]*$')
RECACHE = ('re-cache it with tools/cache_teacher.py (stores written by '
           'older kdep_mm versions are not compatible)')


def shard_file(root: str, shard: int, name: str) -> str:
    """Path of a shard's file ``name`` (e.g. ``'feat.npy'``,
    ``'done.json'``) under the store ``root``."""
    return osp.join(root, SHARD_DIR, f'{shard:05d}.{name}')


def json_bytes(obj: Any) -> bytes:
    """The canonical JSON of ``obj`` (sorted keys, indent 2, newline)."""
    return (json.dumps(obj, indent=2, sort_keys=True) + '\n').encode()


def jsonable(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists...)."""
    return json.loads(json.dumps(obj, sort_keys=True))


def npy_bytes(arr: np.ndarray) -> bytes:
    """The ``.npy`` bytes of ``arr`` (C order, no pickle)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def manifest_checksum(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON without ``manifest_sha256``.
    """
    body = {k: v for k, v in manifest.items() if k != 'manifest_sha256'}
    return hashlib.sha256(json_bytes(body)).hexdigest()


def read_manifest(root: str) -> dict:
    """The manifest of the store under ``root``, checked: readable JSON,
    ``format_version`` this code's, and ``manifest_sha256`` equal to the
    checksum of the rest (``ValueError`` otherwise)."""
    root = osp.abspath(root)
    path = osp.join(root, MANIFEST)
    try:
        with open(path, 'rb') as f:
            raw = f.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise ValueError(f'teacher store {root}: no {MANIFEST}') from None
    try:
        manifest = json.loads(raw.decode())
    except ValueError as e:
        raise ValueError(f'teacher store {root}: {MANIFEST} is not valid '
                         f'JSON ({e}); it is corrupted: {RECACHE}') from e
    if not isinstance(manifest, dict):
        raise ValueError(f'teacher store {root}: {MANIFEST} is not a JSON '
                         f'object: {RECACHE}')
    version = manifest.get('format_version')
    if version != FORMAT_VERSION:
        raise ValueError(
            f'teacher store {root}: manifest key \'format_version\' '
            f'differs: the store has {version!r}, expected '
            f'{FORMAT_VERSION!r}; {RECACHE}')
    stored = manifest.get('manifest_sha256')
    if stored != manifest_checksum(manifest):
        raise ValueError(
            f'teacher store {root}: manifest key \'manifest_sha256\' '
            f'differs from the checksum of {MANIFEST} ({stored!r}): the '
            f'manifest was edited or corrupted after it was written; '
            f'{RECACHE}')
    return manifest


def normalize_fields(fields: Dict[str, Any]) -> Dict[str, dict]:
    """``{name: (shape, dtype)}`` (or already normalised) as stored in the
    manifest: ``{name: {'shape': [...], 'dtype': 'float16'}}``.
    """
    out = {}
    for name, spec in fields.items():
        if not isinstance(name, str) or not _FIELD_NAME.match(name) \
                or name in VIEW_FILES or name in ('box', 'flip', 'done'):
            raise ValueError(f'invalid teacher store field name {name!r}: '
                             'use letters, digits and _, not boxes/flips/'
                             'box/flip/done')
        if isinstance(spec, dict):
            shape, dtype = spec['shape'], spec['dtype']
        else:
            shape, dtype = spec
        shape = [int(s) for s in shape]
        if any(s <= 0 for s in shape):
            raise ValueError(f'field {name!r}: bad shape {shape}')
        out[name] = dict(shape=shape, dtype=np.dtype(dtype).name)
    return out


def compare_manifest(stored: Any, expected: Any, key: str, root: str) -> None:
    """Raise ``ValueError`` naming ``key`` when ``stored != expected``;
    dicts are compared key by key (only the keys of ``expected``)."""
    if isinstance(expected, dict) and isinstance(stored, dict):
        for k, v in expected.items():
            sub = f'{key}.{k}' if key else str(k)
            if k not in stored:
                raise ValueError(
                    f'teacher store {root}: manifest has no key {sub!r} '
                    f'(expected {v!r})')
            compare_manifest(stored[k], v, sub, root)
        return
    if stored != expected:
        raise ValueError(
            f'teacher store {root}: manifest key {key!r} differs: the store '
            f'has {stored!r}, expected {expected!r}')


def build_manifest(teacher_fingerprint: str,
                   dataset: dict,
                   teacher_config: Any = None,
                   teacher_checkpoint: Optional[str] = None,
                   pipeline: Any = None,
                   teacher_checkpoint_sha256: Optional[str] = None,
                   decoder: Optional[dict] = None,
                   **extra) -> dict:
    """The user part of a manifest (the writer adds format, V, fields,
    checksum...).

    Args:
        teacher_fingerprint (str): ``BaseDistiller.teacher_fingerprint()``.
        dataset (dict): :func:`dataset_identity` (must hold ``length``).
        teacher_config: the teacher's model config (JSON-able, e.g.
            ``cfg.model.teacher.to_dict()``).
        teacher_checkpoint (str, optional): path of the teacher weights.
        pipeline: description of the caching pipeline (JSON-able).
        teacher_checkpoint_sha256 (str, optional): sha256 of the checkpoint
            file (:func:`kdep_mm.utils.checkpoint.checkpoint_sha256`), the
            teacher identity a training run checks without building the
            teacher.
        decoder (dict, optional): :func:`decoder_settings` of the image
            loading the teacher's crops were cut from.
    """
    return jsonable(dict(teacher_fingerprint=teacher_fingerprint,
                          dataset=dataset, teacher_config=teacher_config,
                          teacher_checkpoint=teacher_checkpoint,
                          teacher_checkpoint_sha256=teacher_checkpoint_sha256,
                          decoder=decoder, pipeline=pipeline, **extra))
