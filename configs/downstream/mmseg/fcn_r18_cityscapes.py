# FCN (output stride 8) with a KDEP-distilled ResNet-18 on Cityscapes,
# 512x1024 crops, 80k iterations (mmseg's FCN-R18-D8 recipe). The model:
# ../_base_/models/fcn_r18-d8.py (mmpretrain's ResNet-18, dilated).
#   --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/<exp>/student_backbone.pth
_base_ = [
    '../_base_/models/fcn_r18-d8.py',
    'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
]

crop_size = (512, 1024)
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=19),
    auxiliary_head=dict(num_classes=19))
