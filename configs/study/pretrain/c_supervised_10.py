# Study arm (c): supervised pre-training on 10% of the pool (same epochs as
# (b), so a tenth of the iterations).
_base_ = ['./b_supervised_100.py']

study_arm = dict(kind='supervised', labels=True, data='10%')
train_dataloader = dict(dataset=dict(ann_file={{_base_.pool_10}}))
