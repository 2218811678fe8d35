from .base_distiller import BaseDistiller
from .kdep import KDEPDistiller, LogitKDDistiller
from .ensemble import EnsembleDistiller
from .dmae import DMAEDistiller, num_visible_patches, vit_forward_visible
from .tcs import TCSDistiller

__all__ = [
    'BaseDistiller', 'KDEPDistiller', 'LogitKDDistiller', 'DMAEDistiller',
    'num_visible_patches', 'vit_forward_visible', 'TCSDistiller',
    'EnsembleDistiller'
]
