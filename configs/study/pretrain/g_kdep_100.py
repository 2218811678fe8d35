# Study arm (g): KDEP on 100% of the pool (labels unused), otherwise as (f).
_base_ = ['./f_kdep_10.py']

study_arm = dict(kind='kdep', labels=False, data='100%')
train_dataloader = dict(dataset=dict(ann_file={{_base_.pool_100}}))
