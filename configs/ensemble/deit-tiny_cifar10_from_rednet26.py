# Single-teacher baseline of configs/ensemble/deit-tiny_cifar10_from_r56+
# rednet26.py: the involution teacher only (one teacher token + head, as
# DeiT's distillation token, distilled from the RedNet-26 that
# configs/ensemble/teachers/rednet26_cifar10.py trains), everything else the
# ensemble config's (student, DeiT recipe, 8 stored views, the RedNet store
# of the ensemble, cached on the ResNet-56 store's views).
#   python tools/cache_teacher.py \
#       'configs/ensemble/deit-tiny_cifar10_from_rednet26.py' \
#       --teacher involution --store work_dirs/stores/cifar10_rednet26_logits_v8 \
#       --views 8 --out-size 32 --fields logits \
#       --views-from work_dirs/stores/cifar10_r56_logits_v8
#   python tools/train.py 'configs/ensemble/deit-tiny_cifar10_from_rednet26.py'
_base_ = ['./deit-tiny_cifar10_from_r56+rednet26.py']

teacher_names = ['involution']
teachers = dict(_delete_=True, involution={{_base_.teachers.involution}})
teacher_ckpts = dict(
    _delete_=True, involution={{_base_.teacher_ckpts.involution}})
teacher_revise_keys = dict(
    _delete_=True, involution={{_base_.teacher_revise_keys.involution}})
stores = dict(involution='work_dirs/stores/cifar10_rednet26_logits_v8')

model = dict(
    student=dict(num_teacher_tokens=1),
    head=dict(num_tokens=2),
    teacher_names=teacher_names,
    teacher_weights=dict(_delete_=True, involution=1.0))
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
         teacher_checkpoints=dict(
             involution={{_base_.teacher_ckpts.involution}})),
]
