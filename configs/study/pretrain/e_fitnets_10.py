# Study arm (e): FitNets-style feature KD -- a learned linear projector (a
# 1x1 conv on the pooled feature) from the student's feature to the
# teacher's raw 64-d feature, MSE; 10% of the pool, labels unused; the
# projector is thrown away at export. Same optimiser as the KDEP arms.
_base_ = ['../_base_/distill_cifar10_pool.py']

study_arm = dict(kind='fitnets', labels=False, data='10%')

model = dict(
    type='kdep_mm.KDEPDistiller',
    aligner=dict(
        type='kdep_mm.ProjectorAligner',
        student_channels={{_base_.student_channels}},
        teacher_channels=64),
    distill_loss=dict(type='kdep_mm.FeatureMSELoss', loss_weight=1.))
