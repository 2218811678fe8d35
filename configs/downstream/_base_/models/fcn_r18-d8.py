# FCN (output stride 8) on a KDEP-distilled ResNet-18: mmseg's FCN-R50-D8
# with its backbone replaced by mmpretrain's ResNet-18, whose keys are
# exactly those of a student exported by tools/export_student.py (mmseg's
# ResNetV1c has a deep stem and would not match); stages 3 and 4 dilated
# (2, 4) instead of strided, the heads narrowed to its 512 / 256 channels.
_base_ = 'mmseg::_base_/models/fcn_r50-d8.py'

pretrained = 'work_dirs/kdep_r18/student_backbone.pth'

model = dict(
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
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    decode_head=dict(in_channels=512, channels=128),
    auxiliary_head=dict(in_channels=256, channels=64))
