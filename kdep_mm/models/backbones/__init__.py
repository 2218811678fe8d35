from .cifar_resnet import (AKAMASTER_REVISE_KEYS, CIFARResNet,
                           convert_cifar_resnet_checkpoint,
                           convert_cifar_resnet_state_dict)
from .multi_token_vit import MultiTokenViT
from .rednet import RedNet
from .vit_visible import (VisibleMAEViT, VisiblePatchForward, VisibleViT,
                          num_visible_patches)

__all__ = [
    'CIFARResNet', 'AKAMASTER_REVISE_KEYS', 'convert_cifar_resnet_checkpoint',
    'convert_cifar_resnet_state_dict', 'RedNet', 'MultiTokenViT',
    'num_visible_patches', 'VisiblePatchForward', 'VisibleViT',
    'VisibleMAEViT'
]
