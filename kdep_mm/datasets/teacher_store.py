"""A store of teacher outputs that stays correct under random augmentation.

A cache keyed by the sample index alone hands a randomly cropped image the
teacher output of some other crop. This store keys every output by
``(sample index, view)``: a *view* is what of the augmentation matters to the
teacher, the crop box in normalised coordinates of the original image
``(x0, y0, x1, y1)`` in ``[0, 1]`` plus a horizontal flip. ``V`` views are
stored per image; ``V = 1`` with a fixed centre view is the cheap mode.
The crop itself is done by :func:`kdep_mm.datasets.transforms.stored_view.
crop_view` on both the caching and the training side.

Layout under ``root``::

    manifest.json                      format, teacher, dataset, V, fields
    shards/00000.<field>.npy           (n, V, *shape), n <= shard_size
    shards/00000.boxes.npy             float32 (n, V, 4) normalised boxes
    shards/00000.flips.npy             uint8 (n, V), 1 = horizontal flip
    shards/00000.done.json             sha256 and size of each file above

Every file is written under a temporary name, fsync'ed and renamed; the
done-marker is written last (atomically), so a shard without a marker is
unfinished and is rewritten by a resumed writer. ``.npy`` files are opened
with ``np.load(mmap_mode='r')``: reading a sample touches only its pages.

Top-k mode (see :func:`topk_fields`, :func:`encode_topk`,
:func:`decode_topk`): instead of the full logits, the ``k`` largest softmax
probabilities are stored in float16 with their exact integer class indices.
"""
import hashlib
import io
import json
import os
import os.path as osp
import re
import tempfile
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np

FORMAT_VERSION = 1
MANIFEST = 'manifest.json'
SHARD_DIR = 'shards'
VIEW_FILES = ('boxes', 'flips')
# keys the writer owns in the manifest (a user manifest must not set them)
RESERVED_KEYS = ('format', 'format_version', 'num_samples', 'num_views',
                 'fields', 'shard_size', 'num_shards', 'view_format')
_FIELD_NAME = re.compile(r'^[A-Za-z][A-Za-z0-9_]*$')
_CHUNK = 1 << 20


# ----------------------------------------------------------------- helpers
def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while True:
            block = f.read(_CHUNK)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _fsync_dir(dirname: str) -> None:
    fd = os.open(dirname, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(data: bytes, path: str) -> None:
    """Write ``data`` to a temporary file next to ``path``, fsync, rename.

    The temporary name starts with ``.<basename>.`` and ends with ``.tmp``
    (so a writer can clear the leftovers of a killed run).
    """
    dirname = osp.dirname(osp.abspath(path))
    os.makedirs(dirname, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + osp.basename(path) + '.',
                               suffix='.tmp', dir=dirname)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(dirname)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + '\n').encode()


