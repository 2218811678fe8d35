# Teacher: the real CIFAR-10 ResNet-56 (He et al., CVPR 2016, Sec. 4.2; 64-d
# pooled feature), the akamaster/pytorch_resnet_cifar10 checkpoint with its
# original keys ('module.*'), mapped onto an mmpretrain ImageClassifier by
# ``teacher_revise_keys`` (``linear`` first). List this file beside the
# runtime base and name the teacher in the distiller by reference:
#     teacher={{_base_.teacher}}, teacher_ckpt={{_base_.teacher_ckpt}},
#     teacher_revise_keys={{_base_.teacher_revise_keys}}
teacher_ckpt = '../shared/data/cifar10_resnets/resnet56-4bfd9763.th'
teacher_revise_keys = [(r'^module\.linear\.', 'head.fc.'),
                       (r'^module\.', 'backbone.')]
teacher = dict(
    type='mmpretrain.ImageClassifier',
    backbone=dict(type='kdep_mm.CIFARResNet', depth=56),
    neck=dict(type='mmpretrain.GlobalAveragePooling'),
    head=dict(
        type='mmpretrain.LinearClsHead',
        num_classes=10,
        in_channels=64,
        loss=dict(type='mmpretrain.CrossEntropyLoss')))
