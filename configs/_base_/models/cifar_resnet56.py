# ResNet-56 for CIFAR-10 (He et al., "Deep Residual Learning for Image
# Recognition", CVPR 2016, Sec. 4.2): 3x3 stem, 3 stages of 9 BasicBlocks
# (16/32/64 channels), parameter-free option-A shortcuts, 0.85M parameters.
#
# The classic pre-trained checkpoint (akamaster/pytorch_resnet_cifar10,
# ``../shared/data/cifar10_resnets/resnet56-4bfd9763.th``) loads as is:
#     from mmengine.runner import load_checkpoint
#     load_checkpoint(model, 'resnet56-4bfd9763.th', strict=True,
#                     revise_keys=[(r'^module\.linear\.', 'head.fc.'),
#                                  (r'^module\.', 'backbone.')])
# (the order matters: ``linear`` first), or convert it once with
#     python tools/model_converters/cifar_resnet_to_mmpretrain.py SRC DST
# and use ``load_from = DST``. ``map_location='cpu'`` is needed on a machine
# without CUDA: the original files hold CUDA tensors.
#
# The classifier of ./cifar_resnet20.py (types, normalisation, head), 9
# blocks per stage instead of 3.
_base_ = ['./cifar_resnet20.py']

model = dict(backbone=dict(depth=56))
