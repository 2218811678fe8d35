from .checkpoint import (allow_mmengine_checkpoint_types, atomic_save,
                         safe_torch_load)
from .setup_env import register_all_modules

__all__ = [
    'register_all_modules', 'allow_mmengine_checkpoint_types', 'atomic_save',
    'safe_torch_load'
]
