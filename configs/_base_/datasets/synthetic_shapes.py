# The demo's generated data: an ImageNet-style folder of 32x32 PNG images
# (``<data_root>/{train,val}/<class>/*.png``, 10 classes of coloured shapes),
# written by
#     python -m kdep_mm.datasets.synthetic_shapes data/synthetic_shapes
# and read with mmpretrain's CustomDataset. tools/kdep_demo.py sets the data
# root, the annotation files (labelled / unlabelled subsets), batch size and
# workers programmatically.
# The types are mmpretrain's: ``default_scope = 'mmpretrain'`` comes from the
# runtime base (configs/_base_/kdep_runtime.py).
_base_ = ['../imagenet_normalization.py']

data_root = 'data/synthetic_shapes'
num_classes = 10
batch_size = 32

# The base's ImageNet statistics (those of the classic CIFAR ResNet
# checkpoints, so an akamaster teacher sees what it was trained on). Used by
# the Runner for a model config without its own ``data_preprocessor``.
data_preprocessor = dict(type='ClsDataPreprocessor', num_classes=num_classes)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    # pad with the mean colour (BGR): black borders would dominate the
    # features, and mmpretrain's RandomCrop ignores padding_mode when
    # padding is set
    dict(type='RandomCrop', crop_size=32, padding=4, pad_val=(104, 116, 124)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        data_prefix='train',
        # 'relative/path label' lines of a subset; '' = the whole split
        ann_file='',
        with_label=True,
        pipeline=train_pipeline))
test_dataloader = dict(
    train_dataloader,
    batch_size=200,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='val',
                 with_label=True, pipeline=test_pipeline))
test_evaluator = dict(type='Accuracy', topk=(1, ))
test_cfg = dict()
# no validation during training: the demo scores the final model once
val_dataloader = None
val_evaluator = None
val_cfg = None
