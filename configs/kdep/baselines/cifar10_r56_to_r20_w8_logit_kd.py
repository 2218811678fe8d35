# Baseline at CIFAR scale: Hinton logit KD (KL at temperature 4) from the
# real ResNet-56 into ResNet-20 w8 + a linear head thrown away at export;
# same data (labels unused) and schedule as
# configs/kdep/cifar10_r56_to_r20_w8.py.
_base_ = ['../cifar10_r56_to_r20_w8.py']

model = dict(
    _delete_=True,
    type='kdep_mm.LogitKDDistiller',
    data_preprocessor={{_base_.model.data_preprocessor}},
    student={{_base_.model.student}},
    teacher={{_base_.model.teacher}},
    teacher_ckpt={{_base_.teacher_ckpt}},
    teacher_revise_keys={{_base_.model.teacher_revise_keys}},
    num_classes=10,
    distill_loss=dict(type='kdep_mm.KDLoss', temperature=4., loss_weight=1.))
custom_hooks = []
# logits have no aligned target: validate with the distillation loss only
# (kdep_mm.ExplainedVarianceMetric needs KDEPDistiller's aligned outputs)
val_evaluator = dict(_delete_=True, type='kdep_mm.DistillLossMetric')
test_evaluator = dict(_delete_=True, type='kdep_mm.DistillLossMetric')
