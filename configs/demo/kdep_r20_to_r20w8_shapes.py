# Demo stage (c): KDEP distillation (labels unused) of a narrow student,
# CIFAR ResNet-20 at half width (8/16/32 channels, 32-d pooled feature), from
# the demo's CIFAR ResNet-20 teacher (64-d): SVD keeps the teacher's top-32
# principal directions, power-temperature scaling (T = 0.1, n = 3) evens
# them out and an MSE matches the student's pre-ReLU pooled feature to them.
#
# tools/kdep_demo.py sets ``model.teacher_ckpt`` (the checkpoint of stage
# (b), or --teacher-ckpt), the annotation file of the unlabelled subset, the
# epochs and the seed. Afterwards the student is exported with
# ``kdep_mm.apis.export.export_student`` (``student.*`` -> ``backbone.*``).
_base_ = [
    '../_base_/kdep_runtime.py',
    '../_base_/datasets/synthetic_shapes.py',
    '../_base_/models/kdep.py',  # SVD aligner + PTS, MSE, the fit hook
]

model = dict(
    data_preprocessor={{_base_.data_preprocessor}},
    student=dict(
        type='kdep_mm.CIFARResNet',
        depth=20,
        base_channels=8,
        out_indices=(2, )),
    teacher=dict(
        type='ImageClassifier',
        backbone=dict(
            type='kdep_mm.CIFARResNet',
            depth=20,
            base_channels=16,
            out_indices=(2, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=10,
            in_channels=64,
            loss=dict(type='CrossEntropyLoss', loss_weight=1.0))),
    teacher_ckpt='work_dirs/kdep_demo/teacher/epoch_10.pth',
    # for the classic akamaster checkpoints ('module.conv1.weight', ...,
    # 'module.linear.weight') the demo uses
    # [('^module\\.linear\\.', 'head.fc.'), ('^module\\.', 'backbone.')]
    teacher_revise_keys=[(r'^module\.', '')],
    # pre-ReLU output of the last residual block of each (inferred when None:
    # 'layer3.2.relu' for ResNet-20)
    student_feature=None,
    teacher_feature=None,
    # the aligner's widths (32, 64) inferred from the student and the teacher
    # KDEP uses 20 for 2048-d ResNet-50 teachers; 5 (with lr 0.02) trains
    # this 32-d student stably (weight 20 at lr 0.05 collapses it)
    distill_loss=dict(loss_weight=5.),
)

test_dataloader = None
test_evaluator = None
test_cfg = None

# Validation every 5 epochs on the held-out val split (never distilled on):
# the distillation loss and the collapse signal, the fraction of the aligned
# target's variance the student explains (1 - MSE(student, target) /
# MSE(mean target, target)); a WARNING is logged when it stays below 0.1
# for 2 validations in a row. tools/kdep_demo.py reports the last value.
val_interval = 5
val_dataloader = dict(
    _delete_=True,  # the data base sets None
    batch_size=200,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset={{_base_.test_dataloader.dataset}})
val_cfg = dict(_delete_=True)
val_evaluator = [
    dict(type='kdep_mm.DistillLossMetric'),
    dict(type='kdep_mm.ExplainedVarianceMetric', warn_below=0.1, patience=2),
]

max_epochs = 20
optim_wrapper = dict(
    optimizer=dict(
        type='SGD', lr=0.02, momentum=0.9, weight_decay=5e-4, nesterov=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs,
         eta_min=1e-3, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=val_interval)
auto_scale_lr = dict(base_batch_size=32, enable=False)

default_hooks = dict(
    logger=dict(interval=10),
    # one checkpoint, at the end
    checkpoint=dict(interval=max_epochs))
