# KDEP on 10% of CIFAR-10 train (500 images per class, labels unused).
# Write the subset list once:
#   python tools/dataset_converters/make_subset.py \
#       data/shared/cifar10_jpeg/train data/shared/cifar10_jpeg/meta/train_10pct.txt \
#       --per-class 500 --seed 0
_base_ = ['./cifar10_r56_to_r20.py']

train_dataloader = dict(dataset=dict(ann_file='meta/train_10pct.txt'))
