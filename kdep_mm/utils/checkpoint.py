"""Checkpoint I/O that works with ``torch.load(weights_only=True)``.

torch >= 2.6 loads with ``weights_only=True`` by default. mmengine 0.10.7's
Runner checkpoints hold a few non-tensor objects (the message hub's
``HistoryBuffer`` with numpy arrays, numpy scalars and dtypes), so ``--resume``
and ``load_from`` fail with ``Unsupported global``. Instead of turning
``weights_only`` off for arbitrary files, :func:`allow_mmengine_checkpoint_types`
adds exactly those types to torch's allow-list.
"""
import os
import os.path as osp
import tempfile
from typing import Any

import numpy as np
import torch


def _mmengine_checkpoint_types() -> list:
    from mmengine.logging.history_buffer import HistoryBuffer
    types = [HistoryBuffer, np.ndarray, np.dtype]
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


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` to ``path`` atomically.

    The object is written to a temporary file in the same directory, flushed
    and fsync'ed, then renamed over ``path``. A process killed at any moment
    leaves either the previous file or the new complete one, never a partial
    file under ``path``.
    """
    path = osp.abspath(path)
    dirname = osp.dirname(path)
    os.makedirs(dirname, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=osp.basename(path) + '.',
                               suffix='.tmp', dir=dirname)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(dirname, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
