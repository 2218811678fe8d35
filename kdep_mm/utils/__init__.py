from .checkpoint import (allow_mmengine_checkpoint_types, atomic_save,
                         atomic_write_bytes, safe_torch_load)
from .fileio import AtomicLocalBackend, register_atomic_backend
from .setup_env import register_all_modules

__all__ = [
    'register_all_modules', 'allow_mmengine_checkpoint_types', 'atomic_save',
    'safe_torch_load', 'atomic_write_bytes', 'AtomicLocalBackend',
    'register_atomic_backend'
]
