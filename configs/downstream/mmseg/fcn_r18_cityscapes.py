# FCN (output stride 8) with a KDEP-distilled ResNet-18 on Cityscapes,
# 512x1024 crops, 80k iterations (mmseg's FCN-R18-D8 recipe).
# The backbone is mmpretrain's ResNet-18, whose keys are exactly those of the
# exported student (mmseg's ResNetV1c has a deep stem and would not match);
# stages 3 and 4 are dilated (2, 4) instead of strided.
#   --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/<exp>/student_backbone.pth
_base_ = [
    'mmseg::_base_/models/fcn_r50-d8.py',
    'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
]

pretrained = 'work_dirs/kdep_r18/student_backbone.pth'

crop_size = (512, 1024)
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    # the base's `pretrained='open-mmlab://resnet50_v1c'` would be passed to
    # the backbone, which mmpretrain's ResNet does not accept
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmpretrain.ResNet',
        depth=18,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4),
        style='pytorch',
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    decode_head=dict(in_channels=512, channels=128, num_classes=19),
    auxiliary_head=dict(in_channels=256, channels=64, num_classes=19))
