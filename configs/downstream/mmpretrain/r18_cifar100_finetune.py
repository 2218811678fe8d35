# Fine-tune a KDEP-distilled ResNet-18 (exported with
# tools/export_student.py) on CIFAR-100.
#   python tools/train.py configs/downstream/mmpretrain/r18_cifar100_finetune.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/<exp>/student_backbone.pth
# The student is an ImageNet-style ResNet-18 (7x7 stem, max-pool), so the
# 32x32 images are up-sampled to `img_size` after the CIFAR augmentation.
# Model and data: mmpretrain's ResNet-18 classifier and CIFAR-100 bases
# (mmpretrain's CIFAR100 reads the python-pickle release, downloading it to
# data_root if absent; its statistics, RGB as loaded).
_base_ = [
    'mmpretrain::_base_/models/resnet18.py',
    'mmpretrain::_base_/datasets/cifar100_bs16.py',
    'mmpretrain::_base_/default_runtime.py',
]

pretrained = 'work_dirs/kdep_r18/student_backbone.pth'
img_size = 224

model = dict(
    backbone=dict(
        type='mmpretrain.ResNet',  # the exported student's keys
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    head=dict(num_classes=100))

# the base's pipelines, up-sampled to img_size
train_pipeline = [
    dict(type='RandomCrop', crop_size=32, padding=4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='Resize', scale=(img_size, img_size)),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='Resize', scale=(img_size, img_size)),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64, num_workers=4, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128,
    num_workers=4,
    dataset=dict(data_root='data/cifar100', pipeline=test_pipeline))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# schedule: 100 epochs, SGD with cosine decay and a short warm-up
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.01,
        by_epoch=True,
        begin=0,
        end=2,
        convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=98, by_epoch=True, begin=2, end=100),
]
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=5)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=64)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10,
                                     max_keep_ckpts=2, save_best='auto'))
