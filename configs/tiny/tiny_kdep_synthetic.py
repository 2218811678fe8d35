# A tiny KDEP run for tests of the tools, resume and distributed plumbing:
# a small ResNet teacher (random weights unless teacher_ckpt is set) -> a
# smaller ResNet student on the synthetic folder of
#   python tools/dataset_converters/tiny_image_folder.py data/tiny_synthetic
# Data root: $KDEP_TINY_DATA or --cfg-options train_dataloader.dataset.data_root=...
_base_ = ['../_base_/kdep_runtime.py']

data_root = '{{$KDEP_TINY_DATA:data/tiny_synthetic}}'

model = dict(
    type='kdep_mm.KDEPDistiller',
    data_preprocessor=dict(
        type='mmpretrain.ClsDataPreprocessor',
        mean=[125.3, 123.0, 113.9],
        std=[63.0, 62.1, 66.7],
        to_rgb=True),
    student=dict(type='kdep_mm.CIFARResNet', depth=8, base_channels=2),
    teacher=dict(
        type='mmpretrain.ImageClassifier',
        backbone=dict(type='kdep_mm.CIFARResNet', depth=8, base_channels=8),
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=dict(
            type='mmpretrain.LinearClsHead',
            num_classes=2,
            in_channels=32,
            loss=dict(type='mmpretrain.CrossEntropyLoss'))),
    teacher_ckpt=None,
    aligner=dict(
        type='kdep_mm.SVDAligner', student_channels=8, teacher_channels=32),
    distill_loss=dict(type='kdep_mm.FeatureMSELoss', loss_weight=20.),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
# one worker, re-created every epoch and seeded by randomness.seed, so the
# random flips of an epoch do not depend on what ran before (resume-safe)
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='CustomDataset', data_root=data_root, pipeline=train_pipeline))

custom_hooks = [dict(type='kdep_mm.FitBasisHook', num_samples=None)]

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4))
param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[2], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=3)
val_cfg = test_cfg = val_dataloader = test_dataloader = None
val_evaluator = test_evaluator = None
auto_scale_lr = dict(base_batch_size=4)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(max_keep_ckpts=-1, save_last=True))
randomness = dict(seed=0, deterministic=True)