def _jsonable(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists...)."""
    return json.loads(json.dumps(obj, sort_keys=True))


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


def _compare(stored: Any, expected: Any, key: str, root: str) -> None:
    """Raise ``ValueError`` naming ``key`` when ``stored != expected``;
    dicts are compared key by key (only the keys of ``expected``)."""
    if isinstance(expected, dict) and isinstance(stored, dict):
        for k, v in expected.items():
            sub = f'{key}.{k}' if key else str(k)
            if k not in stored:
                raise ValueError(
                    f'teacher store {root}: manifest has no key {sub!r} '
                    f'(expected {v!r})')
            _compare(stored[k], v, sub, root)
        return
    if stored != expected:
        raise ValueError(
            f'teacher store {root}: manifest key {key!r} differs: the store '
            f'has {stored!r}, expected {expected!r}')


def dataset_identity(dataset) -> dict:
    """What identifies a dataset in the manifest.

    ``class``, ``data_root``, ``ann_file``, ``length`` and, when the samples
    have an ``img_path``, ``paths_sha256``: sha256 of the sorted paths
    (relative to ``data_root`` when under it, so a moved dataset matches),
    joined by newlines.
    """
    data_root = getattr(dataset, 'data_root', None) or ''
    ident = dict(
        **{'class': type(dataset).__name__},
        data_root=str(data_root),
        ann_file=str(getattr(dataset, 'ann_file', '') or ''),
        length=len(dataset))
    get_info = getattr(dataset, 'get_data_info', None)
    if get_info is not None:
        paths = []
        for i in range(len(dataset)):
            path = get_info(i).get('img_path')
            if path is None:
                paths = None
                break
            path = str(path)
            if data_root and path.startswith(str(data_root)):
                path = osp.relpath(path, str(data_root))
            paths.append(path)
        if paths is not None:
            ident['paths_sha256'] = hashlib.sha256(
                '\n'.join(sorted(paths)).encode()).hexdigest()
    return ident


def build_manifest(teacher_fingerprint: str,
                   dataset: dict,
                   teacher_config: Any = None,
                   teacher_checkpoint: Optional[str] = None,
                   pipeline: Any = None,
                   **extra) -> dict:
    """The user part of a manifest (the writer adds format, V, fields...).

    Args:
        teacher_fingerprint (str): ``BaseDistiller.teacher_fingerprint()``.
        dataset (dict): :func:`dataset_identity` (must hold ``length``).
        teacher_config: the teacher's model config (JSON-able, e.g.
            ``cfg.model.teacher.to_dict()``).
        teacher_checkpoint (str, optional): path of the teacher weights.
        pipeline: description of the caching pipeline (JSON-able).
    """
    return _jsonable(dict(teacher_fingerprint=teacher_fingerprint,
                          dataset=dataset, teacher_config=teacher_config,
                          teacher_checkpoint=teacher_checkpoint,
                          pipeline=pipeline, **extra))


# ------------------------------------------------------------------ writer
class TeacherStoreWriter:
    """Writes a teacher store shard by shard, resumable and rank-parallel.

    Args:
        root (str): the store directory.
        manifest (dict): the user part of the manifest (see
            :func:`build_manifest`); must hold ``teacher_fingerprint`` and
            ``dataset`` with ``length == num_samples``.
        num_samples (int): dataset length.
        num_views (int): V, views stored per sample.
        fields (dict): ``{name: (shape, dtype)}`` of one sample's one view.
        shard_size (int): samples per shard. Defaults to 1024.
        rank (int), world_size (int): this writer writes the shards ``i``
            with ``i % world_size == rank``. Defaults to 0 and 1.

    A store already under ``root`` must have the same manifest (else a
    ``ValueError`` names the key). Shards with a done-marker whose files
    pass their checksums are skipped; a marked shard that fails is
    rewritten.
    """

    def __init__(self,
                 root: str,
                 manifest: dict,
                 num_samples: int,
                 num_views: int,
                 fields: Dict[str, Any],
                 shard_size: int = 1024,
                 rank: int = 0,
                 world_size: int = 1):
        if num_samples <= 0 or num_views <= 0 or shard_size <= 0:
            raise ValueError('num_samples, num_views and shard_size must be '
                             f'positive, got {num_samples}, {num_views}, '
                             f'{shard_size}')
        if not 0 <= rank < world_size:
            raise ValueError(f'rank {rank} not in [0, {world_size})')
        clash = [k for k in RESERVED_KEYS if k in manifest]
        if clash:
            raise ValueError(f'manifest keys {clash} are set by the writer')
        if 'teacher_fingerprint' not in manifest:
            raise ValueError('the manifest must hold teacher_fingerprint')
        length = (manifest.get('dataset') or {}).get('length')
        if length != num_samples:
            raise ValueError(f'manifest dataset.length={length!r} but '
                             f'num_samples={num_samples}')
        self.root = osp.abspath(root)
        self.num_samples = int(num_samples)
        self.num_views = int(num_views)
        self.shard_size = int(shard_size)
        self.rank, self.world_size = int(rank), int(world_size)
        self.fields = normalize_fields(fields)
        self.num_shards = -(-self.num_samples // self.shard_size)
        self.manifest = _jsonable(dict(
            manifest,
            format='kdep_mm.teacher_store',
            format_version=FORMAT_VERSION,
            num_samples=self.num_samples,
            num_views=self.num_views,
            fields=self.fields,
            shard_size=self.shard_size,
            num_shards=self.num_shards,
            view_format=dict(boxes='float32 (n, V, 4) x0, y0, x1, y1 in '
                             '[0, 1] of the original image',
                             flips='uint8 (n, V), 1 = horizontal flip')))
        self._write_manifest()

    # ------------------------------------------------------------ manifest
    def _write_manifest(self) -> None:
        path = osp.join(self.root, MANIFEST)
        if osp.isfile(path):
            with open(path) as f:
                existing = json.load(f)
            # a resumed (or another rank's) writer must write the same store
            _compare(existing, self.manifest, '', self.root)
            if existing != self.manifest:
                extra = sorted(set(existing) - set(self.manifest))
                raise ValueError(
                    f'teacher store {self.root}: the existing manifest has '
                    f'keys the new one lacks: {extra or "(nested)"}')
            return
        _atomic_write(_json_bytes(self.manifest), path)

    # -------------------------------------------------------------- shards
    def shard_range(self, shard: int) -> Tuple[int, int]:
        """``(start, stop)`` sample indices of ``shard``."""
        start = shard * self.shard_size
        return start, min(start + self.shard_size, self.num_samples)

    def my_shards(self) -> List[int]:
        """The shards of this rank."""
        return list(range(self.rank, self.num_shards, self.world_size))

    def _path(self, shard: int, name: str) -> str:
        return osp.join(self.root, SHARD_DIR, f'{shard:05d}.{name}')

    def done_path(self, shard: int) -> str:
        return self._path(shard, 'done.json')

    def is_done(self, shard: int) -> bool:
        """The shard has a done-marker and its files pass the checksums."""
        marker = self.done_path(shard)
        if not osp.isfile(marker):
            return False
        try:
            verify_shard(self.root, shard)
        except (ValueError, OSError):
            os.remove(marker)  # rewrite it
            return False
        return True

    def pending_shards(self) -> List[int]:
        """This rank's shards still to write."""
        return [s for s in self.my_shards() if not self.is_done(s)]

    def _clear_tmp(self, shard: int) -> None:
        dirname = osp.join(self.root, SHARD_DIR)
        if not osp.isdir(dirname):
            return
        prefix = f'.{shard:05d}.'
        for name in os.listdir(dirname):
            if name.startswith(prefix) and name.endswith('.tmp'):
                os.remove(osp.join(dirname, name))

    def write_shard(self, shard: int, outputs: Dict[str, np.ndarray],
                    boxes: np.ndarray, flips: np.ndarray) -> None:
        """Write ``shard``: ``outputs[name]`` is ``(n, V, *shape)`` for the
        shard's ``n`` samples, ``boxes`` ``(n, V, 4)``, ``flips`` ``(n, V)``.
        """
        if shard not in self.my_shards():
            raise ValueError(f'shard {shard} is not one of rank {self.rank}/'
                             f'{self.world_size} (of {self.num_shards})')
        start, stop = self.shard_range(shard)
        n, V = stop - start, self.num_views
        if set(outputs) != set(self.fields):
            raise ValueError(f'shard {shard}: fields {sorted(outputs)} != '
                             f'{sorted(self.fields)}')
        arrays = {}
        for name, spec in self.fields.items():
            arr = np.asarray(outputs[name])
            want = (n, V, *spec['shape'])
            if arr.shape != want:
                raise ValueError(f'shard {shard}: field {name!r} has shape '
                                 f'{arr.shape}, expected {want}')
            arrays[name] = arr.astype(spec['dtype'], casting='same_kind',
                                      copy=False)
        boxes = np.asarray(boxes, dtype=np.float32)
        flips = np.asarray(flips)
        if boxes.shape != (n, V, 4) or flips.shape != (n, V):
            raise ValueError(f'shard {shard}: boxes {boxes.shape} / flips '
                             f'{flips.shape}, expected {(n, V, 4)} / '
                             f'{(n, V)}')
        if not (np.all(boxes >= 0) and np.all(boxes <= 1)
                and np.all(boxes[..., 2] > boxes[..., 0])
                and np.all(boxes[..., 3] > boxes[..., 1])):
            raise ValueError(f'shard {shard}: boxes must be x0 < x1, y0 < y1 '
                             'in [0, 1]')
        if not np.all((flips == 0) | (flips == 1)):
            raise ValueError(f'shard {shard}: flips must be 0 or 1')
        arrays['boxes'] = boxes
        arrays['flips'] = flips.astype(np.uint8)

        marker = self.done_path(shard)
        if osp.exists(marker):
            os.remove(marker)
        self._clear_tmp(shard)
        files = {}
        for name in sorted(arrays):
            data = _npy_bytes(arrays[name])
            path = self._path(shard, name + '.npy')
            _atomic_write(data, path)
            files[name] = dict(file=osp.basename(path), bytes=len(data),
                               sha256=hashlib.sha256(data).hexdigest())
        _atomic_write(
            _json_bytes(dict(shard=shard, start=start, stop=stop,
                             files=files)), marker)

    def write_all(self, compute: Callable[[int, int], Tuple[
            Dict[str, np.ndarray], np.ndarray, np.ndarray]]) -> List[int]:
        """Write every pending shard of this rank; ``compute(start, stop)``
        returns ``(outputs, boxes, flips)`` of samples ``start:stop``.
        Returns the shards written."""
        written = []
        for shard in self.pending_shards():
            outputs, boxes, flips = compute(*self.shard_range(shard))
            self.write_shard(shard, outputs, boxes, flips)
            written.append(shard)
        return written


