# The tiny KDEP run (configs/tiny/tiny_kdep_synthetic.py) with a tiny timm
# teacher: timm's ResNet-18 at 8/16/32/64 channels through mmpretrain's
# TimmClassifier, no pretrained weights (a local `model.teacher_ckpt` with
# timm's keys, or random), pre-ReLU feature = input of the last block's
# `act2`. For tests of the timm teacher path; needs `pip install timm`.
_base_ = ['../tiny/tiny_kdep_synthetic.py']

model = dict(
    teacher=dict(
        _delete_=True,
        type='mmpretrain.TimmClassifier',
        model_name='resnet18',
        pretrained=False,
        num_classes=2,
        channels=(8, 16, 32, 64),
        stem_width=8),
    teacher_feature='model.layer4.1.act2',
    aligner=dict(teacher_channels=64),
)
