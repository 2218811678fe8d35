"""Write a teacher store shard by shard: resumable, rank-parallel, atomic.

Every file is written under a temporary name, fsync'ed and renamed; the
done-marker is written last (atomically), so a shard without a marker is
unfinished and is rewritten by a resumed writer. The manifest is created
exclusively (a hard link of a complete temporary file, which fails if a
manifest exists), so of two writers that both found no manifest one creates
it and the other compares its own with it (and is refused if they differ).
"""
import hashlib
import os
import os.path as osp
import tempfile
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from kdep_mm.utils.checkpoint import atomic_write_bytes, fsync_path
from .format import (FORMAT, FORMAT_VERSION, MANIFEST, RESERVED_KEYS,
                     SHARD_DIR, VIEW_FORMAT, compare_manifest, json_bytes,
                     jsonable, manifest_checksum, normalize_fields, npy_bytes,
                     read_manifest, shard_file)
from .shards import check_shard, remove_verified


def _create_exclusive(data: bytes, path: str) -> bool:
    """Create ``path`` with ``data`` unless it exists; True if created.

    The bytes are staged under a fresh temporary name next to ``path`` by
    :func:`~kdep_mm.utils.checkpoint.atomic_write_bytes` (fsync'ed), then
    hard-linked to ``path`` (atomic, and refused by the file system if
    ``path`` exists), so a reader never sees a partial file and of two
    concurrent creators exactly one wins. File systems without hard links
    fall back to ``O_CREAT | O_EXCL``.
    """
    dirname = osp.dirname(osp.abspath(path))
    os.makedirs(dirname, exist_ok=True)
    fd, staged = tempfile.mkstemp(prefix='.' + osp.basename(path) + '.',
                                  suffix='.tmp', dir=dirname)
    os.close(fd)
    try:
        atomic_write_bytes(data, staged)
        try:
            os.link(staged, path)
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
        fsync_path(dirname)
        return True
    finally:
        if osp.exists(staged):
            os.remove(staged)


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
        self.manifest = jsonable(dict(
            manifest,
            format=FORMAT,
            format_version=FORMAT_VERSION,
            num_samples=self.num_samples,
            num_views=self.num_views,
            fields=self.fields,
            shard_size=self.shard_size,
            num_shards=self.num_shards,
            view_format=VIEW_FORMAT))
        self.manifest['manifest_sha256'] = manifest_checksum(self.manifest)
        self._write_manifest()

    # ------------------------------------------------------------ manifest
    def _write_manifest(self) -> None:
        path = osp.join(self.root, MANIFEST)
        if _create_exclusive(json_bytes(self.manifest), path):
            return
        # a resumed writer (or another rank, which created it first) must
        # write the same store
        existing = read_manifest(self.root)
        body = {k: v for k, v in self.manifest.items()
                if k != 'manifest_sha256'}
        compare_manifest(existing, body, '', self.root)
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

    def done_path(self, shard: int) -> str:
        """The done-marker of ``shard`` (written last)."""
        return shard_file(self.root, shard, 'done.json')

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
            remove_verified(self.root, shard)
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
        remove_verified(self.root, shard)
        self._clear_tmp(shard)
        files = {}
        for name in sorted(arrays):
            data = npy_bytes(arrays[name])
            path = shard_file(self.root, shard, name + '.npy')
            atomic_write_bytes(data, path)
            files[name] = dict(file=osp.basename(path), bytes=len(data),
                               sha256=hashlib.sha256(data).hexdigest())
        atomic_write_bytes(
            json_bytes(dict(
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
