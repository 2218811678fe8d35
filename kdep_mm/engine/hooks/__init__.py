from .fit_aligner_hook import (FitAlignerHook, fit_basis_from_store,
                               fit_basis_online, load_basis, save_basis)

from .check_stores_hook import CheckTeacherStoresHook
from .logger_hook import ExpNameOnceLoggerHook
from .tcs_hooks import (FitTCSCoordinatesHook, TCSTailoringHook,
                        fit_coordinates_from_store)

__all__ = [
    'FitAlignerHook', 'fit_basis_online', 'fit_basis_from_store',
    'fit_coordinates_from_store', 'save_basis', 'load_basis',
    'FitTCSCoordinatesHook', 'TCSTailoringHook', 'CheckTeacherStoresHook',
    'ExpNameOnceLoggerHook'
]
