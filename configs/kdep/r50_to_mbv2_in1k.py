# KDEP: ResNet-50 -> MobileNetV2 (1280-d, the last 1x1 conv + BN before
# ReLU6), 10% ImageNet-1K, lr 0.1 at batch 512.
_base_ = ['./r50_to_r18_in1k.py']

model = dict(
    student=dict(
        _delete_=True,
        type='mmpretrain.MobileNetV2',
        widen_factor=1.0,
        init_cfg=[
            dict(type='Kaiming', layer=['Conv2d']),
            dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
        ]),
    student_feature='conv2.activate',
)
optim_wrapper = dict(optimizer=dict(lr=0.1))
