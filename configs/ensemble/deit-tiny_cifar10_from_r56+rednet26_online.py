# Online variant of configs/ensemble/deit-tiny_cifar10_from_r56+rednet26.py:
# both teachers are built, loaded strictly from teacher_ckpts and run in the
# loop (eval, no_grad, hidden from state_dict / optimizer) on the exact
# (RandAugmented, erased, Mixed/CutMixed) images the student sees; no store.
#   python tools/train.py \
#       'configs/ensemble/deit-tiny_cifar10_from_r56+rednet26_online.py' \
#       --cfg-options model.teacher_ckpts.involution=PATH
_base_ = ['./deit-tiny_cifar10_from_r56+rednet26.py']

model = dict(
    teachers={{_base_.teachers}},
    teacher_ckpts={{_base_.teacher_ckpts}},
    teacher_revise_keys={{_base_.teacher_revise_keys}})

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    {{_base_.rand_augment}},
    {{_base_.random_erasing}},
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
custom_hooks = []  # no store to check
