# The backbone of the self-supervised CIFAR-10 teacher, in one place: the
# MoCo v2 pre-training config (configs/tcs/ssl/mocov2_cifar_resnet56_cifar10.py)
# trains it, the TCS config (configs/tcs/cifar10_mocov2_r56_to_r20_w8_tcs_online_5k.py)
# distils from it. A CIFAR ResNet-56 (64-d pooled feature), as the
# supervised teacher of the other TCS configs.
ssl_backbone = dict(type='kdep_mm.CIFARResNet', depth=56)
ssl_channels = 64
