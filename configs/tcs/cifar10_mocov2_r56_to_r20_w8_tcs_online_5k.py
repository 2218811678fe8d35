# TCS from a SELF-SUPERVISED teacher (the paper's premise): the backbone of
# a MoCo v2 model pre-trained by mmpretrain without labels
# (configs/tcs/ssl/mocov2_cifar_resnet56_cifar10.py, mmpretrain's MoCo v2
# recipe), distilled online into ResNet-20 w8 on the TCS study's 5,000
# labelled images and stored views (./_base_/cifar10_5k_views.py), as
# ./cifar10_r56_to_r20_w8_tcs_online_5k.py does from the supervised
# ResNet-56. The teacher is the bare backbone (no head: TCS needs only its
# pooled pre-activation feature); the checkpoint is mmpretrain's MoCo
# checkpoint as saved, mapped by teacher_revise_keys: every key outside
# backbone.* is dropped (neck, the momentum encoder encoder_k.*, queue),
# backbone.* loses its prefix, then the load is strict.
#   KDEP_TCS_SSL_TEACHER=work_dirs/mocov2_cifar_resnet56/epoch_200.pth \
#       python tools/train.py configs/tcs/cifar10_mocov2_r56_to_r20_w8_tcs_online_5k.py
_base_ = [
    './cifar10_r56_to_r20_w8_tcs_online_5k.py',
    './_base_/teachers/ssl_cifar_resnet56.py',
]

ssl_teacher_ckpt = \
    '{{$KDEP_TCS_SSL_TEACHER:work_dirs/mocov2_cifar_resnet56/epoch_200.pth}}'

model = dict(
    teacher=dict(_delete_=True, **_base_.ssl_backbone),
    teacher_ckpt=ssl_teacher_ckpt,
    teacher_revise_keys=[(r'^(?!backbone\.)', None),
                         (r'^backbone\.', '')],
    teacher_channels={{_base_.ssl_channels}},
)
custom_hooks = [
    dict(type='kdep_mm.CheckTeacherStoresHook',
         teacher_checkpoints=ssl_teacher_ckpt),
    dict(type='kdep_mm.FitBasisHook', num_samples=5000),
    dict(type='kdep_mm.TCSTailoringHook'),
]
