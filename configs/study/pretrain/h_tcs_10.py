# Study arm (h): TCS ("All You Need in Knowledge Distillation Is a Tailored
# Coordinate System", AAAI 2025) on 10% of the pool WITH labels (TCS is a KD
# method: CE on the student's tailored coordinates + MSE to the teacher's PCA
# coordinates), online teacher. k = min(C_t, C_s) coordinates, a prune step
# (10% of the active coordinates) every epoch of the 10% pool (16 iterations
# at 500 images / batch 32), never below k / 2. The coordinate system is
# fitted before training (FitBasisHook, one teacher pass over the
# training data; the study hands it the same teacher moments as KDEP's
# basis). Export keeps the student backbone only.
_base_ = ['../_base_/distill_cifar10_pool.py']

study_arm = dict(kind='tcs', labels=True, data='10%')

model = dict(
    type='kdep_mm.TCSDistiller',
    student_channels={{_base_.student_channels}},
    teacher_channels=64,
    num_classes=10,
    num_coords={{_base_.student_channels}},
    coord_weight=1.0,
    prune_interval=16,
    prune_ratio=0.1,
    min_coords=32,
)
custom_hooks = [
    dict(type='kdep_mm.FitBasisHook', num_samples=None),
    dict(type='kdep_mm.TCSTailoringHook'),
]
optim_wrapper = dict(optimizer=dict(lr=0.05))
