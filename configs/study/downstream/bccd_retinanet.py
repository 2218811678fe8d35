# Study downstream task: BCCD blood-cell detection (RBC, WBC, Platelets) with
# an mmdet RetinaNet on the student backbone, at a quarter of the released
# resolution (160 x 120), mAP@0.5 (VOC, area) on the 72 test images.
# The CIFAR ResNet is multi-scale (out_indices); its last stage (stride 4,
# 64-d for ResNet-20) feeds a light FPN (64 channels, extra levels from
# its output: strides 4 / 8 / 16) and a light head (one conv per branch).
# Anchors: octave base scale 2 (sizes 8-51 px at these strides, the BCCD
# cells at 160 x 120). Same recipe for every arm: full fine-tuning, BN in
# train mode, nothing frozen (a frozen random stem would cripple the
# random-init arm). benchmarks/kdep_study.py sets the backbone's width and
# init, and the seed. Derived from the full-size config
# configs/downstream/mmdet/retinanet_r18_fpn_bccd.py (datasets, evaluator,
# optimiser, runtime); what differs is stated here.
_base_ = ['../../downstream/mmdet/retinanet_r18_fpn_bccd.py']

pretrained = 'work_dirs/study/exports/student.pth'
data_root = 'data/shared/BCCD/'
img_scale = (160, 120)
max_iters = 300  # about 6 epochs of the 205 train images at batch 4 (v1: 80, too few to separate the arms)

model = dict(
    backbone=dict(
        _delete_=True,
        type='kdep_mm.CIFARResNet',
        depth=20,
        base_channels=16,
        out_indices=(2, ),
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(
        in_channels=[64],
        out_channels=64,
        start_level=0,
        add_extra_convs='on_output',
        num_outs=3),
    bbox_head=dict(
        in_channels=64,
        feat_channels=64,
        stacked_convs=1,
        anchor_generator=dict(octave_base_scale=2, strides=[4, 8, 16])),
    test_cfg=dict(max_per_img=100))

# the base's pipelines at this resolution (a base's variables are
# substituted when the base is read: img_scale alone would not reach them)
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=[0.25, 0.25],
         direction=['horizontal', 'vertical']),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
# CPU: no workers; iteration-based, no validation during training
train_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler'),
    batch_sampler=None,
    dataset=dict(
        data_root=data_root,
        filter_cfg=dict(min_size=8),
        pipeline=train_pipeline))
test_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_evaluator = dict(iou_thrs=0.5)
val_dataloader = None
val_evaluator = None
val_cfg = None

train_cfg = dict(_delete_=True, type='IterBasedTrainLoop',
                 max_iters=max_iters, val_interval=max_iters + 1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
         end=max_iters // 4),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=max_iters // 4,
         end=max_iters, eta_min=0.),
]
optim_wrapper = dict(optimizer=dict(lr=0.01))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    checkpoint=None)
log_processor = dict(by_epoch=False)
randomness = dict(seed=0, deterministic=False)
