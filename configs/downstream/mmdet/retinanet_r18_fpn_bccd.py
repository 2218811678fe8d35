# RetinaNet with a KDEP-distilled ResNet-18 + FPN on BCCD (blood-cell
# detection, VOC layout, 3 classes: RBC, WBC, Platelets), the small-scale
# detection study. Data layout (Shenggan/BCCD_Dataset):
#   data/BCCD/{Annotations,JPEGImages,ImageSets/Main/{train,val,test}.txt}
# kdep_mm.BCCDDataset drops the two degenerate boxes of the annotations.
#   --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/<exp>/student_backbone.pth
_base_ = [
    '../_base_/models/retinanet_r18_fpn.py',
    'mmdet::_base_/default_runtime.py',
]

model = dict(bbox_head=dict(num_classes=3))

# dataset settings (images are 640x480)
dataset_type = 'kdep_mm.BCCDDataset'
data_root = 'data/BCCD/'
backend_args = None
img_scale = (640, 480)
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    # blood smears have no canonical orientation
    dict(
        type='RandomFlip',
        prob=[0.25, 0.25],
        direction=['horizontal', 'vertical']),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='ImageSets/Main/train.txt',
        data_prefix=dict(sub_data_root=''),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='ImageSets/Main/val.txt',
        data_prefix=dict(sub_data_root=''),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
# the same loader on the test split
test_dataloader = dict(
    val_dataloader,
    dataset=dict(val_dataloader['dataset'],
                 ann_file='ImageSets/Main/test.txt'))
val_evaluator = dict(type='VOCMetric', metric='mAP', eval_mode='area')
test_evaluator = val_evaluator

# schedule: 24 epochs (~51 iterations each at 4 images per batch)
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=24, val_interval=4)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=200),
    dict(
        type='MultiStepLR',
        begin=0,
        end=24,
        by_epoch=True,
        milestones=[16, 22],
        gamma=0.1)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.005, momentum=0.9, weight_decay=0.0001),
    clip_grad=dict(max_norm=35, norm_type=2))
auto_scale_lr = dict(enable=False, base_batch_size=4)
default_hooks = dict(
    checkpoint=dict(
        type='CheckpointHook', interval=4, max_keep_ckpts=1,
        save_best='auto'))
