# Study arm (e): FitNets-style feature KD -- a learned linear projector (a
# 1x1 conv on the pooled feature) from the student's feature to the
# teacher's raw 64-d feature, MSE; 10% of the pool, labels unused; the
# projector is thrown away at export. Same optimiser as the KDEP arms.
_base_ = ['../_base_/pretrain_cifar10_pool.py']

study_arm = dict(kind='fitnets', labels=False, data='10%')

model = dict(
    type='kdep_mm.KDEPDistiller',
    data_preprocessor={{_base_.data_preprocessor}},
    student={{_base_.student}},
    teacher={{_base_.teacher}},
    teacher_ckpt={{_base_.teacher_ckpt}},
    teacher_revise_keys={{_base_.teacher_revise_keys}},
    aligner=dict(
        type='kdep_mm.ProjectorAligner',
        student_channels={{_base_.student_channels}},
        teacher_channels=64),
    distill_loss=dict(type='kdep_mm.FeatureMSELoss', loss_weight=1.))
train_dataloader = dict(dataset=dict(ann_file={{_base_.pool_10}}))
optim_wrapper = dict(optimizer=dict(lr=0.02))
