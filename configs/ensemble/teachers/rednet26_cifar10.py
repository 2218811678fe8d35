# Involution teacher for CIFAR-10: an mmpretrain ImageClassifier with a
# RedNet-26 backbone (Li et al., "Involution: Inverting the Inherence of
# Convolution for Visual Recognition", CVPR 2021), trained from scratch on the
# CIFAR-10 JPEG train split and scored on the 10,000 test images.
#
#   python tools/train_involution_teacher.py \
#       configs/ensemble/teachers/rednet26_cifar10.py
# (trains with tools/train.py's runner, evaluates on the test split and
# writes work_dirs/ensemble/rednet26_cifar10/teacher.pth and
# teacher_metrics.json, the teacher of configs/ensemble/*cifar10*); plain
#   python tools/train.py configs/ensemble/teachers/rednet26_cifar10.py
# trains and validates on the test split once, at the end.
#
# Reduced so that it trains on 2 CPU cores in about 25 minutes (the
# involution multiplies K*K = 49 unfolded copies of each activation, which
# is memory bound on a CPU):
#   * width: base_channels=16 (the minimum: one involution group of 16
#     channels in stage 1), stem_channels=32; stage outputs 64/128/256/512,
#     0.46M parameters (RedNet-26 at ImageNet width, base 64, has 7.18M
#     without its 1000-class head);
#   * stem='cifar' (3x3 conv, stride 1, no max-pool) and strides (2, 2, 2, 1):
#     stages at 16/8/4/4 pixels, 3.5x fewer involution multiply-adds than
#     (1, 2, 2, 2) at 32/16/8/4;
#   * a short schedule: 700 iterations of batch 64 (0.9 epoch), SGD +
#     Nesterov, 50 iterations of linear warm-up then cosine.
# Measured (2 shared CPU cores, OMP_NUM_THREADS=1, seed 0): 47.5% top-1 on
# the 10,000 test images, 24.7 min of training; see docs/ensemble.md
# ("Involution teacher"). Use OMP_NUM_THREADS=1 on a busy CPU.
# For a full-width, full-resolution teacher (GPU), override e.g.
#   --cfg-options model.backbone.base_channels=64 \
#       model.backbone.stem_channels=64 model.backbone.strides="(1,2,2,2)" \
#       model.head.in_channels=2048 train_cfg.max_iters=N \
#       train_cfg.val_interval=N param_scheduler.1.end=N ...
_base_ = [
    '../../_base_/kdep_runtime.py',
    '../../_base_/datasets/cifar10_jpeg.py',
    # the architecture: teachers.involution, shared with the ensemble
    # configs that distill from this teacher
    '../_base_/cifar10_teachers.py',
]

# the ensemble configs read the teacher from <work_dir>/teacher.pth
work_dir = './work_dirs/ensemble/rednet26_cifar10'

max_iters = 700
batch_size = 64

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
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, )))

train_dataloader = dict(batch_size=batch_size, num_workers=1)
val_dataloader = dict(batch_size=250, num_workers=1)
test_dataloader = val_dataloader

optim_wrapper = dict(
    optimizer=dict(
        type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
         end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50,
         end=max_iters, eta_min=1e-4),
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
