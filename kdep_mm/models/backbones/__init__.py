from .cifar_resnet import (AKAMASTER_REVISE_KEYS, CIFARResNet,
                           convert_cifar_resnet_checkpoint,
                           convert_cifar_resnet_state_dict)
from .multi_token_vit import MultiTokenViT
from .rednet import RedNet

__all__ = [
    'CIFARResNet', 'AKAMASTER_REVISE_KEYS', 'convert_cifar_resnet_checkpoint',
    'convert_cifar_resnet_state_dict', 'RedNet', 'MultiTokenViT'
]
