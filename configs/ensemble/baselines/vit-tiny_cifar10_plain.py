# No-teacher baseline of configs/ensemble/deit-tiny_cifar10_from_r56+
# rednet26.py: the same ViT (DeiT-Tiny width, 192-d, 12 blocks, 3 heads,
# patch 4 on 32x32) as a plain mmpretrain VisionTransformer with one class
# token and one head, trained with the class head's loss only (label
# smoothing 0.1) and the same DeiT recipe (Mixup/CutMix, RandAugment,
# random erasing, AdamW, 5 warm-up epochs + cosine to 300). No store: it
# sees fresh RandomResizedCrop + flip views of the same distribution as the
# stored ones (crop area 0.08-1, aspect 3/4-4/3, bilinear).
#   python tools/train.py configs/ensemble/baselines/vit-tiny_cifar10_plain.py
# (outside configs/ensemble/*.py, whose configs are all EnsembleDistillers)
_base_ = [
    '../../_base_/kdep_runtime.py',
    '../../_base_/datasets/cifar10_jpeg.py',
    '../_base_/deit_recipe.py',  # augmentation and schedule
]

num_classes = 10
model = dict(
    _delete_=True,
    type='ImageClassifier',
    data_preprocessor=dict(
        type='ClsDataPreprocessor',
        num_classes=num_classes,
        mean={{_base_.data_preprocessor.mean}},
        std={{_base_.data_preprocessor.std}},
        to_rgb=True,
        batch_augments={{_base_.model.data_preprocessor.batch_augments}}),
    backbone=dict(
        type='VisionTransformer',
        arch='deit-tiny',
        img_size=32,
        patch_size=4,
        drop_path_rate={{_base_.model.student.drop_path_rate}}),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=num_classes,
        in_channels=192,  # deit-tiny's embed_dims
        loss={{_base_.model.head.loss}}),
    init_cfg={{_base_.model.init_cfg}})

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    {{_base_.rand_augment}},
    {{_base_.random_erasing}},
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=128, dataset=dict(pipeline=train_pipeline))

# DeiT: lr 5e-4 x batch / 512
optim_wrapper = dict(optimizer=dict(lr=5e-4 * 128 / 512))
auto_scale_lr = dict(base_batch_size=128)
default_hooks = dict(logger=dict(interval=50))
