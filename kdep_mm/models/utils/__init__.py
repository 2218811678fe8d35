from .ensemble_data_preprocessor import EnsembleDataPreprocessor
from .feature_recorder import FeatureRecorder, default_feature_layer
from .involution import Involution
from .pooled_feature import (PooledFeature, global_pool, last_output,
                             output_width, resolve_feature_layer)
from .predictions import classification_samples
from .principal_basis import (BASIS_KEYS, BasisFit, PrincipalBasis,
                              fit_principal_basis)

__all__ = [
    'FeatureRecorder', 'default_feature_layer', 'Involution',
    'EnsembleDataPreprocessor', 'PooledFeature', 'global_pool',
    'last_output', 'output_width', 'resolve_feature_layer', 'PrincipalBasis', 'BASIS_KEYS',
    'BasisFit', 'fit_principal_basis', 'classification_samples'
]
