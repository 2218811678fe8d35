# CIFAR-10 as JPEG folders (``cifar10_jpeg/{train,test}/<class>/NNNN.jpg``,
# 50,000 train / 10,000 test images, 32x32), read with mmpretrain's
# CustomDataset; the sorted folder names give the usual CIFAR-10 label order
# (airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck).
#
# ``data_root`` defaults to where kdep_mm unpacks the shared copy:
#     python benchmarks/shared_data.py cifar10_jpeg.tar.gz
# Plain-text configs substitute variables when they are read, so redefining
# ``data_root`` in a child config does not reach the dataloaders below; to
# move the data, override the dataset fields, e.g.
#     --cfg-options train_dataloader.dataset.data_root=/path/cifar10_jpeg \
#                   val_dataloader.dataset.data_root=/path/cifar10_jpeg \
#                   test_dataloader.dataset.data_root=/path/cifar10_jpeg
# (or, in a child config, ``train_dataloader = dict(dataset=dict(
# data_root=...))`` and the same for val/test).
# The types are mmpretrain's: ``default_scope = 'mmpretrain'`` comes from the
# runtime base (e.g. ``configs/_base_/kdep_runtime.py``), not from here, since
# mmengine refuses a key defined in two ``_base_`` files.

_base_ = ['../imagenet_normalization.py']

dataset_type = 'CustomDataset'
data_root = 'data/shared/cifar10_jpeg/'

# Normalisation of the classic CIFAR ResNet checkpoints: the ImageNet
# statistics of the base. A model config that sets its own
# ``model.data_preprocessor`` takes precedence.
data_preprocessor = dict(num_classes=10)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomCrop', crop_size=32, padding=4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=128,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix='train',
        with_label=True,
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)

# the same loader on the test split, unshuffled
val_dataloader = dict(
    train_dataloader,
    batch_size=256,
    dataset=dict(train_dataloader['dataset'], data_prefix='test',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))

test_dataloader = val_dataloader
test_evaluator = val_evaluator
