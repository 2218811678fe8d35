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

Every file is written under a temporary name, fsync'ed and renamed; the
done-marker is written last (atomically), so a shard without a marker is
unfinished and is rewritten by a resumed writer. The manifest is created
exclusively (a hard link of a complete temporary file, which fails if a
manifest exists), so of two writers that both found no manifest one creates
it and the other compares its own with it (and is refused if they differ).

Verification (:class:`TeacherStore`, ``verify=True``, the default) hashes a
shard's files once and records a ``verified`` marker bound to each file's
size, mtime, ctime and sha256; a later open stats the files and re-hashes
only a shard whose files (or done-marker) changed. A sample is read with
``os.pread`` of its bytes (the ``.npy`` header parsed once per file); bulk
readers map whole shards with ``np.load(mmap_mode='r')``. At most
``max_open_files`` file descriptors (cached descriptors and maps together)
are kept open per process, least recently used first out.

Top-k mode (see :func:`topk_fields`, :func:`encode_topk`,
:func:`decode_topk`): instead of the full logits, the ``k`` largest softmax
probabilities are stored in float16 with their exact integer class indices.
"""
import hashlib
import io
import json
import logging
import os
import os.path as osp
import re
import tempfile
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np

from kdep_mm.utils.checkpoint import atomic_write_bytes

# 2: dataset identity in index order (paths_sha256) with the sorted paths
#    beside it, manifest checksum, decoder settings, teacher checkpoint
#    sha256, done-markers bound to the manifest
FORMAT_VERSION = 2
MANIFEST = 'manifest.json'
SHARD_DIR = 'shards'
VIEW_FILES = ('boxes', 'flips')
# keys the writer owns in the manifest (a user manifest must not set them)
RESERVED_KEYS = ('format', 'format_version', 'num_samples', 'num_views',
                 'fields', 'shard_size', 'num_shards', 'view_format',
                 'manifest_sha256')
_FIELD_NAME = re.compile(r'^[A-Za-z][A-Za-z0-9_]*$')
_CHUNK = 1 << 20
# memory maps (= open file descriptors) a TeacherStore keeps per process
DEFAULT_MAX_OPEN_FILES = 128
VERIFY_MODES = {True: 'cached', 'cached': 'cached', 'full': 'full',
                False: 'sizes'}
# the LoadImageFromFile settings that change the decoded pixels
DECODER_KEYS = ('imdecode_backend', 'color_type', 'to_float32')
RECACHE = ('re-cache it with tools/cache_teacher.py (stores written by '
           'older kdep_mm versions are not compatible)')


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
    """:func:`kdep_mm.utils.checkpoint.atomic_write_bytes`: a temporary
    ``.<basename>.*.tmp`` next to ``path`` (so a writer can clear the
    leftovers of a killed run), fsync, rename, fsync of the folder."""
    atomic_write_bytes(data, path)


def _create_exclusive(data: bytes, path: str) -> bool:
    """Create ``path`` with ``data`` unless it exists; True if created.

    The bytes go to a fsync'ed temporary file that is then hard-linked to
    ``path`` (atomic, and refused by the file system if ``path`` exists), so
    a reader never sees a partial file and of two concurrent creators
    exactly one wins. File systems without hard links fall back to
    ``O_CREAT | O_EXCL``.
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
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # no hard links here
            try:
                out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                              0o644)
            except FileExistsError:
                return False
            with os.fdopen(out, 'wb') as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        _fsync_dir(dirname)
        return True
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def _file_state(path: str) -> dict:
    """What a verified marker binds a file to: size, mtime and ctime (ns).
    Rewriting a file changes its mtime and ctime; ctime cannot be set back
    from user space."""
    st = os.stat(path)
    return dict(bytes=int(st.st_size), mtime_ns=int(st.st_mtime_ns),
                ctime_ns=int(st.st_ctime_ns))


