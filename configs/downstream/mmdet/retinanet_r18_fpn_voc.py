# RetinaNet with a KDEP-distilled ResNet-18 + FPN on PASCAL VOC 07+12
# (trainval 07+12, test on VOC2007 test; mmdet's VOC 4-epoch schedule on a
# 3x repeated dataset). Data layout: data/VOCdevkit/VOC{2007,2012}.
#   --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/<exp>/student_backbone.pth
_base_ = [
    '../_base_/models/retinanet_r18_fpn.py',
    'mmdet::_base_/datasets/voc0712.py',
    'mmdet::_base_/default_runtime.py',
]

model = dict(bbox_head=dict(num_classes=20))

# training schedule: the dataset is repeated 3 times, so 4 epochs = 12
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=4, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=4,
        by_epoch=True,
        milestones=[3],
        gamma=0.1)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
auto_scale_lr = dict(enable=False, base_batch_size=16)
