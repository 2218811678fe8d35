# Demo stage (e): downstream fine-tuning of the student classifier
# (half-width CIFAR ResNet-20 backbone + global average pooling + a linear
# head) on a small labelled split, scored on ``<data_root>/val``.
#
# tools/kdep_demo.py runs it twice with the same schedule and seed: once with
# the backbone initialised from the KDEP export (below) and once from random
# init (``model.backbone.init_cfg`` removed, so the backbone's default
# Kaiming init applies). It sets the few-shot annotation file, the epochs and
# the checkpoint path.
_base_ = [
    '../_base_/kdep_runtime.py',
    '../_base_/datasets/synthetic_shapes.py',
    # half width (8/16/32 channels, 32-d pooled feature) below
    '../_base_/models/cifar_resnet20.py',
]

model = dict(
    backbone=dict(
        base_channels=8,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='work_dirs/kdep_demo/student_kdep.pth',
            prefix='backbone.')),
    head=dict(in_channels=32))

max_epochs = 30
optim_wrapper = dict(
    optimizer=dict(
        type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs,
         eta_min=1e-4, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=32, enable=False)

default_hooks = dict(
    logger=dict(interval=10),
    # one checkpoint, at the end
    checkpoint=dict(interval=max_epochs))
