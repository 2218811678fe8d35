# FCN (output stride 8) with a KDEP-distilled ResNet-18 on CamVid (SegNet's
# 11-class version, 367 train / 101 val / 233 test images at 480x360; void,
# label 11, is ignored), the small-scale segmentation study. Single GPU.
# Data layout: data/CamVid/{train,val,test}/*.jpg, {train,val,test}annot/*.png
# and the split lists {train,val,test}.txt ("train/X.jpg trainannot/X.png").
#   --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/<exp>/student_backbone.pth
_base_ = [
    '../_base_/models/fcn_r18-d8.py',  # mmpretrain's ResNet-18, dilated
    'mmseg::_base_/default_runtime.py',
]

num_classes = 11
img_scale = (480, 360)  # (w, h), the released (half) resolution
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(size=(352, 352))  # the crop, (h, w)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(norm_cfg=norm_cfg),
    decode_head=dict(num_classes=num_classes, norm_cfg=norm_cfg),
    auxiliary_head=dict(num_classes=num_classes, norm_cfg=norm_cfg))

# dataset settings
dataset_type = 'kdep_mm.CamVidDataset'
data_root = 'data/CamVid'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=img_scale,
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=(352, 352), cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='train.txt',
        pipeline=train_pipeline))
# the same loader on the val split, unshuffled
val_dataloader = dict(
    train_dataloader,
    batch_size=1,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(train_dataloader['dataset'], ann_file='val.txt',
                 pipeline=test_pipeline))
# the same loader on the test split
test_dataloader = dict(
    val_dataloader, dataset=dict(val_dataloader['dataset'], ann_file='test.txt'))
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# schedule: 10k iterations (~220 epochs at 8 images per batch), poly decay
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0005),
    clip_grad=None)
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=1e-4,
        power=0.9,
        begin=0,
        end=10000,
        by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=10000, val_interval=1000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, interval=1000,
        max_keep_ckpts=1, save_best='mIoU'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
