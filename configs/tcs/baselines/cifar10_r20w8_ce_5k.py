# TCS-vs-KD study, arm "CE only": ResNet-20 w8 as a plain mmpretrain
# classifier (GAP + linear head), cross-entropy, no teacher, on the study's
# 5,000 labelled images and stored views (see ../_base_/cifar10_5k_views.py).
#   python tools/train.py configs/tcs/baselines/cifar10_r20w8_ce_5k.py
_base_ = [
    '../../_base_/models/cifar_resnet20.py',
    '../_base_/cifar10_5k_views.py',
]

model = dict(
    backbone={{_base_.student}},
    head=dict(in_channels={{_base_.student_channels}}))
