# Baseline of configs/tcs/cifar10_r56_to_r20_tcs_10shot.py: the same
# ResNet-20 student, trained as a plain mmpretrain classifier (GAP + linear
# head) with cross-entropy only, no teacher, on the same 10-shot list, the
# same 32 stored views per image (ApplyStoredView; the teacher features are
# simply not packed), batch, schedule and seed.
#   python tools/train.py configs/tcs/baselines/cifar10_r20_ce_10shot.py
# (the store of the TCS config, see its header; KDEP_TCS_STORE=DIR as there)
_base_ = [
    '../../_base_/kdep_runtime.py',
    '../../_base_/datasets/cifar10_jpeg.py',
    '../../_base_/models/cifar_resnet20.py',  # + GAP + linear head
    # teacher_ckpt: the TCS config's teacher; the store is checked to be
    # that config's store
    '../../_base_/teachers/cifar_resnet56.py',
]

teacher_store = \
    '{{$KDEP_TCS_STORE:work_dirs/stores/cifar10_r56_feat_10shot_v32}}'
ann_file = 'meta/train_10shot.txt'

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='kdep_mm.ApplyStoredView', store=dict(root=teacher_store),
         scale=32),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=50,
    dataset=dict(ann_file=ann_file, pipeline=train_pipeline))
# the views must be those of this dataset (index order), decoder and teacher
custom_hooks = [
    dict(type='kdep_mm.CheckTeacherStoresHook',
         teacher_checkpoints={{_base_.teacher_ckpt}}),
]

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4))
param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[100, 150], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=200, val_interval=50)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=50)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=50))
