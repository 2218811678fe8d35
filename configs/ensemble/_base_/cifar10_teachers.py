# The two CIFAR-10 teachers of the ensemble configs, one per student token:
# the real CIFAR-10 ResNet-56 (akamaster checkpoint, original 'module.*'
# keys, as in ../../_base_/teachers/cifar_resnet56.py) and the RedNet-26 that
# ../teachers/rednet26_cifar10.py trains (which takes its architecture from
# here, so that its teacher.pth loads strictly). Used by
# tools/cache_teacher.py --teacher NAME and by the online variant; a
# store-mode run reads the stores instead (model.teachers=None).
teacher_names = ['cnn', 'involution']
teachers = dict(
    cnn=dict(
        type='ImageClassifier',
        backbone=dict(type='kdep_mm.CIFARResNet', depth=56),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=64)),
    # RedNet-26, reduced for 2 CPU cores (../teachers/rednet26_cifar10.py
    # explains each choice); stage outputs 64/128/256/512
    involution=dict(
        type='ImageClassifier',
        backbone=dict(
            type='kdep_mm.RedNet',
            depth=26,
            stem='cifar',
            stem_channels=32,
            base_channels=16,
            strides=(2, 2, 2, 1),
            out_indices=(3, )),
        neck=dict(type='GlobalAveragePooling'),
        # 4 (bottleneck expansion) * 8 (3 doublings) * base_channels
        head=dict(type='LinearClsHead', num_classes=10, in_channels=512)))
teacher_ckpts = dict(
    cnn='../shared/data/cifar10_resnets/resnet56-4bfd9763.th',
    involution='work_dirs/ensemble/rednet26_cifar10/teacher.pth')
teacher_revise_keys = dict(
    cnn=[(r'^module\.linear\.', 'head.fc.'), (r'^module\.', 'backbone.')],
    involution=[(r'^module\.', '')])
