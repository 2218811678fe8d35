# Baseline at CIFAR scale: FitNets-style learned projection (student 32 ->
# teacher 64) with MSE, same teacher, student, data and schedule as
# configs/kdep/cifar10_r56_to_r20_w8.py. The projector is thrown away at
# export.
_base_ = ['../cifar10_r56_to_r20_w8.py']

model = dict(
    aligner=dict(
        _delete_=True,
        type='kdep_mm.ProjectorAligner',
        student_channels=32,
        teacher_channels=64),
    distill_loss=dict(type='kdep_mm.FeatureMSELoss', loss_weight=1.))
custom_hooks = []
