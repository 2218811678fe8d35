from .feature_mse import FeatureMSELoss
from .kd_loss import KDLoss
from .masked_mse import MaskedMSELoss
from .normalized_distance import NormalizedDistanceLoss
from .soft_target_kl import SoftTargetKLLoss

__all__ = [
    'FeatureMSELoss', 'KDLoss', 'MaskedMSELoss', 'NormalizedDistanceLoss',
    'SoftTargetKLLoss'
]
