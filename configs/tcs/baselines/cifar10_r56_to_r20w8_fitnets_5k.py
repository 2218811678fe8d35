# TCS-vs-KD study, arm "FitNets": CE + MSE from a learned linear regressor
# of the student's pooled feature (32-d) to the teacher's pooled
# pre-activation feature (64-d, the feature TCS projects on its coordinate
# system), teacher online (kdep_mm.SupervisedKDDistiller,
# distill='features'); the real ResNet-56 -> ResNet-20 w8, the study's
# 5,000 images and stored views (../_base_/cifar10_5k_views.py).
#   python tools/train.py configs/tcs/baselines/cifar10_r56_to_r20w8_fitnets_5k.py
_base_ = ['./cifar10_r56_to_r20w8_logit_kd_5k.py']

model = dict(
    distill='features',
    teacher_channels=64,  # stated, so that the export rebuilds it alone
    distill_loss=dict(
        _delete_=True, type='kdep_mm.FeatureMSELoss', loss_weight=1.))
