# KDEP (He et al., CVPR 2022): ResNet-50 (mmpretrain model zoo, supervised
# IN-1K) -> ResNet-18 on 10% of ImageNet-1K (128 images / class), 90 epochs.
# Train:  bash tools/dist_train.sh configs/kdep/r50_to_r18_in1k.py 8
# Export: python tools/export_student.py work_dirs/r50_to_r18_in1k/epoch_90.pth \
#             work_dirs/r50_to_r18_in1k/student_r18.pth
_base_ = [
    '../_base_/kdep_runtime.py',
    '../_base_/datasets/imagenet_10pct_kdep.py',
    '../_base_/schedules/kdep_sgd_90e.py',
    '../_base_/teachers/in1k_resnet50.py',
    '../_base_/models/kdep.py',  # SVD aligner + PTS, MSE, the fit hook
]

model = dict(
    data_preprocessor={{_base_.data_preprocessor}},
    student=dict(
        type='mmpretrain.ResNet',
        depth=18,
        zero_init_residual=False,
        init_cfg=[
            dict(type='Kaiming', layer=['Conv2d']),
            dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
        ]),
    teacher={{_base_.teacher}},
    teacher_ckpt={{_base_.teacher_ckpt}},
    # pre-ReLU output of the last residual block, globally pooled
    student_feature='layer4.1.relu',
    teacher_feature='layer4.2.relu',
    # the aligner's widths (512, 2048) inferred from the student and teacher
)

# Validation every 5 epochs on 10,000 held-out ImageNet val images (the
# base's heldout_val_dataset): the distillation loss and the collapse
# signal, the fraction of the aligned target's variance the student explains
# (1 - MSE(student, target) / MSE(mean target, target)); a WARNING is logged
# when it stays below 0.1 for 2 validations in a row. One validation costs
# about 3% of a training epoch (forward passes of 10k images).
train_cfg = dict(val_interval=5)
val_dataloader = dict(
    _delete_=True,  # the schedule base sets None
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset={{_base_.heldout_val_dataset}})
val_cfg = dict(_delete_=True)
val_evaluator = [  # replaces the schedule base's None
    dict(type='kdep_mm.DistillLossMetric'),
    dict(type='kdep_mm.ExplainedVarianceMetric', warn_below=0.1, patience=2),
]