def manifest_checksum(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON without ``manifest_sha256``.
    """
    body = {k: v for k, v in manifest.items() if k != 'manifest_sha256'}
    return hashlib.sha256(_json_bytes(body)).hexdigest()


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
    from mmcv.transforms import LoadImageFromFile
    if not isinstance(transform, LoadImageFromFile):
        return None
    return _jsonable(dict(type='LoadImageFromFile',
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
    return _jsonable(dict(teacher_fingerprint=teacher_fingerprint,
                          dataset=dataset, teacher_config=teacher_config,
                          teacher_checkpoint=teacher_checkpoint,
                          teacher_checkpoint_sha256=teacher_checkpoint_sha256,
                          decoder=decoder, pipeline=pipeline, **extra))


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

    The manifest (with its ``manifest_sha256``) is created exclusively; a
    store already under ``root`` (or a manifest another rank created first)
    must have the same manifest, else a ``ValueError`` names the first key
    that differs. Shards with a done-marker whose files pass their checksums
    (checked as :class:`TeacherStore` does, re-hashing only files changed
    since their last verification) are skipped; a marked shard that fails is
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
        self.manifest['manifest_sha256'] = manifest_checksum(self.manifest)
        self._write_manifest()

    # ------------------------------------------------------------ manifest
    def _write_manifest(self) -> None:
        path = osp.join(self.root, MANIFEST)
        if _create_exclusive(_json_bytes(self.manifest), path):
            return
        # a resumed writer (or another rank, which created it first) must
        # write the same store
        existing = read_manifest(self.root)
        body = {k: v for k, v in self.manifest.items()
                if k != 'manifest_sha256'}
        _compare(existing, body, '', self.root)
        if existing != self.manifest:
            extra = sorted(set(existing) - set(self.manifest))
            raise ValueError(
                f'teacher store {self.root}: the existing manifest has '
                f'keys the new one lacks: {extra or "(nested)"}')

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
        """The shard has a done-marker (of this manifest) and its files pass
        the checksums."""
        marker = self.done_path(shard)
        if not osp.isfile(marker):
            return False
        try:
            check_shard(self.root, shard, self.fields,
                        self.manifest['manifest_sha256'], 'cached')
        except (ValueError, OSError):
            os.remove(marker)  # rewrite it
            _remove_verified(self.root, shard)
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
        _remove_verified(self.root, shard)
        self._clear_tmp(shard)
        files = {}
        for name in sorted(arrays):
            data = _npy_bytes(arrays[name])
            path = self._path(shard, name + '.npy')
            _atomic_write(data, path)
            files[name] = dict(file=osp.basename(path), bytes=len(data),
                               sha256=hashlib.sha256(data).hexdigest())
        _atomic_write(
            _json_bytes(dict(
                shard=shard, start=start, stop=stop, files=files,
                manifest_sha256=self.manifest['manifest_sha256'])), marker)

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
_log = logging.getLogger(__name__)
_unwritable_warned = set()


def _shard_file(root: str, shard: int, name: str) -> str:
    return osp.join(root, SHARD_DIR, f'{shard:05d}.{name}')


def _remove_verified(root: str, shard: int) -> None:
    path = _shard_file(root, shard, 'verified.json')
    if osp.exists(path):
        os.remove(path)


def _read_verified(path: str) -> Optional[dict]:
    """A verified marker, or None if absent or unreadable (it is a cache:
    a bad one only costs a re-verification)."""
    try:
        with open(path) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _write_verified(root: str, shard: int, info: dict) -> None:
    """Write a verified marker atomically (temporary file + rename; not
    fsync'ed: a marker lost in a crash costs one re-verification). A store
    the process cannot write is verified at every open (warned once)."""
    path = _shard_file(root, shard, 'verified.json')
    try:
        fd, tmp = tempfile.mkstemp(prefix=f'.{shard:05d}.verified.json.',
                                   suffix='.tmp', dir=osp.dirname(path))
        try:
            with os.fdopen(fd, 'wb') as f:
                f.write(_json_bytes(info))
            os.replace(tmp, path)
        finally:
            if osp.exists(tmp):
                os.remove(tmp)
    except OSError as e:
        if root not in _unwritable_warned:
            _unwritable_warned.add(root)
            _log.warning(
                'teacher store %s: cannot record verified shards (%s); '
                'every open re-hashes the whole store', root, e)


def check_shard(root: str, shard: int, fields: Iterable[str] = None,
                manifest_sha256: Optional[str] = None,
                mode: str = 'cached') -> dict:
    """Check one shard; returns its done-marker, raises ``ValueError``
    naming the file otherwise.

    Always: the done-marker exists, lists a file for the views and every
    field in ``fields``, belongs to the manifest ``manifest_sha256`` (if
    given), and every file it lists exists with the marker's size. Then, by
    ``mode``:

    * ``'sizes'``: nothing more;
    * ``'full'``: the sha256 of every file equals the marker's, and a
      verified marker is written (``NNNNN.verified.json``: each file's
      sha256, size, mtime and ctime, the done-marker's sha256);
    * ``'cached'``: as ``'full'``, unless the verified marker matches the
      done-marker and every file's current size, mtime, ctime and sha256;
      then nothing is hashed.
    """
    root = osp.abspath(root)
    marker = _shard_file(root, shard, 'done.json')
    if not osp.isfile(marker):
        raise ValueError(
            f'teacher store {root}: shard {shard} is missing or unfinished '
            f'(no done-marker {marker}); rerun the writer to complete it')
    with open(marker, 'rb') as f:
        raw = f.read()
    try:
        info = json.loads(raw.decode())
    except ValueError as e:
        raise ValueError(f'teacher store {root}: shard marker {marker} is '
                         f'not valid JSON ({e})') from e
    files = info.get('files', {})
    for name in list(VIEW_FILES) + list(fields or []):
        if name not in files:
            raise ValueError(f'teacher store {root}: shard marker {marker} '
                             f'lists no file for {name!r}')
    if manifest_sha256 is not None and \
            info.get('manifest_sha256') != manifest_sha256:
        raise ValueError(
            f'teacher store {root}: shard marker {marker} belongs to another '
            f'manifest (manifest_sha256 {info.get("manifest_sha256")!r}, the '
            f'store\'s is {manifest_sha256!r}): the shard was written for '
            f'another store; rerun the writer to rewrite it')
    states = {}
    for name, meta in files.items():
        path = osp.join(root, SHARD_DIR, meta['file'])
        if not osp.isfile(path):
            raise ValueError(f'teacher store {root}: shard file {path} is '
                             'missing')
        states[name] = _file_state(path)
        if states[name]['bytes'] != meta['bytes']:
            raise ValueError(
                f'teacher store {root}: shard file {path} has '
                f'{states[name]["bytes"]} bytes, its marker says '
                f'{meta["bytes"]}')
    if mode == 'sizes':
        return info
    if mode not in ('cached', 'full'):
        raise ValueError(f"mode must be 'sizes', 'cached' or 'full', got "
                         f'{mode!r}')
    done_sha = hashlib.sha256(raw).hexdigest()
    record = dict(shard=shard, done_sha256=done_sha,
                  files={name: dict(states[name], sha256=meta['sha256'])
                         for name, meta in files.items()})
    if mode == 'cached':
        cached = _read_verified(_shard_file(root, shard, 'verified.json'))
        if cached == record:
            return info
    for name, meta in files.items():
        path = osp.join(root, SHARD_DIR, meta['file'])
        if _sha256_file(path) != meta['sha256']:
            raise ValueError(f'teacher store {root}: shard file {path} is '
                             'corrupted (sha256 differs from its marker)')
    _write_verified(root, shard, record)
    return info


def verify_shard(root: str, shard: int, fields: Iterable[str] = None,
                 manifest_sha256: Optional[str] = None) -> dict:
    """Check ``shard``'s done-marker and files (existence, size, sha256 of
    every file, re-hashed now); :func:`check_shard` with ``mode='full'``.

    Returns the marker; raises ``ValueError`` naming the file otherwise.
    """
    return check_shard(root, shard, fields, manifest_sha256, 'full')


class TeacherStore:
    """Reads a teacher store written by :class:`TeacherStoreWriter`.

    Checked at open (``ValueError`` naming the file or the manifest key):

    * the manifest: valid JSON, ``format_version`` this code's (stores of
      older versions: re-cache), ``manifest_sha256`` its checksum;
    * ``expected``: manifest values compared key by key;
    * every shard (:func:`check_shard`): done-marker present and of this
      manifest, every file present with the marker's size and, with
      ``verify`` (the default), its sha256. A shard is hashed once; its
      ``verified`` marker (size, mtime, ctime and sha256 of each file) lets
      later opens skip the hashing, and any change of a file or of its
      done-marker makes the next open hash that shard again.

    Args:
        root (str): the store directory.
        expected (dict): manifest values this store must have, compared key
            by key (nested dicts too, only the keys given), e.g.
            ``dict(teacher_fingerprint=fp, dataset=dict(length=50000),
            num_views=8, fields={'logits': ((1000,), 'float16')})``. A
            difference raises ``ValueError`` naming the key and both values.
            ``fields`` may be given as ``{name: (shape, dtype)}``.
        verify (bool | str): ``True`` (default, ``'cached'``): sha256 of
            every shard not verified since its files last changed;
            ``'full'``: re-hash every shard (e.g. to catch bit rot below the
            file system, which changes no mtime); ``False``: done-markers
            and file sizes only (no shipped config or hook uses it).
        max_open_files (int): file descriptors kept open per process:
            half for whole-shard maps (``shard_arrays``; a shard holds one
            per field plus 2 for the views), the rest for the descriptors
            of per-sample reads; the least recently used are closed beyond
            the limit. Defaults to 128.

    ``get(index, view)`` reads one sample's view with ``os.pread`` (the
    files are opened lazily, so a store built in the main process and
    copied to DataLoader workers opens the files in each worker; a pickled
    store carries no descriptor and no map).
    """

    def __init__(self, root: str, expected: Optional[dict] = None,
                 verify=True, max_open_files: int = DEFAULT_MAX_OPEN_FILES):
        self.root = osp.abspath(root)
        if verify not in VERIFY_MODES:
            raise ValueError(f"verify must be True, 'full' or False, got "
                             f'{verify!r}')
        self.manifest = read_manifest(self.root)
        expected = dict(expected or {})
        if 'fields' in expected:
            expected['fields'] = normalize_fields(expected['fields'])
        _compare(self.manifest, _jsonable(expected), '', self.root)
        self.num_samples = self.manifest['num_samples']
        self.num_views = self.manifest['num_views']
        self.shard_size = self.manifest['shard_size']
        self.num_shards = self.manifest['num_shards']
        self.fields = self.manifest['fields']
        self.verify = VERIFY_MODES[verify]
        for shard in range(self.num_shards):
            check_shard(self.root, shard, self.fields,
                        self.manifest['manifest_sha256'], self.verify)
        if int(max_open_files) < 1:
            raise ValueError(f'max_open_files must be >= 1, got '
                             f'{max_open_files}')
        self.max_open_files = int(max_open_files)
        per_shard = len(self.fields) + len(VIEW_FILES)
        # half of the budget for whole-shard maps (bulk reads through
        # shard_arrays), the rest for the descriptors of per-sample reads
        self.max_open_shards = max(1, (self.max_open_files // 2) // per_shard)
        self.max_open_fds = max(
            1, self.max_open_files - self.max_open_shards * per_shard)
        self._maps: 'OrderedDict[int, Dict[str, np.ndarray]]' = OrderedDict()
        self._fds: 'OrderedDict[str, int]' = OrderedDict()
        # (shard, name) -> (data offset, dtype, shape) of the .npy file
        self._layout: Dict[Tuple[int, str], tuple] = {}

    def __len__(self) -> int:
        return self.num_samples

    def __getstate__(self):
        state = self.__dict__.copy()
        # each process maps and opens the files itself
        state['_maps'] = OrderedDict()
        state['_fds'] = OrderedDict()
        return state

    def close(self) -> None:
        """Close the descriptors of per-sample reads and drop the maps."""
        fds, self._fds = self._fds, OrderedDict()
        for fd in fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._maps = OrderedDict()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def _expected_rows(self, shard: int) -> int:
        return min(self.shard_size, self.num_samples - shard * self.shard_size)

    def _check_shape(self, path: str, shard: int, shape) -> None:
        n = self._expected_rows(shard)
        if tuple(shape[:2]) != (n, self.num_views):
            raise ValueError(
                f'teacher store {self.root}: shard file {path} has shape '
                f'{tuple(shape)}, expected ({n}, {self.num_views}, ...)')

    def shard_arrays(self, shard: int) -> Dict[str, np.ndarray]:
        """The memory maps (``np.memmap``) of ``shard``'s files, for bulk
        reads (e.g. the TCS fit streams the store shard by shard).

        At most ``max_open_shards`` shards stay mapped; mapping another one
        drops the least recently used (its file descriptors close once no
        caller holds its arrays)."""
        maps = self._maps.get(shard)
        if maps is not None:
            self._maps.move_to_end(shard)
            return maps
        maps = {}
        for name in list(self.fields) + list(VIEW_FILES):
            path = _shard_file(self.root, shard, name + '.npy')
            arr = np.load(path, mmap_mode='r', allow_pickle=False)
            self._check_shape(path, shard, arr.shape)
            maps[name] = arr
        while len(self._maps) >= self.max_open_shards:
            self._maps.popitem(last=False)
        self._maps[shard] = maps
        return maps

    # ---------------------------------------------------- per-sample reads
    def _file_layout(self, shard: int, name: str) -> tuple:
        """``(path, data offset, dtype, shape)`` of a shard's ``.npy`` file,
        from its header (read once per file and process)."""
        key = (shard, name)
        layout = self._layout.get(key)
        if layout is None:
            path = _shard_file(self.root, shard, name + '.npy')
            fmt = np.lib.format
            with open(path, 'rb') as f:
                version = fmt.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = fmt.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = fmt.read_array_header_2_0(f)
                else:
                    fortran = True  # unknown header: map it below
                offset = f.tell()
            if fortran or dtype.hasobject:
                arr = np.load(path, mmap_mode='r', allow_pickle=False)
                if not arr.flags.c_contiguous:
                    raise ValueError(f'teacher store {self.root}: shard file '
                                     f'{path} is not C-ordered')
                offset, dtype, shape = arr.offset, arr.dtype, arr.shape
                del arr
            self._check_shape(path, shard, shape)
            layout = (path, int(offset), np.dtype(dtype), tuple(shape))
            self._layout[key] = layout
        return layout

    def _fd(self, path: str) -> int:
        fd = self._fds.get(path)
        if fd is not None:
            self._fds.move_to_end(path)
            return fd
        while len(self._fds) >= self.max_open_fds:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        fd = os.open(path, os.O_RDONLY)
        self._fds[path] = fd
        return fd

    def _read(self, shard: int, name: str, i: int,
              view: Optional[int] = None) -> np.ndarray:
        """Row ``i`` (all views, or one ``view``) of a shard file, read with
        ``os.pread`` (no map, one cached descriptor per file)."""
        path, offset, dtype, shape = self._file_layout(shard, name)
        # ``first``: index of the row, in rows of ``row``'s size
        if view is None:
            row, first = shape[1:], i
        else:
            row, first = shape[2:], i * shape[1] + view
        count = int(np.prod(row, dtype=np.int64))
        nbytes = count * dtype.itemsize
        data = os.pread(self._fd(path), nbytes,
                        offset + first * count * dtype.itemsize)
        if len(data) != nbytes:
            raise ValueError(f'teacher store {self.root}: shard file {path} '
                             'is truncated')
        return np.frombuffer(data, dtype=dtype).reshape(row).copy()

    def _split(self, index: int) -> Tuple[int, int]:
        if index < 0:
            index += self.num_samples
        if not 0 <= index < self.num_samples:
            raise IndexError(f'sample {index} out of range '
                             f'[0, {self.num_samples})')
        return index // self.shard_size, index % self.shard_size

    def views(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """``(boxes (V, 4) float32, flips (V,) bool)`` of sample ``index``.
        """
        shard, i = self._split(index)
        maps = self._maps.get(shard)
        if maps is not None:
            return np.array(maps['boxes'][i]), np.array(maps['flips'][i]) > 0
        return self._read(shard, 'boxes', i), self._read(shard, 'flips',
                                                         i) > 0

    def get(self, index: int, view: int) -> Dict[str, np.ndarray]:
        """``{field: array, 'box': (4,) float32, 'flip': bool}`` of sample
        ``index``'s view ``view`` (copies). Read with ``os.pread`` through
        at most ``max_open_fds`` cached descriptors (or from the maps of a
        shard that ``shard_arrays`` mapped)."""
        if not 0 <= view < self.num_views:
            raise IndexError(f'view {view} out of range [0, '
                             f'{self.num_views})')
        shard, i = self._split(index)
        maps = self._maps.get(shard)
        if maps is not None:
            out = {name: np.array(maps[name][i, view])
                   for name in self.fields}
            out['box'] = np.array(maps['boxes'][i, view])
            out['flip'] = bool(maps['flips'][i, view])
            return out
        out = {name: self._read(shard, name, i, view) for name in self.fields}
        out['box'] = self._read(shard, 'boxes', i, view)
        out['flip'] = bool(self._read(shard, 'flips', i, view))
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
