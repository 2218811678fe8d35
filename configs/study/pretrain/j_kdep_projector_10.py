# Study arm (j), KDEP ablation: a FitNets-style learned projector (student
# 32/64-d -> teacher 64-d, thrown away at export) in place of the SVD
# alignment, PTS kept on the (uncentred) teacher feature: target =
# PTS(f_t). Compared with (f) it isolates the SVD alignment; with (e)
# (FitNets: projector, raw target) it isolates PTS given a projector.
_base_ = ['./e_fitnets_10.py']

study_arm = dict(kind='fitnets', labels=False, data='10%')
model = dict(
    aligner=dict(temperature=0.1, power=3),
    distill_loss=dict(loss_weight=5.))
