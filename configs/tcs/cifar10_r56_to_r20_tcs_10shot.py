# TCS few-shot mode on CIFAR-10: 10 labelled images per class (100 images),
# the real ResNet-56 teacher through a teacher store, a ResNet-20 student.
# Same loss as KD mode (configs/tcs/cifar10_r56_to_r20_tcs.py); only the
# data, the number of views and the schedule change.
#
# 1. the 10-shot list (paths relative to train/, as data_prefix):
#   python tools/dataset_converters/make_subset.py \
#       data/shared/cifar10_jpeg/train \
#       data/shared/cifar10_jpeg/meta/train_10shot.txt --per-class 10 --seed 0
# 2. the store, cached from the SAME list (its index is this dataset's):
#   python tools/cache_teacher.py configs/kdep/cifar10_r56_to_r20.py \
#       --store work_dirs/stores/cifar10_r56_feat_10shot_v32 --views 32 \
#       --view-mode random --out-size 32 --fields feat \
#       --cfg-options train_dataloader.dataset.ann_file=meta/train_10shot.txt
# 3. train:
#   python tools/train.py configs/tcs/cifar10_r56_to_r20_tcs_10shot.py
#
# The store path is ONE variable, ``teacher_store``: this file points the
# base's pipeline and hooks at it (a variable of a base config is substituted
# when that file is read, so only redefining it would not reach them). To
# use another store without editing the file: KDEP_TCS_STORE=DIR. A store
# cached from another list, view count or teacher is refused before the
# first iteration (FitBasisHook), naming the config key.
#
# Choices (not from the paper): 32 views per image, since 100 images cache
# in seconds and the store is the only source of crop augmentation; batch 50
# (2 iterations per epoch), 200 epochs = 400 iterations, lr 0.05, x0.1 at
# epochs 100 and 150; a prune step every 20 epochs (40 iterations), 10% of
# the active coordinates, down to 32 of 64 (reached at epoch 160).
_base_ = ['./cifar10_r56_to_r20_tcs.py']

teacher_store = \
    '{{$KDEP_TCS_STORE:work_dirs/stores/cifar10_r56_feat_10shot_v32}}'
num_views = 32
ann_file = 'meta/train_10shot.txt'

model = dict(prune_interval=40, prune_ratio=0.1, min_coords=32)

# the base's pipeline and hooks, pointed at this store
train_pipeline = _base_.train_pipeline
train_pipeline[1].store.root = teacher_store
train_dataloader = dict(
    batch_size=50,
    dataset=dict(ann_file=ann_file, pipeline=train_pipeline))
custom_hooks = _base_.custom_hooks
custom_hooks[0].update(store=teacher_store, num_views=num_views)

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4))
param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[100, 150], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=200, val_interval=50)
auto_scale_lr = dict(base_batch_size=50)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=50))
