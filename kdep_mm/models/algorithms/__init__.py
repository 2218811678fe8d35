from .base_distiller import BaseDistiller
from .kdep import KDEPDistiller, LogitKDDistiller
from .ensemble import EnsembleDistiller, export_ensemble_classifier
from .dmae import DMAEDistiller, num_visible_patches, vit_forward_visible
from .tcs import (TCSDistiller, export_tcs_classifier,
                  fit_coordinates_from_store)

__all__ = [
    'BaseDistiller', 'KDEPDistiller', 'LogitKDDistiller', 'DMAEDistiller',
    'num_visible_patches', 'vit_forward_visible', 'TCSDistiller',
    'export_tcs_classifier', 'fit_coordinates_from_store',
    'EnsembleDistiller', 'export_ensemble_classifier'
]
