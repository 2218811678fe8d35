"""Read a teacher store: checked at open, one sample's view per
``os.pread``, whole shards as memory maps.

A sample is read with ``os.pread`` of its bytes (the ``.npy`` header parsed
once per file); bulk readers map whole shards with
``np.load(mmap_mode='r')``. At most ``max_open_files`` file descriptors
(cached descriptors and maps together) are kept open per process, least
recently used first out.
"""
import os
import os.path as osp
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import numpy as np

from .format import (VIEW_FILES, compare_manifest, jsonable,
                     normalize_fields, read_manifest, shard_file)
from .shards import VERIFY_MODES, check_shard

# memory maps (= open file descriptors) a TeacherStore keeps per process
DEFAULT_MAX_OPEN_FILES = 128


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
        compare_manifest(self.manifest, jsonable(expected), '', self.root)
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
            path = shard_file(self.root, shard, name + '.npy')
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
            path = shard_file(self.root, shard, name + '.npy')
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
