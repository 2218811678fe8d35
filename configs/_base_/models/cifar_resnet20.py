# ResNet-20 for CIFAR-10 (He et al., "Deep Residual Learning for Image
# Recognition", CVPR 2016, Sec. 4.2): 3x3 stem, 3 stages of 3 BasicBlocks
# (16/32/64 channels), parameter-free option-A shortcuts, 0.27M parameters.
#
# The classic pre-trained checkpoint (akamaster/pytorch_resnet_cifar10,
# ``../shared/data/cifar10_resnets/resnet20-12fca82f.th``) loads as is:
#     from mmengine.runner import load_checkpoint
#     load_checkpoint(model, 'resnet20-12fca82f.th', strict=True,
#                     revise_keys=[(r'^module\.linear\.', 'head.fc.'),
#                                  (r'^module\.', 'backbone.')])
# (the order matters: ``linear`` first), or convert it once with
#     python tools/model_converters/cifar_resnet_to_mmpretrain.py SRC DST
# and use ``load_from = DST``. ``map_location='cpu'`` is needed on a machine
# without CUDA: the original files hold CUDA tensors.
#
# The types below are mmpretrain's: the final config needs
# ``default_scope = 'mmpretrain'``, which comes from the runtime base (e.g.
# ``configs/_base_/kdep_runtime.py``), as mmpretrain keeps it in its
# ``default_runtime.py``; list this file beside it. ``kdep_mm.CIFARResNet``
# needs no ``custom_imports``: mmengine imports ``kdep_mm.registry`` for the
# ``kdep_mm.`` prefix.
model = dict(
    type='ImageClassifier',
    # the checkpoints expect RGB normalised with the ImageNet statistics
    # (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) on 0-1, here x255;
    # LoadImageFromFile gives BGR, hence to_rgb=True.
    data_preprocessor=dict(
        type='ClsDataPreprocessor',
        num_classes=10,
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(
        type='kdep_mm.CIFARResNet',
        depth=20,
        base_channels=16,
        out_indices=(2, ),
        frozen_stages=-1,
        norm_eval=False,
        norm_cfg=dict(type='BN', requires_grad=True)),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, ),
    ))
