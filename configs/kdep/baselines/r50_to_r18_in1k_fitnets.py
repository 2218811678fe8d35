# Baseline: FitNets-style learned projection (student 512 -> teacher 2048,
# a 1x1 conv on pooled features == Linear) with MSE, same data and schedule
# as KDEP. The projector is trained and thrown away at export.
_base_ = ['../r50_to_r18_in1k.py']

model = dict(
    aligner=dict(
        _delete_=True,
        type='kdep_mm.ProjectorAligner',
        student_channels=512,
        teacher_channels=2048),
    distill_loss=dict(type='kdep_mm.FeatureMSELoss', loss_weight=1.))
custom_hooks = []
