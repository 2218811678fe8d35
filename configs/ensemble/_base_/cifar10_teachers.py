# The two CIFAR-10 teachers of the ensemble configs, one per student token:
# the real CIFAR-10 ResNet-56 of ../../_base_/teachers/cifar_resnet56.py
# (akamaster checkpoint, original 'module.*' keys) and the RedNet-26 that
# ../teachers/rednet26_cifar10.py trains (which takes its architecture from
# here, so that its teacher.pth loads strictly). Used by
# tools/cache_teacher.py --teacher NAME and by the online variant; a
# store-mode run reads the stores instead (model.teachers=None).
_base_ = ['../../_base_/teachers/cifar_resnet56.py']

teacher_names = ['cnn', 'involution']
teachers = dict(
    cnn={{_base_.teacher}},
    # RedNet-26 sized for 32 px (../teachers/rednet26_cifar10.py explains
    # each choice): cifar stem, stages at 32/16/8/4 px, stage outputs
    # 128/256/512/1024, 1.81M parameters
    involution=dict(
        type='ImageClassifier',
        backbone=dict(
            type='kdep_mm.RedNet',
            depth=26,
            stem='cifar',
            stem_channels=32,
            base_channels=32,
            strides=(1, 2, 2, 2),
            out_indices=(3, )),
        neck=dict(type='GlobalAveragePooling'),
        # 4 (bottleneck expansion) * 8 (3 doublings) * base_channels
        head=dict(type='LinearClsHead', num_classes=10, in_channels=1024)))
teacher_ckpts = dict(
    cnn={{_base_.teacher_ckpt}},
    involution='work_dirs/ensemble/rednet26_cifar10/teacher.pth')
teacher_revise_keys = dict(
    _delete_=True,  # per teacher here; the base's list is the cnn's
    cnn={{_base_.teacher_revise_keys}},
    involution=[(r'^module\.', '')])
