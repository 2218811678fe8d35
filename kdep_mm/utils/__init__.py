from .checkpoint import (allow_mmengine_checkpoint_types, atomic_save,
                         atomic_write_bytes, safe_torch_load)
from .fileio import AtomicLocalBackend, register_atomic_backend

__all__ = [
    'allow_mmengine_checkpoint_types', 'atomic_save', 'safe_torch_load',
    'atomic_write_bytes', 'AtomicLocalBackend', 'register_atomic_backend'
]
