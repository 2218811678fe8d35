# Study downstream task: CIFAR-10 linear probe of a frozen exported backbone.
# The classifier below is built only for its (frozen, eval-mode) backbone and
# GAP neck: benchmarks/kdep_study.py runs an mmengine Runner test loop over
# the probe's train images and the test images (test pipeline, no
# augmentation) that collects the pooled features, then fits a multinomial
# logistic regression on the standardised train features (full-batch L-BFGS,
# L2 ``probe.l2``) and reports top-1 on the test images.
# Sizes: ``probe.train_per_class`` images per class from CIFAR-10 train
# (drawn with seed 0, the same for every arm) and ``probe.test_per_class``
# from CIFAR-10 test.
_base_ = ['../../_base_/kdep_runtime.py']

pretrained = 'benchmarks/study_results/exports/student.pth'
data_root = 'data/shared/cifar10_jpeg/'
probe = dict(train_per_class=100, test_per_class=100, l2=1e-3, max_iter=200)

model = dict(
    type='mmpretrain.ImageClassifier',
    data_preprocessor=dict(
        type='mmpretrain.ClsDataPreprocessor',
        num_classes=10,
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(
        type='kdep_mm.CIFARResNet',
        depth=20,
        base_channels=16,
        frozen_stages=3,  # stem + all three stages
        norm_eval=True,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(type='mmpretrain.GlobalAveragePooling'),
    head=dict(
        type='mmpretrain.LinearClsHead',
        num_classes=10,
        in_channels=64,
        loss=dict(type='mmpretrain.CrossEntropyLoss')))

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackInputs'),
]
# ann_file: 'relative/path label' lines written by the study script
probe_train_dataloader = dict(
    batch_size=200,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        data_prefix='train',
        ann_file='meta/study_probe_train.txt',
        with_label=True,
        pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=200,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        data_prefix='test',
        ann_file='meta/study_probe_test.txt',
        with_label=True,
        pipeline=test_pipeline))
test_cfg = dict()
