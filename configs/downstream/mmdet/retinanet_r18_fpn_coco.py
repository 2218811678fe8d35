# RetinaNet with a KDEP-distilled ResNet-18 + FPN on COCO (1x schedule).
# `pretrained` is the student exported by tools/export_student.py; point the
# backbone at another file with
#   --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/<exp>/student_backbone.pth
_base_ = [
    '../_base_/models/retinanet_r18_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

# optimizer (as mmdet's RetinaNet 1x: SGD 0.01 for 8 GPUs x 2 images)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
auto_scale_lr = dict(enable=False, base_batch_size=16)
