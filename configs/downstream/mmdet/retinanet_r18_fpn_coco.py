# RetinaNet with a KDEP-distilled ResNet-18 + FPN on COCO (1x schedule).
# `pretrained` is the student exported by tools/export_student.py; point the
# backbone at another file with
#   --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/<exp>/student_backbone.pth
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

custom_imports = dict(imports=['kdep_mm'], allow_failed_imports=False)
pretrained = 'work_dirs/kdep_r18/student_backbone.pth'

model = dict(
    backbone=dict(
        # the exported keys are those of mmpretrain's ResNet; replace the
        # base's mmdet ResNet-50 entirely (its torchvision init_cfg too)
        _delete_=True,
        type='mmpretrain.ResNet',
        depth=18,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[64, 128, 256, 512]))

# optimizer (as mmdet's RetinaNet 1x: SGD 0.01 for 8 GPUs x 2 images)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
auto_scale_lr = dict(enable=False, base_batch_size=16)
