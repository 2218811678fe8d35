# ImageNet-1K 10% subset (128 images per class) with KDEP's augmentation.
# Write the subset list once with:
#   python tools/dataset_converters/make_subset.py data/imagenet/train \
#       data/imagenet/meta/train_10pct.txt --per-class 128 --seed 0
_base_ = ['../imagenet_normalization.py']

dataset_type = 'ImageNet'
data_root = 'data/imagenet'
subset_ann_file = 'meta/train_10pct.txt'

# data_preprocessor: the base's (images decode as BGR; to_rgb, then the RGB
# ImageNet statistics)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='ColorJitter', brightness=0.1, contrast=0.1, saturation=0.1),
    # AlexNet-style PCA lighting noise on the BGR image as decoded: the
    # eigenvectors are given in RGB and kdep_mm.ClippedLighting offsets the
    # channels in the image's order ('bgr'), rounds and clips to 0-255 (no
    # uint8 wrap-around) and converts nothing; the RGB conversion is the
    # data preprocessor's to_rgb=True, for teacher and student alike.
    # (mmpretrain's Lighting(to_rgb=True) returned RGB, which the
    # preprocessor swapped back to BGR, and wrapped 256.6 to 0.)
    dict(
        type='kdep_mm.ClippedLighting',
        eigval=[55.4625, 4.7940, 1.1475],
        eigvec=[[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140],
                [-0.5836, -0.6948, 0.4203]],
        alphastd=0.05,
        channel_order='bgr'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=64,  # x 8 GPUs = 512
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file=subset_ann_file,
        data_prefix='train',
        pipeline=train_pipeline),
)

# Held-out data for the validation of configs/kdep/*_in1k.py (the collapse
# signal, kdep_mm.ExplainedVarianceMetric): the first 10,000 images of
# ImageNet-1K *val* (meta/val.txt lists them in random class order, so about
# 10 per class; never trained on), mmpretrain's standard test transform.
# Only the dataset is defined here: the sibling base
# ../schedules/kdep_sgd_90e.py sets val_dataloader = None (mmengine refuses a
# key defined in two bases), so the KDEP configs build their val_dataloader
# around heldout_val_dataset.
val_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
heldout_val_dataset = dict(
    type=dataset_type,
    data_root=data_root,
    ann_file='meta/val.txt',
    data_prefix='val',
    indices=10000,
    pipeline=val_pipeline)
