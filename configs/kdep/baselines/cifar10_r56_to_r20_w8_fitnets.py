# Baseline at CIFAR scale: FitNets-style learned projection (student 32 ->
# teacher 64) with MSE, same teacher, student, data and schedule as
# configs/kdep/cifar10_r56_to_r20_w8.py. The projector is thrown away at
# export.
_base_ = ['../cifar10_r56_to_r20_w8.py']

model = dict(
    # its widths (32, 64) inferred from the student and the teacher
    aligner=dict(_delete_=True, type='kdep_mm.ProjectorAligner'),
    distill_loss=dict(type='kdep_mm.FeatureMSELoss', loss_weight=1.))
custom_hooks = []
