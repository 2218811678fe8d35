"""An mmengine file backend whose writes are atomic."""
from pathlib import Path
from typing import Union

from mmengine.fileio import LocalBackend, register_backend

from .checkpoint import atomic_write_bytes


class AtomicLocalBackend(LocalBackend):
    """mmengine's ``LocalBackend`` with atomic ``put``/``put_text``.

    mmengine writes checkpoints with ``open(path, 'wb').write(...)``: a run
    killed mid-write leaves a truncated ``epoch_N.pth`` that ``--resume``
    then picks up. Select this backend for checkpoints with::

        default_hooks = dict(checkpoint=dict(
            type='CheckpointHook', backend_args=dict(backend='atomic_local')))

    Each file is written to a temporary name, fsync'ed and renamed, so a
    checkpoint path only ever holds a complete file (the previous one stays
    until the new one is complete).
    """

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write_bytes(obj, str(filepath))

    def put_text(self,
                 obj: str,
                 filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        atomic_write_bytes(obj.encode(encoding), str(filepath))


def register_atomic_backend() -> None:
    """Register :class:`AtomicLocalBackend` as ``'atomic_local'``
    (idempotent)."""
    register_backend('atomic_local', AtomicLocalBackend, force=True)
