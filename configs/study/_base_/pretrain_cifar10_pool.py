# Shared by every pre-training arm of the KDEP study (configs/study/pretrain):
# runtime, the CIFAR-10 pool, the teacher and the student, the schedule.
# benchmarks/kdep_study.py loads an arm config, points ``ann_file`` at the
# pool list it wrote (benchmarks/study_results/splits/cifar10_pool_{100,10}.txt),
# swaps in the student variant and the seed, and runs it with an mmengine
# Runner. To run an arm by hand on the study's lists (absolute paths):
#   python tools/train.py configs/study/pretrain/f_kdep_10.py --cfg-options \
#       train_dataloader.dataset.ann_file=$PWD/benchmarks/study_results/splits/cifar10_pool_10.txt
# (a KDEP arm then fits its SVD basis itself, into its work dir).
# The teacher (``teacher``, ``teacher_ckpt``, ``teacher_revise_keys``): the
# real CIFAR-10 ResNet-56, ../../_base_/teachers/cifar_resnet56.py.
_base_ = [
    '../../_base_/kdep_runtime.py',
    '../../_base_/teachers/cifar_resnet56.py',
    '../../_base_/imagenet_normalization.py',  # data_preprocessor
]

# ------------------------------------------------------------------ data
# The study's "100%" is a class-balanced pool drawn from CIFAR-10 train
# (configs/study/study.py: pool_per_class); "10%" is a class-balanced tenth
# of that pool. Both lists are written by the study script.
data_root = 'data/shared/cifar10_jpeg/'
pool_100 = 'meta/study_pool_100.txt'
pool_10 = 'meta/study_pool_10.txt'

data_preprocessor = dict(num_classes=10)  # + the base's normalisation

train_pipeline = [
    dict(type='LoadImageFromFile'),
    # pad with the mean colour (BGR): black borders made KDEP collapse to
    # the mean target at small scale (tools/kdep_demo.py)
    dict(type='RandomCrop', crop_size=32, padding=4, pad_val=(104, 116, 124)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        data_prefix='train',
        ann_file=pool_100,
        with_label=True,
        pipeline=train_pipeline))
val_dataloader = None
val_evaluator = None
val_cfg = None
test_dataloader = None
test_evaluator = None
test_cfg = None

# --------------------------------------------------------------- models
# The student: CIFAR ResNet-20 (64-d). The study's narrow student is the same
# net with base_channels=8 (32-d); the script swaps it in (study.py).
student = dict(type='kdep_mm.CIFARResNet', depth=20, base_channels=16)
student_channels = 64

# ------------------------------------------------------------- schedule
# Same budget in epochs for every arm: SGD, momentum 0.9, wd 5e-4, one
# warm-up epoch (linear from 0.1x) then cosine to 0. Each arm sets its lr.
max_epochs = 10  # unused by the study (it sets an iteration schedule)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs,
         eta_min=0., convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=32, enable=False)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
