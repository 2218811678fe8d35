from .feature_recorder import FeatureRecorder, default_feature_layer

__all__ = ['FeatureRecorder', 'default_feature_layer']
