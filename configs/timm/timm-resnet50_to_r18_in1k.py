# KDEP with a timm teacher: timm's ResNet-50 (a local checkpoint) -> the
# mmpretrain ResNet-18 of configs/kdep/r50_to_r18_in1k.py, same data,
# schedule, SVD aligner and loss; only the teacher changes.
#
# The teacher is mmpretrain's TimmClassifier (timm from the package registry,
# `pip install timm`); `pretrained=False`: its weights come from
# `teacher_ckpt`, a local file with timm's own keys (conv1.weight,
# layer1.0.conv1.weight, ..., fc.weight), loaded strictly. Write one from a
# timm model on a machine with access to its weights, e.g.
#   python -c "import timm, torch; torch.save(timm.create_model( \
#       'resnet50.a1_in1k', pretrained=True).state_dict(), \
#       'checkpoints/timm_resnet50_a1_in1k.pth')"
# (timm's ResNet-50 recipes use the ImageNet mean/std and RGB input of the
# data base's preprocessor; check `pretrained_cfg` for other models.)
#
# Pre-ReLU feature: in timm's Bottleneck the residual add is followed by
# `act3`, so the input of the last block's act3 is the pre-activation
# feature KDEP distills (BasicBlock models: `act2`).
_base_ = ['../kdep/r50_to_r18_in1k.py']

teacher_ckpt = 'checkpoints/timm_resnet50_a1_in1k.pth'
# replaces the base's teacher (not merged into it), at the top level and in
# the model alike
teacher = dict(
    _delete_=True,
    type='mmpretrain.TimmClassifier',
    model_name='resnet50',
    pretrained=False,
    num_classes=1000)

model = dict(
    teacher=dict(teacher),  # a copy: each merge consumes its own _delete_
    teacher_ckpt=teacher_ckpt,
    teacher_feature='model.layer4.2.act3',
)
