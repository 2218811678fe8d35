# Single-teacher baseline of configs/ensemble/deit-tiny_cifar10_from_r56+
# rednet26.py: the conv teacher only (DeiT-style soft distillation, Touvron
# et al., ICML 2021: one distillation token + head distilled from the real
# CIFAR-10 ResNet-56), everything else the ensemble config's (student,
# DeiT recipe, 8 stored views, the ResNet-56 store of the ensemble).
#   python tools/cache_teacher.py 'configs/ensemble/deit-tiny_cifar10_from_r56.py' \
#       --teacher cnn --store work_dirs/stores/cifar10_r56_logits_v8 \
#       --views 8 --view-mode random --out-size 32 --fields logits
#   python tools/train.py 'configs/ensemble/deit-tiny_cifar10_from_r56.py'
_base_ = ['./deit-tiny_cifar10_from_r56+rednet26.py']

teacher_names = ['cnn']
teachers = dict(_delete_=True, cnn={{_base_.teachers.cnn}})
teacher_ckpts = dict(_delete_=True, cnn={{_base_.teacher_ckpts.cnn}})
teacher_revise_keys = dict(
    _delete_=True, cnn={{_base_.teacher_revise_keys.cnn}})
stores = dict(cnn='work_dirs/stores/cifar10_r56_logits_v8')

model = dict(
    student=dict(num_teacher_tokens=1),
    head=dict(num_tokens=2),
    teacher_names=teacher_names,
    teacher_weights=dict(_delete_=True, cnn=1.0))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='kdep_mm.ApplyStoredView',
        stores=stores,
        teacher_names=teacher_names,
        num_views={{_base_.num_views}},
        scale=32),
    {{_base_.rand_augment}},
    {{_base_.random_erasing}},
    dict(type='PackInputs', algorithm_keys=('teacher_outputs', )),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
custom_hooks = [
    dict(type='kdep_mm.CheckTeacherStoresHook',
         teacher_checkpoints=dict(cnn={{_base_.teacher_ckpts.cnn}})),
]
