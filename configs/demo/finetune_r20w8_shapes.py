# Demo stage (e): downstream fine-tuning of the student classifier
# (half-width CIFAR ResNet-20 backbone + global average pooling + a linear
# head) on a small labelled split, scored on ``<data_root>/val``.
#
# tools/kdep_demo.py runs it twice with the same schedule and seed: once with
# the backbone initialised from the KDEP export (below) and once from random
# init (``model.backbone.init_cfg`` removed, so the backbone's default
# Kaiming init applies). It sets the few-shot annotation file, the epochs and
# the checkpoint path.
# The teacher's classifier, data and optimiser (./teacher_cifar_resnet20_shapes.py)
# at half width, 30 epochs.
_base_ = ['./teacher_cifar_resnet20_shapes.py']

model = dict(
    backbone=dict(
        base_channels=8,  # 8/16/32 channels, a 32-d pooled feature
        init_cfg=dict(
            type='Pretrained',
            checkpoint='work_dirs/kdep_demo/student_kdep.pth',
            prefix='backbone.')),
    head=dict(in_channels=32))

max_epochs = 30
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs,
         eta_min=1e-4, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(interval=max_epochs))  # one, at the end
