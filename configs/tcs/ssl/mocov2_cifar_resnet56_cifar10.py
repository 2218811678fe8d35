# MoCo v2 (Chen, Fan, Girshick, He, 2020) self-supervised pre-training of a
# CIFAR ResNet-56 on the 50,000 CIFAR-10 training images, labels unused:
# mmpretrain's MoCo v2 recipe (mmpretrain::mocov2/...) with the backbone,
# neck widths, queue, 32 px views and schedule changed for CIFAR. Its
# checkpoint (mmpretrain's own layout: backbone.*, neck.*,
# encoder_k.* (the momentum encoder), queue, queue_ptr) is the teacher of
# configs/tcs/cifar10_mocov2_r56_to_r20_w8_tcs_online_5k.py, which keeps
# the backbone.* keys only (teacher_revise_keys).
#   python tools/train.py configs/tcs/ssl/mocov2_cifar_resnet56_cifar10.py
# (a GPU job: see docs/tcs.md, "SSL teacher").
# Choices for 32 px (not from the MoCo papers): crop area 0.2-1 at 32 px,
# no Gaussian blur (it erases 32 px images), a 4,096-key queue (~8% of the
# data, as 65,536 is of ImageNet), batch 256, lr 0.06 x 256/256, 200 epochs,
# cosine. Hue jitter off (MoCo v2: 0.1): mmcv 2.1.0's adjust_hue computes
# np.uint8(hue_factor * 255), which raises OverflowError under numpy >= 2
# for every negative factor.
_base_ = [
    'mmpretrain::mocov2/mocov2_resnet50_8xb32-coslr-200e_in1k.py',
    '../_base_/teachers/ssl_cifar_resnet56.py',
]

model = dict(
    queue_len=4096,
    backbone=dict(_delete_=True, **_base_.ssl_backbone),
    neck=dict(in_channels={{_base_.ssl_channels}}, hid_channels=512,
              out_channels=128))

view_pipeline = [
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.),
         backend='pillow'),
    dict(type='RandomApply',
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4,
                          saturation=0.4, hue=0.)],
         prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='RandomFlip', prob=0.5),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=2, transforms=[view_pipeline]),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=256,
    num_workers=8,
    # redefined: the base's dict carries the `_scope_` mmengine adds to a
    # `mmpretrain::` base, which the Runner would pass to default_collate
    collate_fn=dict(_delete_=True, type='default_collate'),
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root='data/shared/cifar10_jpeg/',
        data_prefix='train',
        with_label=False,
        pipeline=train_pipeline))
optim_wrapper = dict(optimizer=dict(lr=0.06))
train_cfg = dict(max_epochs=200)
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=200, by_epoch=True, begin=0,
         end=200)
]
auto_scale_lr = dict(base_batch_size=256)
default_hooks = dict(checkpoint=dict(interval=20, max_keep_ckpts=2))
