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
    './_base_/deit_recipe.py',  # student, targets, augmentation, schedule
]

num_classes = 10
stores = dict(
    cnn='work_dirs/stores/cifar10_r56_logits_v8',
    involution='work_dirs/stores/cifar10_rednet26_logits_v8')
num_views = 8

# the recipe's preprocessor with this data base's ImageNet normalisation
data_preprocessor = dict(
    type='kdep_mm.EnsembleDataPreprocessor',
    batch_augments={{_base_.model.data_preprocessor.batch_augments}})
model = dict(
    data_preprocessor=dict(
        num_classes=num_classes,
        # the normalisation of both teachers' checkpoints (and the student's)
        mean={{_base_.data_preprocessor.mean}},
        std={{_base_.data_preprocessor.std}}),
    student=dict(img_size=32, patch_size=4),
    head=dict(num_classes=num_classes),
    teacher_names={{_base_.teacher_names}})

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='kdep_mm.ApplyStoredView',
        stores=stores,
        teacher_names={{_base_.teacher_names}},
        num_views=num_views,
        scale=32),
    {{_base_.rand_augment}},
    {{_base_.random_erasing}},
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

optim_wrapper = dict(optimizer=dict(lr=5e-4 * 128 / 512))
auto_scale_lr = dict(base_batch_size=128)
default_hooks = dict(logger=dict(interval=50))
