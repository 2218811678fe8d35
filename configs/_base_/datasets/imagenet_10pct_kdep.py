# ImageNet-1K 10% subset (128 images per class) with KDEP's augmentation.
# Write the subset list once with:
#   python tools/dataset_converters/make_subset.py data/imagenet/train \
#       data/imagenet/meta/train_10pct.txt --per-class 128 --seed 0
dataset_type = 'ImageNet'
data_root = 'data/imagenet'
subset_ann_file = 'meta/train_10pct.txt'

data_preprocessor = dict(
    type='mmpretrain.ClsDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='ColorJitter', brightness=0.1, contrast=0.1, saturation=0.1),
    # AlexNet-style PCA lighting noise, ImageNet eigen-decomposition (BGR
    # images are converted to RGB inside the transform).
    dict(
        type='Lighting',
        eigval=[55.4625, 4.7940, 1.1475],
        eigvec=[[-0.5836, -0.6948, 0.4203], [-0.5808, -0.0045, -0.8140],
                [-0.5675, 0.7192, 0.4009]],
        alphastd=0.05,
        to_rgb=True),
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
