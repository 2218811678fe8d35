# Study downstream task: CamVid semantic segmentation (11 classes, void
# ignored) with an mmseg FCN head on the student backbone, at reduced
# resolution (128 x 96, 0.27x the released 480 x 360), mIoU on the
# 101 val images at that resolution.
# The head reads the last stage (stride 4, 64-d for ResNet-20): one 3x3
# conv (64 channels) + a 1x1 classifier, upsampled to the input.
# benchmarks/kdep_study.py sets the backbone's width and init, and the seed.
# Derived from the full-size config configs/downstream/mmseg/fcn_r18_camvid.py
# (datasets, evaluator, optimiser, runtime); what differs is stated here.
_base_ = ['../../downstream/mmseg/fcn_r18_camvid.py']

pretrained = 'work_dirs/study/exports/student.pth'
data_root = 'data/shared/CamVid/'
img_scale = (128, 96)  # (w, h)
max_iters = 250  # about 5.4 epochs of the 367 train images at batch 8 (v1: 60)

norm_cfg = dict(_delete_=True, type='BN', requires_grad=True)
# one light head on the last stage, no auxiliary head
model = dict(
    _delete_=True,
    type='EncoderDecoder',
    # no crop: padded to a multiple of 4 instead (the base's statistics)
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean={{_base_.data_preprocessor.mean}},
        std={{_base_.data_preprocessor.std}},
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
        size_divisor=4),
    pretrained=None,
    backbone=dict(
        type='kdep_mm.CIFARResNet',
        depth=20,
        base_channels=16,
        out_indices=(2, ),
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    decode_head=dict(
        type='FCNHead',
        in_channels=64,
        in_index=0,
        channels=64,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes={{_base_.num_classes}},
        norm_cfg=dict(type='BN', requires_grad=True),
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
data_preprocessor = dict(model['data_preprocessor'], _delete_=True)

# the base's pipelines at this resolution, without the crop augmentation (a
# base's variables are substituted when the base is read)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
# CPU: no workers; scored on the val split; no validation during training
train_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
test_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='val.txt',
                 pipeline=test_pipeline))
val_dataloader = None
val_evaluator = None
val_cfg = None

train_cfg = dict(max_iters=max_iters, val_interval=max_iters + 1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
         end=max_iters // 6),
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=max_iters // 6,
         end=max_iters, by_epoch=False),
]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=None,
    visualization=dict(draw=False))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0, deterministic=False)
