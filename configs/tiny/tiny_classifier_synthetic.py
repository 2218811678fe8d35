# A tiny, fast mmpretrain classifier for tests of tools/train.py, test.py and
# the distributed launch scripts. Train on CPU in well under a second a step.
#
# The data is an ImageNet-style folder (one sub-folder per class), e.g. the
# one written by
#   python tools/dataset_converters/tiny_image_folder.py data/tiny_synthetic
# Point the three dataloaders elsewhere with the KDEP_TINY_DATA environment
# variable, or with --cfg-options train_dataloader.dataset.data_root=...
# (and val_/test_dataloader).
default_scope = 'mmpretrain'

data_root = '{{$KDEP_TINY_DATA:data/tiny_synthetic}}'
num_classes = 2
batch_size = 4

model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(
        type='ClsDataPreprocessor',
        num_classes=num_classes,
        mean=[125.3, 123.0, 113.9],
        std=[63.0, 62.1, 66.7],
        to_rgb=True),
    backbone=dict(
        type='ResNet_CIFAR',
        depth=18,
        stem_channels=16,
        base_channels=16,
        num_stages=4,
        out_indices=(3, ),
        style='pytorch'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=num_classes,
        in_channels=128,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, )))

# no random augmentation: the data order is the only source of randomness
# and it is fixed by the sampler's seed
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True, seed=0),
    dataset=dict(
        type='CustomDataset', data_root=data_root, pipeline=pipeline))
val_dataloader = dict(
    train_dataloader, sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4))
# `end` is explicit: by default mmengine ends a scheduler at max_iters and
# saves `end` in the checkpoint, so a run resumed with a larger max_iters
# would keep the old end.
param_scheduler = dict(
    type='MultiStepLR',
    by_epoch=False,
    begin=0,
    end=1000,
    milestones=[3],
    gamma=0.1)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=1000)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=batch_size, enable=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=1),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)
log_processor = dict(by_epoch=False, window_size=1)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
visualizer = dict(
    type='UniversalVisualizer', vis_backends=[dict(type='LocalVisBackend')])
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=True)
