from .base_distiller import BaseDistiller
from .kdep import KDEPDistiller, LogitKDDistiller
from .ensemble import EnsembleDistiller
from .dmae import DMAEDistiller
from .tcs import TCSDistiller
from .supervised_kd import SupervisedKDDistiller

__all__ = [
    'BaseDistiller', 'KDEPDistiller', 'LogitKDDistiller', 'DMAEDistiller',
    'TCSDistiller', 'EnsembleDistiller', 'SupervisedKDDistiller'
]
