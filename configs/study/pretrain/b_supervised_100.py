# Study arm (b): supervised pre-training on 100% of the pool, with labels:
# the student + GAP + a linear head, cross-entropy; the head is thrown away
# at export (backbone.* keys kept).
_base_ = ['../_base_/pretrain_cifar10_pool.py']

study_arm = dict(kind='supervised', labels=True, data='100%')

model = dict(
    type='mmpretrain.ImageClassifier',
    data_preprocessor={{_base_.data_preprocessor}},
    backbone={{_base_.student}},
    neck=dict(type='mmpretrain.GlobalAveragePooling'),
    head=dict(
        type='mmpretrain.LinearClsHead',
        num_classes=10,
        in_channels={{_base_.student_channels}},
        loss=dict(type='mmpretrain.CrossEntropyLoss')))
optim_wrapper = dict(optimizer=dict(lr=0.05))
