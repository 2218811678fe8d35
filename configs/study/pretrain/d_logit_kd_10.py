# Study arm (d): Hinton logit KD (KL at T = 4) from the ResNet-56 into the
# student + a linear head (thrown away at export), 10% of the pool, labels
# unused. Same optimiser as the KDEP arms.
_base_ = ['../_base_/distill_cifar10_pool.py']

study_arm = dict(kind='logit_kd', labels=False, data='10%')

model = dict(
    type='kdep_mm.LogitKDDistiller',
    student_channels={{_base_.student_channels}},
    num_classes=10,
    distill_loss=dict(type='kdep_mm.KDLoss', temperature=4., loss_weight=1.))
