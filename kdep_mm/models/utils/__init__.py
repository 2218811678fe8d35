from .feature_recorder import FeatureRecorder, default_feature_layer
from .involution import Involution

__all__ = ['FeatureRecorder', 'default_feature_layer', 'Involution']
