# RetinaNet + FPN on a KDEP-distilled ResNet-18. The backbone is mmpretrain's
# ResNet, whose keys are exactly those of a student exported by
# tools/export_student.py (prefix 'backbone.'); the base's mmdet ResNet-50
# (and its torchvision init_cfg) is replaced entirely.
_base_ = 'mmdet::_base_/models/retinanet_r50_fpn.py'

pretrained = 'work_dirs/kdep_r18/student_backbone.pth'

model = dict(
    backbone=dict(
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
