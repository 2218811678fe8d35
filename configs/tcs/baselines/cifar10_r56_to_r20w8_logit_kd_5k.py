# TCS-vs-KD study, arm "logit KD": Hinton KD with labels, teacher online,
#     loss = CE(z_s, y) + T^2 KL(softmax(z_t / T) || softmax(z_s / T)), T = 4
# (kdep_mm.SupervisedKDDistiller, distill='logits'), the real ResNet-56 ->
# ResNet-20 w8, the study's 5,000 images and stored views
# (../_base_/cifar10_5k_views.py).
#   python tools/train.py configs/tcs/baselines/cifar10_r56_to_r20w8_logit_kd_5k.py
_base_ = ['../_base_/cifar10_5k_views.py']

model = dict(
    type='kdep_mm.SupervisedKDDistiller',
    distill='logits',
    distill_loss=dict(type='kdep_mm.KDLoss', temperature=4., loss_weight=1.),
    **_base_.online_distiller)
