from .fit_aligner_hook import (FitAlignerHook, fit_aligner, load_basis,
                               save_basis)

from .check_stores_hook import CheckTeacherStoresHook
from .logger_hook import ExpNameOnceLoggerHook
from .tcs_hooks import FitTCSCoordinatesHook, TCSTailoringHook

__all__ = [
    'FitAlignerHook', 'fit_aligner', 'save_basis', 'load_basis',
    'FitTCSCoordinatesHook', 'TCSTailoringHook', 'CheckTeacherStoresHook',
    'ExpNameOnceLoggerHook'
]
