# TCS-vs-KD study, arm "TCS online": TCS with the ResNet-56 run at every
# step on the stored view (no teacher features packed), coordinate system
# fitted by one online teacher pass over the 5,000 training images; the
# study's data and views (./_base_/cifar10_5k_views.py). k = 32 = min(64,
# 32), tailored down to 16; the study sets prune_interval to a twelfth of
# its schedule (9 prune steps reach 16 by 75% of it).
#   python tools/train.py configs/tcs/cifar10_r56_to_r20_w8_tcs_online_5k.py
_base_ = ['./_base_/cifar10_5k_views.py']

model = dict(
    type='kdep_mm.TCSDistiller',
    teacher_channels=64,
    num_coords=32,
    coord_weight=1.0,
    prune_interval=100,  # 40 iterations / epoch: every 2.5 epochs of 30
    prune_ratio=0.1,
    min_coords=16,
    **_base_.online_distiller)
custom_hooks = [
    dict(type='kdep_mm.CheckTeacherStoresHook',
         teacher_checkpoints={{_base_.teacher_ckpt}}),
    dict(type='kdep_mm.FitBasisHook', num_samples=5000),
    dict(type='kdep_mm.TCSTailoringHook'),
]
