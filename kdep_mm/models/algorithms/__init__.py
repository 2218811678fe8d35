from .base_distiller import BaseDistiller, load_teacher_checkpoint
from .kdep import KDEPDistiller, LogitKDDistiller

__all__ = [
    'BaseDistiller', 'KDEPDistiller', 'LogitKDDistiller',
    'load_teacher_checkpoint'
]
