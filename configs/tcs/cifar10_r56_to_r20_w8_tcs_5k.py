# TCS-vs-KD study, arm "TCS from the store": the TCS online arm
# (./cifar10_r56_to_r20_w8_tcs_online_5k.py) with no teacher built: the
# ResNet-56's pooled features of the 8 stored views per image come from the
# store (cached once, its CPU time reported apart), the coordinate system is
# fitted from the store's features (all views).
#   python tools/train.py configs/tcs/cifar10_r56_to_r20_w8_tcs_5k.py
_base_ = ['./cifar10_r56_to_r20_w8_tcs_online_5k.py']

model = dict(
    teacher=None,
    teacher_ckpt=None,
    teacher_revise_keys=None,
)
train_pipeline = _base_.train_pipeline
train_pipeline[1].store.expected = dict(fields={'feat': ((64, ), 'float32')})
train_pipeline[2].algorithm_keys = ('teacher_feat', )
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
custom_hooks = [
    dict(type='kdep_mm.FitBasisHook', store=_base_.teacher_store,
         num_views=_base_.num_views,
         teacher_checkpoint=_base_.teacher_ckpt),
    dict(type='kdep_mm.TCSTailoringHook'),
]
