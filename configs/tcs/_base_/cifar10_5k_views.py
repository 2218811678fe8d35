# Shared by the five arms of the TCS-vs-KD study (benchmarks/tcs_study.py,
# issue 19): CIFAR-10, 5,000 labelled training images (500 per class), the
# real ResNet-56 teacher, a ResNet-20 w8 student (32-d), batch 128, SGD.
# Every arm reads the SAME stored views (kdep_mm.ApplyStoredView: 8 random
# crop boxes + flips per image, cached once by tools/cache_teacher.py), so
# the arms differ in their loss only, not in their augmentation; only the
# TCS store arm also packs the stored teacher features.
#
# The lists and the store (the study writes and caches them itself):
#   python benchmarks/tcs_study.py --write-splits   # train_5k.txt, val_1k.txt
#   python tools/cache_teacher.py configs/kdep/cifar10_r56_to_r20.py \
#       --store work_dirs/tcs_study/store_v8 --views 8 --view-mode random \
#       --out-size 32 --fields feat \
#       --cfg-options train_dataloader.dataset.ann_file=$PWD/work_dirs/tcs_study/splits/train_5k.txt
# Standalone training of one arm: KDEP_TCS_STORE=DIR moves the store,
# KDEP_TCS_TRAIN_LIST=FILE the training list (read when the file is loaded).
# The study replaces the epoch schedule below by an iteration schedule of
# the same samples seen for every arm (see configs/tcs/study/tcs_study.py).
_base_ = [
    '../../_base_/kdep_runtime.py',
    '../../_base_/datasets/cifar10_jpeg.py',
    '../../_base_/teachers/cifar_resnet56.py',
]

teacher_store = '{{$KDEP_TCS_STORE:work_dirs/tcs_study/store_v8}}'
train_list = \
    '{{$KDEP_TCS_TRAIN_LIST:work_dirs/tcs_study/splits/train_5k.txt}}'
num_views = 8
student = dict(type='kdep_mm.CIFARResNet', depth=20, base_channels=8)
student_channels = 32
# what every online distiller of the study shares (its model dict adds type
# and loss): the data preprocessor, the student and the real ResNet-56
online_distiller = dict(
    data_preprocessor={{_base_.data_preprocessor}},
    student=student,
    student_channels=student_channels,
    teacher={{_base_.teacher}},
    teacher_ckpt={{_base_.teacher_ckpt}},
    teacher_revise_keys={{_base_.teacher_revise_keys}},
    num_classes=10)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='kdep_mm.ApplyStoredView', store=dict(root=teacher_store),
         scale=32),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=128,
    dataset=dict(ann_file=train_list, pipeline=train_pipeline))
# the views must be those of this dataset (index order), decoder and teacher
custom_hooks = [
    dict(type='kdep_mm.CheckTeacherStoresHook',
         teacher_checkpoints={{_base_.teacher_ckpt}}),
]

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=True, T_max=30)
train_cfg = dict(by_epoch=True, max_epochs=30, val_interval=10)
val_cfg = dict()
test_cfg = dict()
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
auto_scale_lr = dict(base_batch_size=128)
default_hooks = dict(logger=dict(interval=10))
