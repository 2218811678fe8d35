# TCS ("All You Need in Knowledge Distillation Is a Tailored Coordinate
# System", Zhou, Zhu, Wu, AAAI 2025) at CIFAR scale, KD mode (all 50,000
# labelled training images), store mode: the CIFAR-10 ResNet-56 teacher is
# never built during training; its pooled pre-activation features (64-d)
# come from a teacher store cached once (8 random views per image):
#
#   python tools/cache_teacher.py configs/kdep/cifar10_r56_to_r20.py \
#       --store work_dirs/stores/cifar10_r56_feat_v8 --views 8 \
#       --view-mode random --out-size 32 --fields feat
#   python tools/train.py configs/tcs/cifar10_r56_to_r20_tcs.py
#
# (the KDEP config holds the same teacher, checkpoint and CIFAR-10 train
# set; the store index must be this config's train dataset index.)
# The store path is ONE variable, ``teacher_store`` below, used by both the
# pipeline (ApplyStoredView) and FitBasisHook; to use a store
# elsewhere without editing the file, set the environment variable
# KDEP_TCS_STORE=DIR (read when the config is loaded). Before training the
# hook refuses a store that does not belong to this run (another dataset or
# the same images in another order, another decoder, view count or teacher
# checkpoint, or a pipeline store that is not the hook's), naming the config
# key.
# Narrower student: configs/tcs/cifar10_r56_to_r20_w8_tcs.py (same store).
# Few-shot mode (10 images per class): configs/tcs/cifar10_r56_to_r20_tcs_10shot.py.
# The coordinate system (PCA of the stored features) is fitted from the
# store before the first iteration by FitBasisHook; the tailoring
# schedule is driven by TCSTailoringHook. Export the deployable classifier
# (head folded into one Linear) with
# `tools/export_student.py --as classifier SRC DST`.
_base_ = [
    '../_base_/kdep_runtime.py',
    '../_base_/datasets/cifar10_jpeg.py',
    '../_base_/schedules/sgd_90e_bs128.py',  # as the KDEP CIFAR configs
    # teacher_ckpt: the teacher the store must have been cached with
    # (compared by the sha256 of the file, recorded in the store's manifest
    # by tools/cache_teacher.py)
    '../_base_/teachers/cifar_resnet56.py',
]

teacher_store = '{{$KDEP_TCS_STORE:work_dirs/stores/cifar10_r56_feat_v8}}'
num_views = 8  # --views of the cache command

model = dict(
    type='kdep_mm.TCSDistiller',
    # the data base's (ImageNet statistics, RGB; its num_classes is unused:
    # no one-hot labels, no batch augments)
    data_preprocessor={{_base_.data_preprocessor}},
    student=dict(type='kdep_mm.CIFARResNet', depth=20),
    teacher=None,  # store mode
    teacher_channels=64,
    num_classes=10,
    num_coords=64,  # = min(C_t, C_s)
    coord_weight=1.0,
    # 391 iterations per epoch at batch 128: a prune step every 5 epochs,
    # 10% of the active coordinates each, down to 32 of 64.
    prune_interval=1955,
    prune_ratio=0.1,
    min_coords=32,
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='kdep_mm.ApplyStoredView',
        store=dict(
            root=teacher_store,
            expected=dict(fields={'feat': ((64, ), 'float32')})),
        scale=32),
    dict(type='PackInputs', algorithm_keys=('teacher_feat', )),
]
train_dataloader = dict(
    batch_size=128, dataset=dict(pipeline=train_pipeline))

custom_hooks = [
    dict(type='kdep_mm.FitBasisHook', store=teacher_store,
         num_views=num_views, teacher_checkpoint={{_base_.teacher_ckpt}}),
    dict(type='kdep_mm.TCSTailoringHook'),
]

# validation: top-1 of the student's own (tailored) classifier
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
default_hooks = dict(logger=dict(interval=50))
