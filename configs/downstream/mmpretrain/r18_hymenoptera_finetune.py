# Fine-tune a KDEP-distilled ResNet-18 on a small ImageNet-style folder
# dataset (hymenoptera: ants vs bees, 244 train / 153 val images):
#   data/hymenoptera_data/{train,val}/{ants,bees}/*.jpg
# Classes are the sub-folder names (sorted). The folder ships a broken
# `train/ants/imageNotFound.gif`; `extensions` leaves it out.
#   python tools/train.py configs/downstream/mmpretrain/r18_hymenoptera_finetune.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/<exp>/student_backbone.pth
# Model and transforms: mmpretrain's ResNet-18 classifier and ImageNet
# bases (RandomResizedCrop 224 + flip; resize 256 + centre crop 224; the
# ImageNet statistics), on an ImageNet-style folder.
_base_ = [
    'mmpretrain::_base_/models/resnet18.py',
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/default_runtime.py',
]

pretrained = 'work_dirs/kdep_r18/student_backbone.pth'
num_classes = 2

model = dict(
    backbone=dict(
        type='mmpretrain.ResNet',  # the exported student's keys
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    head=dict(num_classes=num_classes, topk=(1, )))

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
train_dataloader = dict(
    batch_size=16,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        data_prefix='train',
        extensions=extensions,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32,
    num_workers=2,
    dataset=dict(train_dataloader['dataset'], data_prefix='val',
                 pipeline={{_base_.test_pipeline}}))
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
