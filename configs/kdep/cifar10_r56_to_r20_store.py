# KDEP at CIFAR scale, store mode: cifar10_r56_to_r20.py without the
# teacher in the loop. The ResNet-56's pooled pre-ReLU features (64-d) of 8
# random views per training image are cached once; the SVD basis is fitted
# from the store (the same float64 fit) and the student trains on the
# stored views:
#
#   python tools/cache_teacher.py configs/kdep/cifar10_r56_to_r20.py \
#       --store work_dirs/stores/cifar10_r56_feat_v8 --views 8 \
#       --view-mode random --out-size 32 --fields feat
#   python tools/train.py configs/kdep/cifar10_r56_to_r20_store.py
#
# (the same store as configs/tcs/cifar10_r56_to_r20_tcs.py.) The store path
# is ONE variable, ``teacher_store`` (or KDEP_STORE=DIR when the config is
# loaded), for the pipeline and FitBasisHook; before training the hook
# refuses a store that does not belong to this run (another dataset or image
# order, decoder, view count, teacher checkpoint or feature width), naming
# the config key. The basis file records the store's teacher fingerprint.
# No validation: the held-out images have no stored teacher features.
_base_ = ['./cifar10_r56_to_r20.py']

teacher_store = '{{$KDEP_STORE:work_dirs/stores/cifar10_r56_feat_v8}}'
num_views = 8  # --views of the cache command

model = dict(
    teacher=None,  # store mode
    teacher_ckpt=None,
    teacher_revise_keys=None,
    aligner=dict(teacher_channels=64),  # no teacher to infer it from
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
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

custom_hooks = [
    dict(type='kdep_mm.FitBasisHook', store=teacher_store,
         num_views=num_views, basis_file='svd_basis.pth',
         teacher_checkpoint={{_base_.teacher_ckpt}}),
]

val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None
