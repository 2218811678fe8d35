# Involution teacher for CIFAR-10: an mmpretrain ImageClassifier with a
# RedNet-26 backbone (Li et al., "Involution: Inverting the Inherence of
# Convolution for Visual Recognition", CVPR 2021) sized for 32x32 images,
# trained from scratch on the CIFAR-10 JPEG train split and scored on the
# 10,000 test images. One command trains, tests and exports it:
#
#   python tools/train_involution_teacher.py \
#       configs/ensemble/teachers/rednet26_cifar10.py
# (writes work_dirs/ensemble/rednet26_cifar10/teacher.pth, the teacher of
# configs/ensemble/*cifar10*, and teacher_metrics.json). It does not fit on
# the 2-core CPU (one batch of 256 takes about 25 s there, an epoch about
# 80 min; docs/ensemble.md): benchmarks/ensemble_teacher_gpu.sh runs this
# command on one GPU with the epochs fitted to its time budget.
#
# Architecture (../_base_/cifar10_teachers.py, shared with the ensemble
# configs so that teacher.pth loads strictly there):
#   * stem='cifar' (one 3x3 conv, stride 1, no max-pool) and strides
#     (1, 2, 2, 2): the stages run at 32/16/8/4 px, as a CIFAR ResNet's;
#   * RedNet-26 blocks (1, 2, 4, 1), base_channels=32 (two 16-channel
#     involution groups in stage 1), stem_channels=32; stage outputs
#     128/256/512/1024; 1.81M parameters (the ResNet-56 teacher has 0.85M).
# Schedule, a fast-CIFAR recipe with nothing tuned on the test split (and
# no sweep): batch 256, SGD + Nesterov momentum 0.9, wd 5e-4, one-cycle lr
# (peak 0.2 = 0.1 x 256/128, 25% warm-up, cosine to 0.2/25/1e4), label
# smoothing 0.1, random crop with 4-pixel padding + horizontal flip (the
# data base's pipeline). ``epochs`` below is the default length; the GPU
# script overrides train_cfg.max_iters and param_scheduler.0.total_steps
# together (iters_per_epoch x the epochs that fit).
_base_ = [
    '../../_base_/kdep_runtime.py',
    '../../_base_/datasets/cifar10_jpeg.py',
    # the architecture: teachers.involution, shared with the ensemble
    # configs that distill from this teacher
    '../_base_/cifar10_teachers.py',
]

# the ensemble configs read the teacher from <work_dir>/teacher.pth
work_dir = './work_dirs/ensemble/rednet26_cifar10'

batch_size = 256
iters_per_epoch = 196  # ceil(50,000 / 256)
epochs = 30
max_iters = epochs * iters_per_epoch

model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(
        type='ClsDataPreprocessor',
        num_classes=10,
        mean={{_base_.data_preprocessor.mean}},
        std={{_base_.data_preprocessor.std}},
        to_rgb=True),
    backbone={{_base_.teachers.involution.backbone}},
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels={{_base_.teachers.involution.head.in_channels}},
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, )))

train_dataloader = dict(batch_size=batch_size, num_workers=1)
val_dataloader = dict(batch_size=250, num_workers=1)
test_dataloader = val_dataloader

optim_wrapper = dict(
    optimizer=dict(
        type='SGD', lr=0.2, momentum=0.9, weight_decay=5e-4, nesterov=True))
param_scheduler = [
    dict(type='OneCycleLR', eta_max=0.2, total_steps=max_iters,
         pct_start=0.25, by_epoch=False),
]
train_cfg = dict(
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=batch_size, enable=False)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(
        type='CheckpointHook',
        by_epoch=False,
        interval=max_iters,
        max_keep_ckpts=1,
        save_last=True,
        backend_args=dict(backend='atomic_local')))
log_processor = dict(by_epoch=False)
