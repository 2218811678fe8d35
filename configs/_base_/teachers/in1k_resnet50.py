# Teacher: mmpretrain's model-zoo ResNet-50 (supervised ImageNet-1K, 76.55%
# top-1; 2048-d pooled feature), loaded strictly from its URL (keys as
# mmpretrain saves them). List this file beside the runtime base and name
# the teacher in the distiller by reference:
#     teacher={{_base_.teacher}}, teacher_ckpt={{_base_.teacher_ckpt}}
teacher_ckpt = ('https://download.openmmlab.com/mmclassification/v0/resnet/'
                'resnet50_8xb32_in1k_20210831-ea4938fc.pth')
teacher = dict(
    type='mmpretrain.ImageClassifier',
    backbone=dict(type='mmpretrain.ResNet', depth=50),
    neck=dict(type='mmpretrain.GlobalAveragePooling'),
    head=dict(
        type='mmpretrain.LinearClsHead',
        num_classes=1000,
        in_channels=2048,
        loss=dict(type='mmpretrain.CrossEntropyLoss')))
