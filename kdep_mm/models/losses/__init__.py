from .feature_mse import FeatureMSELoss
from .kd_loss import KDLoss

__all__ = ['FeatureMSELoss', 'KDLoss']