# ------------------------------------------------------------------ reader
def verify_shard(root: str, shard: int, fields: Iterable[str] = None) -> dict:
    """Check ``shard``'s done-marker and files (existence, size, sha256).

    Returns the marker; raises ``ValueError`` naming the file otherwise.
    """
    marker = osp.join(root, SHARD_DIR, f'{shard:05d}.done.json')
    if not osp.isfile(marker):
        raise ValueError(
            f'teacher store {root}: shard {shard} is missing or unfinished '
            f'(no done-marker {marker}); rerun the writer to complete it')
    with open(marker) as f:
        info = json.load(f)
    files = info.get('files', {})
    names = list(VIEW_FILES) + list(fields or [])
    for name in names:
        if name not in files:
            raise ValueError(f'teacher store {root}: shard marker {marker} '
                             f'lists no file for {name!r}')
    for name, meta in files.items():
        path = osp.join(root, SHARD_DIR, meta['file'])
        if not osp.isfile(path):
            raise ValueError(f'teacher store {root}: shard file {path} is '
                             'missing')
        size = osp.getsize(path)
        if size != meta['bytes']:
            raise ValueError(f'teacher store {root}: shard file {path} has '
                             f'{size} bytes, its marker says {meta["bytes"]}')
        if _sha256_file(path) != meta['sha256']:
            raise ValueError(f'teacher store {root}: shard file {path} is '
                             'corrupted (sha256 differs from its marker)')
    return info


