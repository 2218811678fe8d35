# Ensemble inductive-bias distillation (LIB-KD / Co-advise) at CIFAR scale:
# a DeiT-Tiny-width ViT (192-d, 12 blocks, 3 heads) on 32x32 images with
# patch 4 (64 patches), a class token + a CNN token (the real CIFAR-10
# ResNet-56, akamaster checkpoint) + an involution token (the RedNet-26
# trained by configs/ensemble/teachers/rednet26_cifar10.py). Store mode:
# both teachers' full logits on 8 stored views per image, one store per
# teacher on the same views. Commands (from the repository root):
#
#   # 0. the involution teacher (writes work_dirs/ensemble/rednet26_cifar10/
#   #    teacher.pth, the path in teacher_ckpts of ./_base_/cifar10_teachers.py)
#   python tools/train_involution_teacher.py \
#       configs/ensemble/teachers/rednet26_cifar10.py
#   # 1. cache both teachers on the same 8 views per training image
#   python tools/cache_teacher.py \
#       'configs/ensemble/deit-tiny_cifar10_from_r56+rednet26.py' \
#       --teacher cnn --store work_dirs/stores/cifar10_r56_logits_v8 \
#       --views 8 --view-mode random --out-size 32 --fields logits
#   python tools/cache_teacher.py \
#       'configs/ensemble/deit-tiny_cifar10_from_r56+rednet26.py' \
#       --teacher involution --store work_dirs/stores/cifar10_rednet26_logits_v8 \
#       --views 8 --out-size 32 --fields logits \
#       --views-from work_dirs/stores/cifar10_r56_logits_v8
#   # 2. train (val: top-1 of the averaged heads on the 10,000 test images)
#   python tools/train.py 'configs/ensemble/deit-tiny_cifar10_from_r56+rednet26.py'
#
# Checkpoint paths: the teachers are only run by step 1 (and by the
# online variant, ..._online.py). Override them for the cache tool with
#   --cfg-options teacher_ckpts.cnn=PATH teacher_ckpts.involution=PATH
# Training reads the checkpoint FILES only to check that the stores were
# cached from them (CheckTeacherStoresHook, sha256); override its copy with
#   --cfg-options custom_hooks.0.teacher_checkpoints.cnn=PATH (or give
#   custom_hooks.0.teacher_checkpoint_sha256=dict(cnn=..., involution=...),
#   the sha256 printed by the cache tool, without the files)
# Store paths: the variable ``stores`` is substituted when the file is read;
# override train_dataloader.dataset.pipeline.1.stores.cnn=DIR (and
# .involution) to move them.
_base_ = [
    '../_base_/kdep_runtime.py',
    '../_base_/datasets/cifar10_jpeg.py',
    './_base_/cifar10_teachers.py',  # teacher_names, teachers, teacher_ckpts
]

num_classes = 10
stores = dict(
    cnn='work_dirs/stores/cifar10_r56_logits_v8',
    involution='work_dirs/stores/cifar10_rednet26_logits_v8')
num_views = 8

data_preprocessor = dict(
    type='kdep_mm.EnsembleDataPreprocessor',
    num_classes=num_classes,
    # the normalisation of both teachers' checkpoints (and the student's)
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
    batch_augments=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]))

model = dict(
    type='kdep_mm.EnsembleDistiller',
    data_preprocessor=data_preprocessor,
    student=dict(
        type='kdep_mm.MultiTokenViT',
        arch='deit-tiny',
        img_size=32,
        patch_size=4,
        num_teacher_tokens=2,
        drop_path_rate=0.1),
    head=dict(
        type='kdep_mm.MultiTokenClsHead',
        num_classes=num_classes,
        in_channels=192,
        num_tokens=3,
        average='logits',
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    teacher_names={{_base_.teacher_names}},
    # store mode: no model.teachers (None); the online variant sets them
    target='per_teacher',
    temperature=1.0,
    teacher_weights=dict(cnn=1.0, involution=1.0),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ])

bgr_mean = data_preprocessor['mean'][::-1]
bgr_std = data_preprocessor['std'][::-1]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='kdep_mm.ApplyStoredEnsembleView',
        stores=stores,
        teacher_names={{_base_.teacher_names}},
        num_views=num_views,
        scale=32),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(
            pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=bgr_mean,
        fill_std=bgr_std),
    dict(type='PackInputs', algorithm_keys=('teacher_outputs', )),
]
train_dataloader = dict(
    batch_size=128, dataset=dict(pipeline=train_pipeline))

# DeiT: lr 5e-4 x batch / 512
# before training (and on resume): every store was cached from this
# train dataset (same images in the same index order), with this decoder
# and from these teacher checkpoints (sha256 of each file, recorded by
# tools/cache_teacher.py; a URL is downloaded into torch's hub cache)
custom_hooks = [
    dict(type='kdep_mm.CheckTeacherStoresHook',
         teacher_checkpoints={{_base_.teacher_ckpts}}),
]

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=5e-4 * 128 / 512, weight_decay=0.05,
                   eps=1e-8, betas=(0.9, 0.999)),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
            '.teacher_tokens': dict(decay_mult=0.0),
            '.teacher_pos_embed': dict(decay_mult=0.0),
        }),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5,
         end=300)
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=10)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=128)
default_hooks = dict(logger=dict(interval=50))
