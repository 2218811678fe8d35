# KDEP at CIFAR scale: the real CIFAR-10 ResNet-56 (He et al. design, 64-d
# pooled feature; ../_base_/teachers/cifar_resnet56.py) -> ResNet-20 (64-d;
# the SVD basis is a full rotation, PTS still applies), labels unused.
#   python tools/train.py configs/kdep/cifar10_r56_to_r20.py
_base_ = [
    '../_base_/kdep_runtime.py',
    '../_base_/datasets/cifar10_jpeg.py',
    '../_base_/teachers/cifar_resnet56.py',
    '../_base_/models/kdep.py',  # SVD aligner + PTS, MSE, the fit hook
    '../_base_/schedules/sgd_90e_bs128.py',
]

model = dict(
    # the data base's (ImageNet statistics, RGB; its num_classes is unused:
    # no one-hot labels, no batch augments)
    data_preprocessor={{_base_.data_preprocessor}},
    student=dict(type='kdep_mm.CIFARResNet', depth=20),
    teacher={{_base_.teacher}},
    teacher_ckpt={{_base_.teacher_ckpt}},
    teacher_revise_keys={{_base_.teacher_revise_keys}},
    # the aligner's widths (64, 64) inferred from the student and the teacher
)

# KDEP's schedule scaled to batch 128 (the schedule base)
train_dataloader = dict(batch_size=128)

# Validation every 10 epochs on the held-out CIFAR-10 test images (never
# trained on): the distillation loss, and the collapse signal: the fraction
# of the aligned target's variance the student explains (1 - MSE(student,
# target) / MSE(mean target, target)); a WARNING is logged when it stays
# below 0.1 for 2 validations in a row.
val_evaluator = [
    dict(type='kdep_mm.DistillLossMetric'),
    dict(type='kdep_mm.ExplainedVarianceMetric', warn_below=0.1, patience=2),
]
test_evaluator = val_evaluator
default_hooks = dict(logger=dict(interval=50))
