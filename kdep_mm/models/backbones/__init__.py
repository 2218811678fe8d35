from .cifar_resnet import (AKAMASTER_REVISE_KEYS, CIFARResNet,
                           convert_cifar_resnet_checkpoint,
                           convert_cifar_resnet_state_dict)

__all__ = [
    'CIFARResNet', 'AKAMASTER_REVISE_KEYS', 'convert_cifar_resnet_checkpoint',
    'convert_cifar_resnet_state_dict'
]
