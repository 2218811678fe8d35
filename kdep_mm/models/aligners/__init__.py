from .base_aligner import BaseAligner
from .projector_aligner import IdentityAligner, ProjectorAligner
from .svd_aligner import SVDAligner, power_temperature_scaling

__all__ = [
    'BaseAligner', 'SVDAligner', 'ProjectorAligner', 'IdentityAligner',
    'power_temperature_scaling'
]
