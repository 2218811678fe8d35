from .fit_basis_hook import (FitBasisHook, fit_basis_from_store,
                             fit_basis_online, load_basis, save_basis)

from .check_stores_hook import CheckTeacherStoresHook
from .logger_hook import ExpNameOnceLoggerHook
from .tcs_hooks import TCSTailoringHook

__all__ = [
    'FitBasisHook', 'fit_basis_online', 'fit_basis_from_store',
    'save_basis', 'load_basis', 'TCSTailoringHook', 'CheckTeacherStoresHook',
    'ExpNameOnceLoggerHook'
]
