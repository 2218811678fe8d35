# Demo stage (b): supervised training of the teacher, a CIFAR ResNet-20
# (16/32/64 channels, 64-d pooled feature), on the labelled train split of an
# ImageNet-style folder (``<data_root>/train/<class>/*.png``), scored on
# ``<data_root>/val``.
#
# Run by tools/kdep_demo.py, which sets the data root, epochs, batch size
# and seed programmatically; it also trains on its own with the
# synthetic-shapes data written by
#     python -m kdep_mm.datasets.synthetic_shapes data/synthetic_shapes
#     python tools/train.py configs/demo/teacher_cifar_resnet20_shapes.py
# (the demo validates with ``runner.test()`` once, after training).
default_scope = 'mmpretrain'
custom_imports = dict(imports=['kdep_mm'], allow_failed_imports=False)

data_root = 'data/synthetic_shapes'
num_classes = 10
batch_size = 32

# ImageNet statistics on 0-255 RGB (those of the classic CIFAR ResNet
# checkpoints, so an akamaster teacher sees what it was trained on).
data_preprocessor = dict(
    type='ClsDataPreprocessor',
    num_classes=num_classes,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

model = dict(
    type='ImageClassifier',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='kdep_mm.CIFARResNet',
        depth=20,
        base_channels=16,
        out_indices=(2, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=num_classes,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, )))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    # pad with the mean colour (BGR): black borders would dominate the
    # features, and mmpretrain's RandomCrop ignores padding_mode when
    # padding is set
    dict(type='RandomCrop', crop_size=32, padding=4, pad_val=(104, 116, 124)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        data_prefix='train',
        with_label=True,
        pipeline=train_pipeline))
test_dataloader = dict(
    batch_size=200,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        data_prefix='val',
        with_label=True,
        pipeline=test_pipeline))
test_evaluator = dict(type='Accuracy', topk=(1, ))
test_cfg = dict()
# no validation during training: the demo scores the final model once
val_dataloader = None
val_evaluator = None
val_cfg = None

max_epochs = 10
optim_wrapper = dict(
    optimizer=dict(
        type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs,
         eta_min=1e-3, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=batch_size, enable=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # one checkpoint, at the end
    checkpoint=dict(type='CheckpointHook', interval=max_epochs,
                    max_keep_ckpts=1, save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
