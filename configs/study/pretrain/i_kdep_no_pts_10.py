# Study arm (i), KDEP ablation: arm (f) without power temperature scaling
# (target = (f_t - mu) @ V_k, raw PCA coordinates). Same data, budget and
# sweep grid as (f); lr chosen by its own sweep.
_base_ = ['./f_kdep_10.py']

study_arm = dict(kind='kdep', labels=False, data='10%')
model = dict(aligner=dict(power=None))
