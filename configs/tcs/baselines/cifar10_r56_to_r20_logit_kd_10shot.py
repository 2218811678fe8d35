# Logit-KD baseline of configs/tcs/cifar10_r56_to_r20_tcs_10shot.py: Hinton
# KD with labels, teacher online,
#     loss = CE(z_s, y) + T^2 KL(softmax(z_t / T) || softmax(z_s / T)), T = 4
# (kdep_mm.SupervisedKDDistiller), the same real ResNet-56 teacher and
# ResNet-20 student, the same 10-shot list, the same 32 stored views per
# image (the teacher runs on each view; the stored features are not
# packed), batch, schedule and seed as the TCS config and the CE baseline
# (./cifar10_r20_ce_10shot.py, whose data and schedule this file inherits).
#   python tools/train.py configs/tcs/baselines/cifar10_r56_to_r20_logit_kd_10shot.py
# (the store of the TCS config, see its header; KDEP_TCS_STORE=DIR as there)
_base_ = ['./cifar10_r20_ce_10shot.py']

model = dict(
    _delete_=True,
    type='kdep_mm.SupervisedKDDistiller',
    data_preprocessor={{_base_.model.data_preprocessor}},
    student={{_base_.model.backbone}},
    teacher={{_base_.teacher}},
    teacher_ckpt={{_base_.teacher_ckpt}},
    teacher_revise_keys={{_base_.teacher_revise_keys}},
    num_classes=10)  # distill='logits', KDLoss(T=4): the defaults
