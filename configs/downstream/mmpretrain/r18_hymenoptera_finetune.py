# Fine-tune a KDEP-distilled ResNet-18 on a small ImageNet-style folder
# dataset (hymenoptera: ants vs bees, 244 train / 153 val images):
#   data/hymenoptera_data/{train,val}/{ants,bees}/*.jpg
# Classes are the sub-folder names (sorted). The folder ships a broken
# `train/ants/imageNotFound.gif`; `extensions` leaves it out.
#   python tools/train.py configs/downstream/mmpretrain/r18_hymenoptera_finetune.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/<exp>/student_backbone.pth
_base_ = [
    'mmpretrain::_base_/default_runtime.py',
    '../../_base_/imagenet_normalization.py',  # data_preprocessor
]

pretrained = 'work_dirs/kdep_r18/student_backbone.pth'
num_classes = 2

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmpretrain.ResNet',
        depth=18,
        num_stages=4,
        out_indices=(3, ),
        style='pytorch',
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=num_classes,
        in_channels=512,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, )))

# dataset settings
dataset_type = 'CustomDataset'
data_root = 'data/hymenoptera_data'
extensions = ('.jpg', '.jpeg', '.png')
data_preprocessor = dict(num_classes=num_classes)
train_pipeline = [
    dict(type='kdep_mm.LoadImageOrSkip', on_error='skip'),
    dict(type='RandomResizedCrop', scale=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=2,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix='train',
        extensions=extensions,
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=32,
    num_workers=2,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix='val',
        extensions=extensions,
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# schedule: 30 epochs of SGD, cosine decay
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.1,
        by_epoch=True,
        begin=0,
        end=1,
        convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=29, by_epoch=True, begin=1, end=30),
]
train_cfg = dict(by_epoch=True, max_epochs=30, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=16)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=5,
                                     max_keep_ckpts=1, save_best='auto'))
