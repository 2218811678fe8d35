# Demo stage (b): supervised training of the teacher, a CIFAR ResNet-20
# (16/32/64 channels, 64-d pooled feature), on the labelled train split of an
# ImageNet-style folder (``<data_root>/train/<class>/*.png``), scored on
# ``<data_root>/val``.
#
# Run by tools/kdep_demo.py, which sets the data root, epochs, batch size
# and seed programmatically; it also trains on its own with the
# synthetic-shapes data written by
#     python -m kdep_mm.datasets.synthetic_shapes data/synthetic_shapes
#     python tools/train.py configs/demo/teacher_cifar_resnet20_shapes.py
# (the demo validates with ``runner.test()`` once, after training).
_base_ = [
    '../_base_/kdep_runtime.py',
    '../_base_/datasets/synthetic_shapes.py',
    '../_base_/models/cifar_resnet20.py',  # + GAP + 10-class linear head
]

max_epochs = 10
optim_wrapper = dict(
    optimizer=dict(
        type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs,
         eta_min=1e-3, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=32, enable=False)

default_hooks = dict(
    logger=dict(interval=10),
    # one checkpoint, at the end
    checkpoint=dict(interval=max_epochs))
