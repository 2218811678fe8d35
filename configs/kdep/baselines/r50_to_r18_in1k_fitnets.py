# Baseline: FitNets-style learned projection (student 512 -> teacher 2048,
# a 1x1 conv on pooled features == Linear) with MSE, same data and schedule
# as KDEP. The projector is trained and thrown away at export.
_base_ = ['../r50_to_r18_in1k.py']

model = dict(
    # its widths (512, 2048) inferred from the student and the teacher
    aligner=dict(_delete_=True, type='kdep_mm.ProjectorAligner'),
    distill_loss=dict(type='kdep_mm.FeatureMSELoss', loss_weight=1.))
custom_hooks = []
