# Study downstream task: fine-tune the whole student on hymenoptera (ants vs
# bees, 244 train / 153 val photos) at reduced resolution (32 px, the
# resolution the students were pre-trained at), top-1 on all 153 val images.
# benchmarks/kdep_study.py sets the backbone's width and its init (the arm's
# export, or none for random init) and the seed.
_base_ = ['mmpretrain::_base_/default_runtime.py']

custom_imports = dict(imports=['kdep_mm'], allow_failed_imports=False)
pretrained = 'benchmarks/study_results/exports/student.pth'
data_root = 'data/shared/hymenoptera_data/'
extensions = ('.jpg', '.jpeg', '.png')
img_size = 32
max_epochs = 8

model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(
        num_classes=2,
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(
        type='kdep_mm.CIFARResNet',
        depth=20,
        base_channels=16,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=2,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, )))

train_pipeline = [
    # the set ships a broken train/ants/imageNotFound.gif (extensions skip
    # it); LoadImageOrSkip also survives any other unreadable file
    dict(type='kdep_mm.LoadImageOrSkip', on_error='skip'),
    dict(type='RandomResizedCrop', scale=img_size),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=img_size * 8 // 7, edge='short'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        data_prefix='train',
        extensions=extensions,
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
test_dataloader = dict(
    batch_size=64,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        data_prefix='val',
        extensions=extensions,
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_evaluator = dict(type='Accuracy', topk=(1, ))
test_cfg = dict()
val_dataloader = None
val_evaluator = None
val_cfg = None

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs,
         eta_min=0., convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=16, enable=False)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5),
    checkpoint=None)
randomness = dict(seed=0, deterministic=False)