class TeacherStore:
    """Reads a teacher store written by :class:`TeacherStoreWriter`.

    Args:
        root (str): the store directory.
        expected (dict): manifest values this store must have, compared key
            by key (nested dicts too, only the keys given), e.g.
            ``dict(teacher_fingerprint=fp, dataset=dict(length=50000),
            num_views=8, fields={'logits': ((1000,), 'float16')})``. A
            difference raises ``ValueError`` naming the key and both values.
            ``fields`` may be given as ``{name: (shape, dtype)}``.
        verify (bool): check every shard's sha256 at open (reads the whole
            store once, in 1 MiB chunks). With False only the markers and
            file sizes are checked. Defaults to True.

    ``get(index, view)`` opens the shard files with ``np.load(mmap_mode='r')``
    on first use (lazily, so a store built in the main process and copied to
    DataLoader workers maps the files in each worker) and copies out one
    sample's view.
    """

    def __init__(self, root: str, expected: Optional[dict] = None,
                 verify: bool = True):
        self.root = osp.abspath(root)
        path = osp.join(self.root, MANIFEST)
        if not osp.isfile(path):
            raise ValueError(f'teacher store {self.root}: no {MANIFEST}')
        with open(path) as f:
            self.manifest = json.load(f)
        if self.manifest.get('format_version') != FORMAT_VERSION:
            raise ValueError(
                f'teacher store {self.root}: manifest key \'format_version\' '
                f'differs: the store has '
                f'{self.manifest.get("format_version")!r}, expected '
                f'{FORMAT_VERSION!r}')
        expected = dict(expected or {})
        if 'fields' in expected:
            expected['fields'] = normalize_fields(expected['fields'])
        _compare(self.manifest, _jsonable(expected), '', self.root)
        self.num_samples = self.manifest['num_samples']
        self.num_views = self.manifest['num_views']
        self.shard_size = self.manifest['shard_size']
        self.num_shards = self.manifest['num_shards']
        self.fields = self.manifest['fields']
        for shard in range(self.num_shards):
            if verify:
                verify_shard(self.root, shard, self.fields)
            else:
                self._check_sizes(shard)
        self._maps: Dict[int, Dict[str, np.ndarray]] = {}

    def _check_sizes(self, shard: int) -> None:
        marker = osp.join(self.root, SHARD_DIR, f'{shard:05d}.done.json')
        if not osp.isfile(marker):
            verify_shard(self.root, shard)  # raises the missing-shard error
        with open(marker) as f:
            files = json.load(f)['files']
        for meta in files.values():
            p = osp.join(self.root, SHARD_DIR, meta['file'])
            if not osp.isfile(p) or osp.getsize(p) != meta['bytes']:
                raise ValueError(f'teacher store {self.root}: shard file {p} '
                                 'is missing or has the wrong size')

    def __len__(self) -> int:
        return self.num_samples

    def __getstate__(self):
        state = self.__dict__.copy()
        state['_maps'] = {}  # each process maps the files itself
        return state

    def shard_arrays(self, shard: int) -> Dict[str, np.ndarray]:
        """The memory maps (``np.memmap``) of ``shard``'s files."""
        maps = self._maps.get(shard)
        if maps is None:
            maps = {}
            for name in list(self.fields) + list(VIEW_FILES):
                path = osp.join(self.root, SHARD_DIR,
                                f'{shard:05d}.{name}.npy')
                arr = np.load(path, mmap_mode='r', allow_pickle=False)
                n = min(self.shard_size,
                        self.num_samples - shard * self.shard_size)
                if arr.shape[:2] != (n, self.num_views):
                    raise ValueError(
                        f'teacher store {self.root}: shard file {path} has '
                        f'shape {arr.shape}, expected ({n}, '
                        f'{self.num_views}, ...)')
                maps[name] = arr
            self._maps[shard] = maps
        return maps

    def _locate(self, index: int) -> Tuple[Dict[str, np.ndarray], int]:
        if index < 0:
            index += self.num_samples
        if not 0 <= index < self.num_samples:
            raise IndexError(f'sample {index} out of range '
                             f'[0, {self.num_samples})')
        return self.shard_arrays(index // self.shard_size), \
            index % self.shard_size

    def views(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """``(boxes (V, 4) float32, flips (V,) bool)`` of sample ``index``.
        """
        maps, i = self._locate(index)
        return np.array(maps['boxes'][i]), np.array(maps['flips'][i]) > 0

    def get(self, index: int, view: int) -> Dict[str, np.ndarray]:
        """``{field: array, 'box': (4,) float32, 'flip': bool}`` of sample
        ``index``'s view ``view`` (copies, the maps stay untouched)."""
        if not 0 <= view < self.num_views:
            raise IndexError(f'view {view} out of range [0, '
                             f'{self.num_views})')
        maps, i = self._locate(index)
        out = {name: np.array(maps[name][i, view]) for name in self.fields}
        out['box'] = np.array(maps['boxes'][i, view])
        out['flip'] = bool(maps['flips'][i, view])
        return out


# ------------------------------------------------------------------- top-k
def topk_fields(name: str, k: int, index_dtype: str = 'int32') -> dict:
    """Field specs of top-k mode: ``<name>_topk_prob`` float16 ``(k,)`` and
    ``<name>_topk_idx`` ``index_dtype`` (int32 or int64) ``(k,)``."""
    if np.dtype(index_dtype) not in (np.dtype('int32'), np.dtype('int64')):
        raise ValueError(f'index_dtype must be int32 or int64, got '
                         f'{index_dtype}')
    return {f'{name}_topk_prob': ((k,), 'float16'),
            f'{name}_topk_idx': ((k,), np.dtype(index_dtype).name)}


def encode_topk(logits: np.ndarray, k: int, temperature: float = 1.0,
                index_dtype: str = 'int32') -> Tuple[np.ndarray, np.ndarray]:
    """Top-k of ``softmax(logits / temperature)`` over the last axis.

    Returns ``(probs float16 (..., k), indices (..., k))``, sorted by
    decreasing probability (ties: lower class index first). The softmax is
    taken over all classes in float64 before the top-k, so the stored
    probabilities are the teacher's own (rounded to float16: relative error
    <= 2**-11 for normal values, absolute error <= 2**-25 below 2**-14);
    the indices are exact.
    """
    logits = np.asarray(logits, dtype=np.float64) / float(temperature)
    num_classes = logits.shape[-1]
    if not 0 < k <= num_classes:
        raise ValueError(f'k={k} not in [1, {num_classes}]')
    if num_classes > np.iinfo(index_dtype).max:
        raise ValueError(f'{num_classes} classes do not fit {index_dtype}')
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    # stable sort on -p: equal probabilities keep the lower index first
    idx = np.argsort(-p, axis=-1, kind='stable')[..., :k]
    probs = np.take_along_axis(p, idx, axis=-1)
    return probs.astype(np.float16), idx.astype(index_dtype)


def decode_topk(probs: np.ndarray, indices: np.ndarray, num_classes: int,
                rest: str = 'uniform') -> np.ndarray:
    """A dense float32 soft target ``(..., num_classes)`` from top-k.

    Args:
        rest (str): what the classes outside the top-k get.

            * ``'uniform'`` (default): the missing mass ``1 - sum(top-k)``
              (clipped at 0) spread evenly over the ``num_classes - k``
              other classes, so the target sums to 1 (up to float16
              rounding of the stored probabilities).
            * ``'zero'``: 0; the top-k keep their stored values (the target
              sums to less than 1).
            * ``'renorm'``: 0, and the top-k are rescaled to sum to 1.
    """
    probs = np.asarray(probs, dtype=np.float32)
    indices = np.asarray(indices).astype(np.int64)
    if probs.shape != indices.shape:
        raise ValueError(f'probs {probs.shape} vs indices {indices.shape}')
    k = probs.shape[-1]
    if indices.size and (indices.min() < 0 or indices.max() >= num_classes):
        raise ValueError(f'top-k indices outside [0, {num_classes})')
    dense = np.zeros(probs.shape[:-1] + (num_classes,), dtype=np.float32)
    if rest == 'uniform':
        if num_classes > k:
            missing = np.clip(1.0 - probs.sum(-1, keepdims=True), 0, None)
            dense += missing / (num_classes - k)
    elif rest == 'renorm':
        probs = probs / np.clip(probs.sum(-1, keepdims=True), 1e-12, None)
    elif rest != 'zero':
        raise ValueError(f"rest must be 'uniform', 'zero' or 'renorm', got "
                         f'{rest!r}')
    np.put_along_axis(dense, indices, probs, axis=-1)
    return dense
