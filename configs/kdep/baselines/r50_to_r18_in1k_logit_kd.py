# Baseline: Hinton logit KD (KL at temperature 4) into ResNet-18 + a linear
# head that is thrown away at export; same data and schedule as KDEP.
_base_ = ['../r50_to_r18_in1k.py']

model = dict(
    _delete_=True,
    type='kdep_mm.LogitKDDistiller',
    data_preprocessor={{_base_.data_preprocessor}},
    student={{_base_.model.student}},
    teacher={{_base_.model.teacher}},
    teacher_ckpt={{_base_.teacher_ckpt}},
    num_classes=1000,
    distill_loss=dict(type='kdep_mm.KDLoss', temperature=4., loss_weight=1.))
custom_hooks = []
# logits have no aligned target: validate with the distillation loss only
# (kdep_mm.ExplainedVarianceMetric needs KDEPDistiller's aligned outputs)
val_evaluator = dict(_delete_=True, type='kdep_mm.DistillLossMetric')
