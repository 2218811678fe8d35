"""Checkpoint I/O that works with ``torch.load(weights_only=True)``.

torch >= 2.6 loads with ``weights_only=True`` by default. mmengine 0.10.7's
Runner checkpoints hold a few non-tensor objects (the message hub's
``HistoryBuffer`` with numpy arrays, numpy scalars and dtypes), so ``--resume``
and ``load_from`` fail with ``Unsupported global``. Instead of turning
``weights_only`` off for arbitrary files, :func:`allow_mmengine_checkpoint_types`
adds exactly those types to torch's allow-list.
"""
import hashlib
import io
import os
import os.path as osp
import tempfile
from typing import Any, Optional
from urllib.parse import urlparse

import numpy as np
import torch


# The statistics methods a HistoryBuffer pickles (``__getstate__`` keeps its
# ``_statistics_methods`` dict); mmengine registers exactly these by default.
_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """A ``getattr`` that only resolves ``HistoryBuffer.<statistics method>``.

    Pickle protocol 2 (``torch.save``'s) stores a function with a dotted
    qualname such as ``HistoryBuffer.min`` as ``getattr(HistoryBuffer,
    'min')``, so a Runner checkpoint's message hub needs ``builtins.getattr``
    under ``weights_only=True``. Allowing the real ``getattr`` would let a
    pickle reach any attribute (``__globals__``, ``__builtins__``, ...) of
    an allowed object; this stand-in is registered under that name instead
    and refuses everything else.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    import pickle
    raise pickle.UnpicklingError(
        f'getattr({obj!r}, {name!r}) is not allowed under weights_only=True '
        '(only HistoryBuffer statistics methods are)')


def _empty_bytes(*args: Any) -> bytes:
    """A ``bytes`` that only builds ``b''``.

    Pickle protocol 2 stores an empty ``bytes`` object as the call
    ``bytes()`` (non-empty ones go through ``_codecs.encode``, which torch
    allows), and an empty numpy array (the history of a ``HistoryBuffer``
    created but never updated) pickles its data as ``b''``. Allowing the
    real ``bytes`` would let a pickle call ``bytes(n)`` (allocate ``n``
    bytes) or convert arbitrary iterables; this stand-in is registered under
    ``builtins.bytes`` instead and refuses any argument.
    """
    if args:
        import pickle
        raise pickle.UnpicklingError(
            f'bytes{args!r} is not allowed under weights_only=True (only '
            "bytes() = b'', of an empty array, is)")
    return b''


def _mmengine_checkpoint_types() -> list:
    from mmengine.logging.history_buffer import HistoryBuffer
    types = [HistoryBuffer, np.ndarray, np.dtype]
    # HistoryBuffer.min/max/current/mean, pickled through getattr
    types.append((_history_buffer_getattr, 'builtins.getattr'))
    # b'' (the data of an empty array, e.g. a never updated HistoryBuffer)
    types.append((_empty_bytes, 'builtins.bytes'))
    # numpy scalars are pickled through multiarray.scalar, arrays through
    # multiarray._reconstruct; the module moved to numpy._core in numpy 2.
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore
    types += [multiarray.scalar, multiarray._reconstruct]
    # dtype classes (numpy >= 1.25 pickles dtypes by their class).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        for name in ('Float64DType', 'Float32DType', 'Float16DType',
                     'Int64DType', 'Int32DType', 'Int16DType', 'Int8DType',
                     'UInt8DType', 'BoolDType'):
            if hasattr(dtypes, name):
                types.append(getattr(dtypes, name))
    return types


def allow_mmengine_checkpoint_types() -> None:
    """Allow the types mmengine checkpoints hold under ``weights_only=True``.

    Idempotent; a no-op on torch versions without ``add_safe_globals``.
    """
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is None:
        return
    add(_mmengine_checkpoint_types())


def safe_torch_load(path: str, map_location: Any = 'cpu') -> Any:
    """``torch.load`` with ``weights_only=True`` and mmengine's types allowed.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        RuntimeError: the file is not a readable checkpoint (truncated,
            corrupted or holding disallowed objects); the message names it.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    allow_mmengine_checkpoint_types()
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise RuntimeError(f'could not read checkpoint {path}: {e}') from e


def fsync_path(path: str) -> None:
    """fsync a file or a directory by its path (a directory's fsync makes
    the renames and creations in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(data: bytes, path: str) -> None:
    """Write ``data`` to ``path`` atomically.

    The bytes go to a temporary file in the same directory, which is flushed
    and fsync'ed, then renamed over ``path`` (and the directory fsync'ed). A
    process killed at any moment leaves either the previous file or the new
    complete one under ``path``, never a partial file.
    """
    path = osp.abspath(path)
    dirname = osp.dirname(path)
    os.makedirs(dirname, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + osp.basename(path) + '.',
                               suffix='.tmp', dir=dirname)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_path(dirname)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` to ``path`` atomically (see :func:`atomic_write_bytes`).
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(buffer.getvalue(), path)


# ------------------------------------------------------------ file identity
def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _is_url(path: str) -> bool:
    return urlparse(str(path)).scheme in ('http', 'https')


def local_checkpoint_file(path: str, download: bool = True) -> str:
    """The local file of a checkpoint path or http(s) URL.

    A URL maps to the file mmengine's ``CheckpointLoader`` caches it in
    (``torch.hub.get_dir()/checkpoints/<file name>``, as
    ``torch.hub.load_state_dict_from_url``), downloaded there if absent and
    ``download``. Raises ``FileNotFoundError`` for a missing local file.
    """
    path = str(path)
    if _is_url(path):
        import torch.hub
        cache_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
        local = osp.join(cache_dir, osp.basename(urlparse(path).path))
        if not osp.isfile(local):
            if not download:
                raise FileNotFoundError(f'{path} is not downloaded ({local})')
            os.makedirs(cache_dir, exist_ok=True)
            torch.hub.download_url_to_file(path, local, progress=False)
        return local
    if '://' in path:
        raise ValueError(f'cannot locate the file of checkpoint {path!r} '
                         '(only local paths and http(s) URLs)')
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    return path


def checkpoint_sha256(path: Optional[str], download: bool = True
                      ) -> Optional[str]:
    """sha256 of a teacher checkpoint's file (path or URL, see
    :func:`local_checkpoint_file`): the teacher identity a teacher store
    records at caching time and a store-mode training run checks without
    building the teacher. None for None."""
    if path is None:
        return None
    return file_sha256(local_checkpoint_file(path, download))
