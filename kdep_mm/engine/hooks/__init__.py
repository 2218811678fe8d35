from .fit_aligner_hook import (FitAlignerHook, fit_aligner, load_basis,
                               save_basis)

__all__ = ['FitAlignerHook', 'fit_aligner', 'save_basis', 'load_basis']
